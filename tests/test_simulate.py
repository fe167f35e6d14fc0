"""Simulator building blocks: detector, crystal, diffraction, rendering (fast unit tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from braggflow.config import validate_config
from braggflow.errors import ConfigError
from braggflow.formats.cell import UnitCell
from braggflow.formats.geometry import read_geom
from braggflow.simulate import default_params
from braggflow.simulate.crystal import (
    centering_allows,
    hash_uniform,
    random_rotation,
    reflection_table,
    wilson_intensity,
)
from braggflow.simulate.detector import DetectorModel, default_geometry_text
from braggflow.simulate.diffraction import (
    HC_EV_A,
    PanelPlanes,
    excitation_error,
    partiality,
    polarisation_factor,
    profile_sigma,
)
from braggflow.simulate.render import erf, render_spots

LYSOZYME = UnitCell("tetragonal", "P", "c", 79.1, 79.1, 38.0, 90.0, 90.0, 90.0)


@pytest.fixture(scope="module")
def params():
    return default_params()


@pytest.fixture(scope="module")
def geom(tmp_path_factory, params):
    path = tmp_path_factory.mktemp("geom") / "detector.geom"
    path.write_text(default_geometry_text(params["detector"]))
    return read_geom(path)


# ---- detector -------------------------------------------------------------------------------
def test_default_detector_layout(geom):
    assert len(geom.panels) == 8
    assert geom.slab_shape == (480, 120)
    # a regular grid of equal ASICs in the slab (what peakfinder8 needs): 4 rows x 2 columns
    assert {(p.height, p.width) for p in geom.panels} == {(120, 60)}
    assert sorted((p.min_ss, p.min_fs) for p in geom.panels) == [
        (m * 120, a * 60) for m in range(4) for a in range(2)
    ]
    xs, ys = geom.lab_xy_px()
    extent = (np.nanmax(xs) - np.nanmin(xs) + 1, np.nanmax(ys) - np.nanmin(ys) + 1)
    assert max(extent) <= 250  # <= 256 x 256 assembled even with a 3 px margin on each side
    r = np.hypot(xs, ys)
    assert np.nanmin(r) > 4  # the beam passes through the gap
    # panels never overlap in the lab frame
    keys = set(zip(np.floor(xs).astype(int).ravel(), np.floor(ys).astype(int).ravel(), strict=True))
    assert len(keys) == xs.size
    # modules sit in all four quadrants around the beam
    quadrants = {
        (
            np.sign(np.nanmean(xs[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1])),
            np.sign(np.nanmean(ys[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1])),
        )
        for p in geom.panels
    }
    assert len(quadrants) == 4
    assert geom.panels[0].clen == "/LCLS/detector_1/EncoderValue"
    assert geom.photon_energy == "/LCLS/photon_energy_eV"


def test_resolution_range_of_default_experiment(geom, params):
    det = DetectorModel.build(
        geom, params["detector"], params["clen_m"], params["photon_energy_ev"], seed=1
    )
    d_corner = 1.0 / det.max_q_inv_A(params["photon_energy_ev"])
    assert 2.0 < d_corner < 3.2
    # the water ring (3.2 A) falls on the detector
    assert d_corner < params["background"]["water_ring_d_A"]


def test_bad_pixels_are_seeded_and_masked(geom, params):
    det_p = {**params["detector"], "dead_fraction": 0.01, "hot_fraction": 0.01}
    a = DetectorModel.build(geom, det_p, 0.035, 9500.0, seed=7)
    b = DetectorModel.build(geom, det_p, 0.035, 9500.0, seed=7)
    c = DetectorModel.build(geom, det_p, 0.035, 9500.0, seed=8)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.mask != c.mask).any()
    n = geom.slab_shape[0] * geom.slab_shape[1]
    assert 0.005 * n < a.dead.sum() < 0.02 * n
    hot = a.hot_adu > 0
    assert 0.005 * n < hot.sum() < 0.02 * n and not (hot & a.dead).any()
    assert ((a.mask[hot] & 2) != 0).all()
    # the 1-pixel panel border is masked
    assert (a.mask[0, :] != 0).all() and (a.mask[:, 59] != 0).all()


# ---- crystal --------------------------------------------------------------------------------
def test_centering_extinctions():
    hkl = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    h, k, l = hkl.T  # noqa: E741
    assert centering_allows("P", hkl).all()
    np.testing.assert_array_equal(centering_allows("I", hkl), (h + k + l) % 2 == 0)
    np.testing.assert_array_equal(centering_allows("C", hkl), (h + k) % 2 == 0)
    np.testing.assert_array_equal(centering_allows("F", hkl), (h % 2 == k % 2) & (k % 2 == l % 2))
    np.testing.assert_array_equal(centering_allows("H", hkl), (-h + k + l) % 3 == 0)
    with pytest.raises(ValueError):
        centering_allows("Q", hkl)


def test_reflection_table_respects_resolution_and_centering():
    cell = UnitCell("cubic", "I", "c", 50.0, 50.0, 50.0, 90.0, 90.0, 90.0)
    table = reflection_table(cell, q_max=1 / 5.0, seed=1, b_factor_A2=10.0)
    assert table.one_over_d.max() <= 0.2 and (table.hkl.sum(axis=1) % 2 == 0).all()
    assert not (table.hkl == 0).all(axis=1).any()
    # every allowed reflection in the sphere is there: 4/3 pi q^3 V / 2 (I halves the lattice)
    expected = 4 / 3 * math.pi * 0.2**3 * 50.0**3 / 2
    assert abs(len(table) - expected) < 0.05 * expected


def test_wilson_statistics_and_friedel():
    rng = np.random.default_rng(0)
    hkl = rng.integers(-40, 41, size=(20000, 3))
    e2 = wilson_intensity(3, hkl, np.zeros(len(hkl)), 0.0)
    assert e2.mean() == pytest.approx(1.0, abs=0.03)  # acentric: E^2 ~ Exp(1)
    assert np.median(e2) == pytest.approx(math.log(2), abs=0.03)
    np.testing.assert_array_equal(hash_uniform(3, hkl), hash_uniform(3, -hkl))  # Friedel's law
    assert not np.allclose(hash_uniform(3, hkl), hash_uniform(4, hkl))  # per-experiment table
    # B fall-off: mean ratio exp(-B/2 (1/d1^2 - 1/d2^2))
    q1, q2 = np.full(len(hkl), 0.1), np.full(len(hkl), 0.3)
    ratio = wilson_intensity(3, hkl, q2, 20.0) / wilson_intensity(3, hkl, q1, 20.0)
    np.testing.assert_allclose(ratio, math.exp(-10.0 * (0.09 - 0.01)))


def test_intensities_do_not_depend_on_table_extent():
    small = reflection_table(LYSOZYME, 0.1, seed=5, b_factor_A2=20.0)
    large = reflection_table(LYSOZYME, 0.2, seed=5, b_factor_A2=20.0)
    lookup = {tuple(h): i for h, i in zip(large.hkl.tolist(), large.intensity, strict=True)}
    np.testing.assert_allclose([lookup[tuple(h)] for h in small.hkl.tolist()], small.intensity)


def test_random_rotations_are_rotations_and_uniform():
    rng = np.random.default_rng(1)
    mats = np.array([random_rotation(rng) for _ in range(3000)])
    np.testing.assert_allclose(
        mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(mats), 1.0)
    # Haar measure: every matrix element has mean 0 and variance 1/3
    assert np.abs(mats.mean(axis=0)).max() < 0.05
    np.testing.assert_allclose(mats.var(axis=0), 1 / 3, atol=0.03)


# ---- diffraction ----------------------------------------------------------------------------
def test_excitation_error_and_partiality():
    k = 9500.0 / HC_EV_A
    # a point on the Ewald sphere: q = k_out - k_in with |k_out| = k
    two_theta = 0.3
    q_on = np.array([[k * math.sin(two_theta), 0.0, k * (math.cos(two_theta) - 1)]])
    assert excitation_error(q_on, k)[0] == pytest.approx(0.0, abs=1e-12)
    q_off = q_on * 1.01
    s = excitation_error(q_off, k)[0]
    assert s > 0
    sigma = profile_sigma(np.linalg.norm(q_on, axis=1), k, 1e4, math.radians(0.1), 0.002)
    assert partiality(np.zeros(1), sigma)[0] == 1.0
    assert partiality(np.array([s]), sigma)[0] < 1.0
    # wider for more mosaicity and for more bandwidth
    q = np.array([0.3])
    base = profile_sigma(q, k, 1e4, math.radians(0.1), 0.0)
    assert profile_sigma(q, k, 1e4, math.radians(0.3), 0.0) > base
    assert profile_sigma(q, k, 1e4, math.radians(0.1), 0.01) > base


def test_polarisation_along_x():
    dirs = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(polarisation_factor(dirs), [1.0, 0.0, 1.0])


def test_projection_hits_the_right_pixel(geom):
    planes = PanelPlanes.from_geometry(geom, np.full(len(geom.panels), 0.035))
    pos = planes.pixel_positions_m(geom)
    rng = np.random.default_rng(2)
    ss = rng.integers(0, 480, 200)
    fs = rng.integers(0, 120, 200)
    # aim at a sub-pixel point inside each pixel
    off = rng.uniform(-0.4, 0.4, size=(200, 2))
    pidx = geom.panel_index_map()[ss, fs]
    target = pos[ss, fs] + off[:, :1] * planes.fs_m[pidx] + off[:, 1:] * planes.ss_m[pidx]
    panel, pfs, pss = planes.project(target * 3.7)  # any length along the ray
    np.testing.assert_array_equal(panel, pidx)
    np.testing.assert_allclose(pfs, fs + off[:, 0], atol=1e-9)
    np.testing.assert_allclose(pss, ss + off[:, 1], atol=1e-9)
    # the direct beam goes through the gap
    assert planes.project(np.array([[0.0, 0.0, 1.0]]))[0][0] == -1


# ---- rendering ------------------------------------------------------------------------------
def test_erf_accuracy():
    x = np.linspace(-5, 5, 2001)
    np.testing.assert_allclose(erf(x), [math.erf(v) for v in x], atol=2e-7)


def _render(fs, ss, photons=1000.0, sigma=0.8, tail=0.15, tail_sigma=2.0):
    bounds = np.array([[0, 59, 0, 119], [60, 119, 0, 119]])
    fs, ss = np.atleast_1d(fs).astype(float), np.atleast_1d(ss).astype(float)
    n = fs.size
    panel = (fs >= 60).astype(int)
    return render_spots(
        (120, 120),
        bounds,
        panel,
        fs,
        ss,
        np.full(n, photons),
        np.full(n, sigma),
        tail,
        np.full(n, tail_sigma),
    )


def test_spot_flux_and_subpixel_centroid():
    spots = _render([20.3], [40.77])
    img = spots.image
    assert img.sum() == pytest.approx(1000.0, rel=2e-3)
    ss, fs = np.mgrid[0:120, 0:120]
    assert (img * fs).sum() / img.sum() == pytest.approx(20.3, abs=0.01)
    assert (img * ss).sum() / img.sum() == pytest.approx(40.77, abs=0.01)
    assert np.unravel_index(img.argmax(), img.shape) == (41, 20)
    assert spots.on_panel_fraction[0] == pytest.approx(1.0, abs=2e-3)


def test_spot_at_panel_edge_loses_flux_and_never_leaks_to_the_next_panel():
    spots = _render([59.2], [60.0])  # panel 0 ends at fs = 59, the slab's next column is panel 1
    assert spots.image[:, 60:].sum() == 0.0
    assert 0.3 < spots.on_panel_fraction[0] < 0.8
    assert spots.image.sum() == pytest.approx(1000.0 * spots.on_panel_fraction[0])


# ---- config ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"detector": {"dead_fraction": 2}}, "simulate.detector.dead_fraction"),
        ({"crystal": {"size_um_median": -1}}, "simulate.crystal.size_um_median"),
        ({"spot": {"sigma_px": 0}}, "simulate.spot.sigma_px"),
        ({"cell": {"centering": "Q"}}, "simulate.cell.centering"),
        ({"background": {"water_ring_d_A": "3.2"}}, "simulate.background.water_ring_d_A"),
    ],
)
def test_bad_simulate_config_names_the_key(section, key):
    with pytest.raises(ConfigError) as err:
        validate_config({"simulate": section})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_unknown_simulate_key_is_refused():
    with pytest.raises(ConfigError, match="mosaicity.*was unexpected"):
        validate_config({"simulate": {"crystal": {"mosaicity": 0.1}}})


def test_every_simulate_key_has_default_and_description(repo):
    import yaml

    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            assert "default" in sub and "description" in sub, f"{path}.{name}"
            if sub.get("type") == "object":
                assert sub.get("additionalProperties") is False, f"{path}.{name}"
                walk(sub, f"{path}.{name}")

    walk(schema["properties"]["simulate"], "simulate")
    readme = (repo / "config/README.md").read_text()
    for key in (
        "visible_snr",
        "water_ring_d_A",
        "photons_per_um3",
        "dead_fraction",
        "mosaicity_deg",
    ):
        assert f"`{key}`" in readme
