"""CrystFEL unit cell files (``.cell``): :class:`UnitCell`, :func:`read_cell`, :func:`write_cell`.

Format (CrystFEL's ``cell_file(5)``)::

    CrystFEL unit cell file version 1.0
    lattice_type = tetragonal      ; triclinic ... cubic
    centering = P                  ; P A B C I F R H (H: rhombohedral on hexagonal axes)
    unique_axis = c
    a = 79.1 A                     ; lengths in A (or nm), angles in deg (or rad)
    al = 90.0 deg

Matrices follow CrystFEL's convention: ``a`` along lab x, ``b`` in the xy plane, rows of
:meth:`UnitCell.direct_matrix` are a, b, c (Angstrom) and rows of
:meth:`UnitCell.reciprocal_matrix` are a*, b*, c* (1/Angstrom, no 2 pi).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from braggflow.errors import InputError

LATTICE_TYPES = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "rhombohedral",
    "hexagonal",
    "cubic",
)
# Centerings CrystFEL accepts for each lattice type (cell_is_sensible in CrystFEL's cell-utils).
ALLOWED_CENTERING = {
    "triclinic": "P",
    "monoclinic": "PABCI",
    "orthorhombic": "PABCIF",
    "tetragonal": "PI",
    "rhombohedral": "R",
    "hexagonal": "PH",
    "cubic": "PIF",
}
_LENGTH_UNITS = {"A": 1.0, "nm": 10.0}
_ANGLE_UNITS = {"deg": 1.0, "rad": 180.0 / math.pi}
_HEADER = "CrystFEL unit cell file version 1.0"


@dataclass(frozen=True)
class UnitCell:
    """A unit cell with its Bravais lattice: lengths in Angstrom, angles in degrees."""

    lattice_type: str
    centering: str
    unique_axis: str
    a_A: float
    b_A: float
    c_A: float
    alpha_deg: float
    beta_deg: float
    gamma_deg: float

    @classmethod
    def from_dict(cls, d: dict) -> UnitCell:
        """From the config's ``simulate.cell`` mapping (keys as the dataclass fields)."""
        return cls(
            lattice_type=str(d.get("lattice_type", "triclinic")),
            centering=str(d.get("centering", "P")),
            unique_axis=str(d.get("unique_axis", "c")),
            **{k: float(d[k]) for k in ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg")},
        )

    @property
    def parameters(self) -> tuple[float, float, float, float, float, float]:
        return (self.a_A, self.b_A, self.c_A, self.alpha_deg, self.beta_deg, self.gamma_deg)

    def direct_matrix(self) -> np.ndarray:
        """Rows a, b, c in Angstrom (a along x, b in the xy plane)."""
        a, b, c = self.a_A, self.b_A, self.c_A
        al, be, ga = (math.radians(x) for x in (self.alpha_deg, self.beta_deg, self.gamma_deg))
        cx = c * math.cos(be)
        cy = c * (math.cos(al) - math.cos(be) * math.cos(ga)) / math.sin(ga)
        cz2 = c * c - cx * cx - cy * cy
        if cz2 <= 0:
            raise InputError(
                "unit cell",
                f"angles {self.parameters[3:]} do not form a cell",
                "check alpha, beta, gamma",
            )
        return np.array(
            [[a, 0.0, 0.0], [b * math.cos(ga), b * math.sin(ga), 0.0], [cx, cy, math.sqrt(cz2)]]
        )

    def reciprocal_matrix(self) -> np.ndarray:
        """Rows a*, b*, c* in 1/Angstrom (a_i . b*_j = delta_ij, no factor 2 pi)."""
        return np.linalg.inv(self.direct_matrix()).T

    def volume_A3(self) -> float:
        return float(abs(np.linalg.det(self.direct_matrix())))

    def problems(self, tol: float = 1e-3) -> list[str]:
        """What makes this cell inconsistent with its lattice type (empty when sensible)."""
        out: list[str] = []
        if self.lattice_type not in LATTICE_TYPES:
            return [
                f"unknown lattice_type {self.lattice_type!r} (one of {', '.join(LATTICE_TYPES)})"
            ]
        if self.centering not in ALLOWED_CENTERING[self.lattice_type]:
            out.append(
                f"centering {self.centering} is not allowed for {self.lattice_type} "
                f"(one of {', '.join(ALLOWED_CENTERING[self.lattice_type])})"
            )
        if self.unique_axis not in ("a", "b", "c", "?", "*"):
            out.append(f"unique_axis {self.unique_axis!r} is not a, b or c")
        lengths = dict(zip("abc", (self.a_A, self.b_A, self.c_A), strict=True))
        angles = dict(zip("abc", (self.alpha_deg, self.beta_deg, self.gamma_deg), strict=True))
        ua = self.unique_axis if self.unique_axis in "abc" else "c"
        others = [ax for ax in "abc" if ax != ua]

        def same(x: float, y: float) -> bool:
            return abs(x - y) <= tol * max(abs(x), abs(y), 1.0)

        lt = self.lattice_type
        if lt in ("orthorhombic", "tetragonal", "cubic") and not all(
            same(v, 90) for v in angles.values()
        ):
            out.append(f"{lt} needs alpha = beta = gamma = 90")
        if lt == "monoclinic" and not all(same(angles[ax], 90) for ax in others):
            out.append(f"monoclinic (unique axis {ua}) needs the other two angles = 90")
        if lt == "tetragonal" and not same(lengths[others[0]], lengths[others[1]]):
            out.append(f"tetragonal (unique axis {ua}) needs {others[0]} = {others[1]}")
        if lt == "hexagonal":
            if not same(lengths[others[0]], lengths[others[1]]):
                out.append(f"hexagonal (unique axis {ua}) needs {others[0]} = {others[1]}")
            if not (same(angles[ua], 120) and all(same(angles[ax], 90) for ax in others)):
                out.append(
                    f"hexagonal (unique axis {ua}) needs the angle at {ua} = 120, the others 90"
                )
        if lt in ("rhombohedral", "cubic") and not (
            same(self.a_A, self.b_A) and same(self.b_A, self.c_A)
        ):
            out.append(f"{lt} needs a = b = c")
        if lt == "rhombohedral" and not (
            same(self.alpha_deg, self.beta_deg) and same(self.beta_deg, self.gamma_deg)
        ):
            out.append("rhombohedral needs alpha = beta = gamma")
        try:
            self.direct_matrix()
        except InputError as err:
            out.append(err.problem)
        return out


def read_cell(path: str | Path) -> UnitCell:
    """Parse a CrystFEL ``.cell`` file; a missing or malformed file is a one-line :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "unit cell file not found", "give an existing CrystFEL .cell file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise InputError(
            path, "unit cell file is not readable text", "give a CrystFEL .cell file"
        ) from None
    lines = [ln.split(";", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].startswith("CrystFEL unit cell file"):
        raise InputError(
            path, "not a CrystFEL unit cell file", f"the first line must be '{_HEADER}'"
        )
    keys: dict[str, str] = {}
    for ln in lines[1:]:
        if "=" not in ln:
            raise InputError(path, f"cannot parse line {ln!r}", "write 'key = value' lines")
        key, value = (s.strip() for s in ln.split("=", 1))
        keys[key] = value
    values: dict[str, float] = {}
    for key, name, units in (
        ("a", "a_A", _LENGTH_UNITS),
        ("b", "b_A", _LENGTH_UNITS),
        ("c", "c_A", _LENGTH_UNITS),
        ("al", "alpha_deg", _ANGLE_UNITS),
        ("be", "beta_deg", _ANGLE_UNITS),
        ("ga", "gamma_deg", _ANGLE_UNITS),
    ):
        if key not in keys:
            raise InputError(path, f"no '{key} = ...' line", "give a, b, c, al, be, ga with units")
        values[name] = _number_with_unit(path, key, keys[key], units)
    lattice = keys.get("lattice_type", "triclinic")
    default_axis = "b" if lattice == "monoclinic" else "c"
    cell = UnitCell(
        lattice_type=lattice,
        centering=keys.get("centering", "P"),
        unique_axis=keys.get("unique_axis", default_axis),
        **values,
    )
    problems = cell.problems(tol=1e-2)
    if problems:
        raise InputError(path, problems[0], "make the cell parameters match the lattice type")
    return cell


def _number_with_unit(path: Path, key: str, text: str, units: dict[str, float]) -> float:
    m = re.fullmatch(r"([-+0-9.eE]+)\s*([A-Za-z]*)", text)
    unit = m.group(2) if m else None
    if m is None or (unit and unit not in units):
        raise InputError(
            path, f"bad value {key} = {text!r}", f"write a number with a unit ({', '.join(units)})"
        )
    try:
        value = float(m.group(1))
    except ValueError:
        raise InputError(path, f"bad number {key} = {text!r}", "write e.g. 'a = 79.1 A'") from None
    return value * units[unit] if unit else value


def write_cell(cell: UnitCell, path: str | Path) -> None:
    """Write a CrystFEL unit cell file (atomically) that :func:`read_cell` and CrystFEL read."""
    from braggflow.atomic import atomic_write_text

    text = "\n".join(
        [
            _HEADER,
            "",
            f"lattice_type = {cell.lattice_type}",
            f"centering = {cell.centering}",
            f"unique_axis = {cell.unique_axis}",
            "",
            f"a = {cell.a_A:.4f} A",
            f"b = {cell.b_A:.4f} A",
            f"c = {cell.c_A:.4f} A",
            "",
            f"al = {cell.alpha_deg:.4f} deg",
            f"be = {cell.beta_deg:.4f} deg",
            f"ga = {cell.gamma_deg:.4f} deg",
            "",
        ]
    )
    atomic_write_text(path, text)
