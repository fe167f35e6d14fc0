"""CrystFEL geometry files: every real fixture parses and round-trips; CrystFEL semantics; errors."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.errors import InputError
from braggflow.formats.geometry import read_geom, write_geom

FIXTURES = {
    # name: (panels, slab shape (ss, fs))
    "agipd1M_euxfel_p3046.geom": (128, (16 * 512, 128)),
    "cspad_cxiformat.geom": (64, (1480, 1552)),
    "eiger16M_binning2.geom": (1, (2167, 2070)),
    "epix10k2M_lcls_mfx.geom": (64, (5632, 384)),
    "jungfrau16M_swissfel.geom": (32, (16448, 1030)),
    "jungfrau4M_lcls_cxix53120.geom": (64, (4096, 1024)),
    "pilatus.geom": (1, (2527, 2463)),
    "rayonix_lcls.geom": (1, (1920, 1920)),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_parses_and_round_trips(shared_fixtures, tmp_path, name):
    geom = read_geom(shared_fixtures / "geometry" / name)
    n_panels, shape = FIXTURES[name]
    assert len(geom.panels) == n_panels
    assert geom.slab_shape == shape
    out = tmp_path / "rt.geom"
    write_geom(geom, out)
    again = read_geom(out)
    assert again.panels == geom.panels
    assert again.bad_regions == geom.bad_regions
    assert again.photon_energy == geom.photon_energy
    assert again.masks == geom.masks
    assert again.groups == geom.groups
    if shape[0] * shape[1] < 3_000_000:  # (the big ones compare their BadRegion blocks above)
        assert np.array_equal(again.bad_pixel_mask(), geom.bad_pixel_mask())


def test_units_header_paths_and_masks(shared_fixtures):
    jf = read_geom(shared_fixtures / "geometry" / "jungfrau16M_swissfel.geom")
    assert jf.photon_energy == 4570.0
    assert jf.panels[0].clen == pytest.approx(0.0953)  # "95.3 mm"
    assert jf.panels[5].min_fs == 0 and jf.panels[5].min_ss == 5 * 514  # "0.0" / "2570.0"
    (mask,) = jf.masks
    assert (mask.file, mask.data, mask.goodbits, mask.badbits) == (
        "run47.JF06T32V01.mask.h5",
        "/mask",
        1,
        0,
    )
    assert mask.good(np.array([0, 1, 3])).tolist() == [False, True, True]
    # bad_bs_1 is an fs/ss rectangle on panel m15 only
    bad = jf.bad_pixel_mask()
    assert bad[7710:7771, 890:1030].all() and bad.sum() == 61 * 140 + 118 * 73 + 51 * 136 + 128 * 61

    cspad = read_geom(shared_fixtures / "geometry" / "cspad_cxiformat.geom")
    assert cspad.photon_energy == "/LCLS/photon_energy_eV"
    p = cspad.panels[0]
    assert p.clen == "/LCLS/detector_1/EncoderValue" and p.clen_m(-430.0) == pytest.approx(-0.43)
    assert p.coffset_m == pytest.approx(0.573224) and p.res_px_per_m == pytest.approx(9090.91)
    assert p.fs == pytest.approx((0.004806, 0.999989, 0.0))
    assert p.adu_per_ev == pytest.approx(0.00338)
    assert p.dim == {0: "%", 1: "ss", 2: "fs"} and p.data == "/entry_1/data_1/data"
    assert cspad.masks[0].badbits == 0xFFFF
    assert cspad.groups["group_all"] == ["q0", "q1", "q2", "q3"]


def test_multidimensional_layout_is_stacked_along_slow_scan(shared_fixtures, tmp_path):
    agipd = read_geom(shared_fixtures / "geometry" / "agipd1M_euxfel_p3046.geom")
    p1a1 = agipd.panel("p1a1")  # dim1 = 1, min_ss = 64 in the file
    assert (p1a1.ss_offset, p1a1.min_ss, p1a1.max_ss) == (512, 576, 639)
    assert p1a1.dim == {0: "%", 1: "1", 2: "ss", 3: "fs"}
    assert agipd.groups["rigid_group_collection_quads"] == ["q0", "q1", "q2", "q3"]
    write_geom(agipd, tmp_path / "a.geom")
    assert "p1a1/min_ss = 64\n" in (tmp_path / "a.geom").read_text()


def test_global_keys_apply_to_panels_first_mentioned_later(tmp_path):
    text = """
res = 1000
clen = 0.1
a/min_fs = 0
a/max_fs = 9
a/min_ss = 0
a/max_ss = 9
res = 2000
adu_per_photon = 3
b/min_fs = 0
b/max_fs = 9
b/min_ss = 10
b/max_ss = 19
a/corner_x = -5   ; a later line of a still sees the defaults of a's first mention
photon_energy = 9.5 keV
"""
    (tmp_path / "g.geom").write_text(text)
    geom = read_geom(tmp_path / "g.geom")
    a, b = geom.panels
    assert (a.res_px_per_m, a.adu_per_photon, a.corner_x) == (1000.0, None, -5.0)
    assert (b.res_px_per_m, b.adu_per_photon) == (2000.0, 3.0)
    assert a.clen == b.clen == 0.1
    assert geom.photon_energy == 9500.0 and geom.photon_energy_ev() == 9500.0
    write_geom(geom, tmp_path / "rt.geom")
    assert read_geom(tmp_path / "rt.geom").panels == geom.panels


def test_wavelength_no_index_and_xy_bad_regions(tmp_path):
    (tmp_path / "g.geom").write_text(
        "wavelength = 1.3 A\nq/min_fs = 0\nq/max_fs = 9\nq/min_ss = 0\nq/max_ss = 9\n"
        "q/corner_x = -5\nq/corner_y = -5\n"
        "r/min_fs = 10\nr/max_fs = 19\nr/min_ss = 0\nr/max_ss = 9\nr/no_index = 1\n"
        "badc/min_x = -1\nbadc/max_x = 1\nbadc/min_y = -1\nbadc/max_y = 1\n"
    )
    geom = read_geom(tmp_path / "g.geom")
    assert geom.photon_energy_ev() == pytest.approx(12398.42 / 1.3, rel=1e-5)
    bad = geom.bad_pixel_mask()
    assert bad[:, 10:].all()  # no_index panel
    assert bad[:, :10].sum() == 4  # pixel centres at -1.5..1.5 in steps of 1: 2 x 2 inside [-1, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no panels"),
        ("p/min_fs = 0\np/max_fs = 9\np/min_ss = 0\n", "lacks max_ss"),
        (
            "p/min_fs = 0\np/max_fs = 9\np/min_ss = 0\np/max_ss = 9\np/fs = +1q\n",
            "cannot parse vector",
        ),
        (
            "clen = 3 furlong\np/min_fs = 0\np/max_fs = 9\np/min_ss = 0\np/max_ss = 9\n",
            "unknown unit",
        ),
        (
            "p/min_fs = 0\np/max_fs = 9\np/min_ss = 0\np/max_ss = 9\nbadx/panel = z\nbadx/min_fs = 1\n",
            "unknown panel",
        ),
        (
            "p/min_fs = 0\np/max_fs = 9\np/min_ss = 0\np/max_ss = 9\nbadx/min_fs = 1\nbadx/min_x = 1\n",
            "mixes",
        ),
        ("p/min_fs = 9\np/max_fs = 0\np/min_ss = 0\np/max_ss = 9\n", "max < min"),
        ("this line has no equals sign\n", "not a 'key = value'"),
    ],
)
def test_bad_geometry_is_one_line_input_error(tmp_path, text, message):
    (tmp_path / "bad.geom").write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_geom(tmp_path / "bad.geom")
    assert "\n" not in str(info.value)


def test_missing_file_and_data_shape_mismatch(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_geom(tmp_path / "nope.geom")
    (tmp_path / "g.geom").write_text("p/min_fs = 0\np/max_fs = 99\np/min_ss = 0\np/max_ss = 49\n")
    geom = read_geom(tmp_path / "g.geom")
    geom.check_data_shape((3, 50, 100), "frames.cxi")
    with pytest.raises(InputError, match=r"frames are \(50, 90\).*needs at least \(50, 100\)"):
        geom.check_data_shape((3, 50, 90), "frames.cxi")
