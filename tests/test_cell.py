"""CrystFEL .cell files: the real example parses, matrices are consistent, bad files are one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from braggflow.errors import InputError
from braggflow.formats.cell import UnitCell, read_cell, write_cell

LYSOZYME = UnitCell("tetragonal", "P", "c", 79.1, 79.1, 38.0, 90.0, 90.0, 90.0)


def test_reads_crystfel_example_cell(shared_fixtures):
    cell = read_cell(shared_fixtures / "geometry" / "example.cell")
    assert (cell.lattice_type, cell.centering, cell.unique_axis) == ("hexagonal", "H", "c")
    assert cell.parameters == pytest.approx((66.2, 66.2, 150.2, 90.0, 90.0, 120.0))


def test_reciprocal_is_inverse_transpose_of_direct():
    cell = UnitCell("triclinic", "P", "c", 30.0, 40.0, 50.0, 80.0, 95.0, 105.0)
    direct, recip = cell.direct_matrix(), cell.reciprocal_matrix()
    np.testing.assert_allclose(direct @ recip.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(direct, axis=1), [30.0, 40.0, 50.0])
    # angles between the direct vectors are the cell angles
    a, b, c = direct
    assert math.degrees(math.acos(b @ c / 40 / 50)) == pytest.approx(80.0)
    assert math.degrees(math.acos(a @ c / 30 / 50)) == pytest.approx(95.0)
    assert math.degrees(math.acos(a @ b / 30 / 40)) == pytest.approx(105.0)
    # CrystFEL convention: a along x, b in the xy plane
    assert direct[0, 1] == direct[0, 2] == direct[1, 2] == 0.0
    assert cell.volume_A3() == pytest.approx(abs(np.linalg.det(direct)))


def test_orthogonal_cell_reciprocal_lengths():
    recip = LYSOZYME.reciprocal_matrix()
    np.testing.assert_allclose(np.diag(recip), [1 / 79.1, 1 / 79.1, 1 / 38.0])


def test_write_read_roundtrip(tmp_path):
    cell = UnitCell("monoclinic", "C", "b", 60.1, 42.5, 33.3, 90.0, 101.25, 90.0)
    write_cell(cell, tmp_path / "x.cell")
    back = read_cell(tmp_path / "x.cell")
    assert (back.lattice_type, back.centering, back.unique_axis) == ("monoclinic", "C", "b")
    assert back.parameters == pytest.approx(cell.parameters, abs=1e-4)


def test_nm_and_rad_units(tmp_path):
    path = tmp_path / "nm.cell"
    path.write_text(
        "CrystFEL unit cell file version 1.0\nlattice_type = cubic\ncentering = F\n"
        f"a = 5.0 nm\nb = 5.0 nm\nc = 5.0 nm\nal = {math.pi / 2} rad\nbe = 90 deg\nga = 90 deg\n"
    )
    cell = read_cell(path)
    assert cell.a_A == pytest.approx(50.0) and cell.alpha_deg == pytest.approx(90.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not a cell\n", "not a CrystFEL unit cell file"),
        ("CrystFEL unit cell file version 1.0\na = 10 A\n", "no 'b = ...' line"),
        (
            "CrystFEL unit cell file version 1.0\na = 10 parsecs\nb = 1 A\nc = 1 A\nal = 90 deg\nbe = 90 deg\nga = 90 deg\n",
            "bad value a",
        ),
        (
            "CrystFEL unit cell file version 1.0\nlattice_type = tetragonal\na = 10 A\nb = 12 A\nc = 5 A\n"
            "al = 90 deg\nbe = 90 deg\nga = 90 deg\n",
            "tetragonal (unique axis c) needs a = b",
        ),
        (
            "CrystFEL unit cell file version 1.0\nlattice_type = cubic\ncentering = C\na = 10 A\nb = 10 A\nc = 10 A\n"
            "al = 90 deg\nbe = 90 deg\nga = 90 deg\n",
            "centering C is not allowed for cubic",
        ),
    ],
)
def test_bad_cell_files_are_one_line_errors(tmp_path, text, problem):
    path = tmp_path / "bad.cell"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_cell(path)
    assert problem in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_cell_file(tmp_path):
    with pytest.raises(InputError, match="unit cell file not found"):
        read_cell(tmp_path / "nope.cell")


def test_every_lattice_type_with_sensible_parameters_is_accepted():
    cells = [
        UnitCell("triclinic", "P", "c", 10, 11, 12, 80, 85, 95),
        UnitCell("monoclinic", "P", "b", 10, 11, 12, 90, 100, 90),
        UnitCell("orthorhombic", "I", "c", 10, 11, 12, 90, 90, 90),
        UnitCell("tetragonal", "I", "c", 10, 10, 12, 90, 90, 90),
        UnitCell("rhombohedral", "R", "c", 10, 10, 10, 75, 75, 75),
        UnitCell("hexagonal", "H", "c", 10, 10, 12, 90, 90, 120),
        UnitCell("cubic", "F", "c", 10, 10, 10, 90, 90, 90),
    ]
    for cell in cells:
        assert cell.problems() == [], cell
