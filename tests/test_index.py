"""Built-in indexer on synthetic stills made from a known orientation (no simulator needed).

Spots are generated independently of the indexer's own detector code: a flat detector normal
to the beam, panels with fs = +x and ss = +y, so a ray (kx, ky, kz) lands at
x = clen kx / kz (CrystFEL's ``locate_peak``).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from braggflow.evaluation.orientation import misorientation_deg
from braggflow.formats.cell import UnitCell
from braggflow.formats.geometry import Geometry, Panel
from braggflow.indexing.builtin import NOT_HIT, BuiltinIndexer, BuiltinParams
from braggflow.indexing.cellmatch import Tolerance, cell_agrees, cell_of, to_target_setting
from braggflow.indexing.detector import Detector, wavelength_A
from braggflow.indexing.integrate import integrate_rings
from braggflow.indexing.refine import _rotation, cell_ties, refine_constrained

RES = 10000.0  # 100 um pixels
CLEN = 0.05
N_PX = 128
ENERGY = 9500.0
LYSO = UnitCell("tetragonal", "P", "c", 79.1, 79.1, 38.0, 90.0, 90.0, 90.0)


def flat_geometry() -> Geometry:
    """Four 128 x 128 panels around the beam, stacked along ss in the slab."""
    panels = []
    corners = [(-130.0, -130.0), (2.0, -130.0), (-130.0, 2.0), (2.0, 2.0)]
    for i, (cx, cy) in enumerate(corners):
        panels.append(
            Panel(
                name=f"q{i}",
                min_fs=0,
                max_fs=N_PX - 1,
                min_ss=i * N_PX,
                max_ss=(i + 1) * N_PX - 1,
                corner_x=cx,
                corner_y=cy,
                res_px_per_m=RES,
                clen=CLEN,
            )
        )
    return Geometry(panels=panels, photon_energy=ENERGY)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def still(
    geom: Geometry,
    cell: UnitCell,
    rotation: np.ndarray,
    radius: float = 6e-4,
    noise_px: float = 0.2,
    rng: np.random.Generator | None = None,
):
    """Spots (fs, ss, intensity), true reciprocal basis (1/A) and hkl of one still."""
    rng = rng or np.random.default_rng(0)
    k = 1.0 / wavelength_A(ENERGY)
    rstar = cell.reciprocal_matrix() @ rotation.T
    hmax = 40
    hkl = np.stack(np.meshgrid(*[np.arange(-hmax, hmax + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    q = hkl @ rstar
    kout = q.copy()
    kout[:, 2] += k
    s = np.linalg.norm(kout, axis=1) - k
    keep = (np.abs(s) <= radius) & np.any(hkl != 0, axis=1) & (kout[:, 2] > 0)
    kout, hkl = kout[keep], hkl[keep]
    x = CLEN * kout[:, 0] / kout[:, 2] * RES
    y = CLEN * kout[:, 1] / kout[:, 2] * RES
    fs, ss, got = [], [], []
    for p in geom.panels:
        u, v = x - p.corner_x, y - p.corner_y
        on = (u >= 0) & (u < p.width) & (v >= 0) & (v < p.height)
        fs.append(u[on] - 0.5 + p.min_fs)
        ss.append(v[on] - 0.5 + p.min_ss)
        got.append(hkl[on])
    fs, ss, hkl = np.concatenate(fs), np.concatenate(ss), np.concatenate(got)
    fs = fs + rng.normal(0, noise_px, fs.size)
    ss = ss + rng.normal(0, noise_px, ss.size)
    return fs, ss, rng.exponential(100.0, fs.size), rstar, hkl


def test_detector_positions_agree_with_geometry():
    geom = flat_geometry()
    det = Detector.from_geometry(geom)
    xs, ys = geom.lab_xy_px()
    rng = np.random.default_rng(1)
    ss = rng.integers(0, geom.slab_shape[0], 50)
    fs = rng.integers(0, geom.slab_shape[1], 50)
    panel = det.panel_of(fs, ss)
    pos = det.lab_positions_m(panel, fs, ss)
    np.testing.assert_allclose(pos[:, 0] * RES, xs[ss, fs], atol=1e-9)
    np.testing.assert_allclose(pos[:, 1] * RES, ys[ss, fs], atol=1e-9)
    np.testing.assert_allclose(pos[:, 2], CLEN)


def test_scattering_vectors_project_back_to_the_same_pixels():
    geom = flat_geometry()
    det = Detector.from_geometry(geom)
    rng = np.random.default_rng(2)
    fs = rng.uniform(0, N_PX - 1, 40)
    ss = rng.uniform(0, 4 * N_PX - 1, 40)
    panel = det.panel_of(fs, ss)
    lam = wavelength_A(ENERGY)
    q = det.scattering_vectors(panel, fs, ss, lam)
    kout = q.copy()
    kout[:, 2] += 1.0 / lam
    p2, fs2, ss2 = det.project(kout)
    np.testing.assert_array_equal(p2, panel)
    np.testing.assert_allclose(fs2, fs, atol=1e-6)
    np.testing.assert_allclose(ss2, ss, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_indexes_synthetic_stills_with_right_cell_and_orientation(seed):
    geom = flat_geometry()
    rng = np.random.default_rng(seed)
    fs, ss, inten, rstar, _ = still(geom, LYSO, random_rotation(rng), rng=rng)
    assert fs.size >= 20
    ix = BuiltinIndexer(geom, LYSO, BuiltinParams(search="targeted"))
    result = ix.index_frame(fs, ss, inten, ENERGY)
    assert result.indexed, result.reason
    cr = result.crystals[0]
    assert misorientation_deg(rstar, cr.reciprocal) < 0.5
    a, b, c, al, be, ga = cr.cell
    assert a == pytest.approx(79.1, rel=0.01) and c == pytest.approx(38.0, rel=0.01)
    assert max(abs(al - 90), abs(be - 90), abs(ga - 90)) < 1.0
    assert cr.peak_indexed.sum() >= 0.9 * fs.size
    # every observed spot has a predicted reflection within 1 px (PeakDiff matches on these)
    pred = cr.prediction
    for f, s in zip(fs, ss, strict=True):
        assert np.min(np.hypot(pred.fs - f, pred.ss - s)) < 1.0


def test_blank_frames_with_random_peaks_are_never_indexed():
    geom = flat_geometry()
    ix = BuiltinIndexer(geom, LYSO, BuiltinParams(search="targeted"))
    rng = np.random.default_rng(7)
    n_ss, n_fs = geom.slab_shape
    for _ in range(12):
        n = int(rng.integers(10, 60))
        result = ix.index_frame(
            rng.uniform(0, n_fs - 1, n),
            rng.uniform(0, n_ss - 1, n),
            rng.exponential(100, n),
            ENERGY,
        )
        assert not result.indexed and result.reason != NOT_HIT


def test_frame_with_few_peaks_is_not_a_hit():
    geom = flat_geometry()
    ix = BuiltinIndexer(geom, LYSO, BuiltinParams(search="targeted", min_peaks=10))
    result = ix.index_frame(np.arange(5.0), np.arange(5.0), np.ones(5), ENERGY)
    assert result.reason == NOT_HIT and not result.indexed


def test_target_setting_found_for_centred_and_permuted_lattices():
    target = UnitCell("orthorhombic", "C", "c", 61.4, 122.6, 168.0, 90.0, 90.0, 90.0)
    conv = target.direct_matrix() @ random_rotation(np.random.default_rng(4)).T
    # a primitive basis of the C lattice, in a scrambled order: (a+b)/2, c, (a-b)/2
    prim = np.stack([(conv[0] + conv[1]) / 2, conv[2], (conv[0] - conv[1]) / 2])
    basis = to_target_setting(prim, target, Tolerance())
    assert basis is not None
    assert cell_of(basis) == pytest.approx(target.parameters, rel=1e-6)
    assert np.linalg.det(basis) > 0
    wrong = UnitCell("orthorhombic", "P", "c", 50.0, 90.0, 140.0, 90.0, 90.0, 90.0)
    assert to_target_setting(prim, wrong, Tolerance()) is None


def test_cell_tolerances_like_indexamajig():
    target = (79.1, 79.1, 38.0, 90.0, 90.0, 90.0)
    assert cell_agrees((82.0, 77.0, 39.0, 91.4, 89.0, 90.0), target, Tolerance())
    assert not cell_agrees((83.2, 79.1, 38.0, 90.0, 90.0, 90.0), target, Tolerance())  # 5.2%
    assert not cell_agrees((79.1, 79.1, 38.0, 91.6, 90.0, 90.0), target, Tolerance())  # 1.6 deg


def test_constrained_refinement_recovers_orientation_and_cell():
    rng = np.random.default_rng(5)
    rot = random_rotation(rng)
    true_direct = (
        UnitCell("tetragonal", "P", "c", 80.0, 80.0, 37.5, 90, 90, 90).direct_matrix() @ rot.T
    )
    hkl = rng.integers(-8, 9, size=(60, 3))
    q = hkl @ np.linalg.inv(true_direct).T
    start = (LYSO.direct_matrix() @ rot.T) @ _rotation(np.radians([0.4, -0.3, 0.2])).T
    refined = refine_constrained(q, hkl, start, LYSO.parameters, cell_ties("tetragonal", "c"), 1.3)
    assert misorientation_deg(np.linalg.inv(true_direct).T, np.linalg.inv(refined).T) < 0.01
    assert cell_of(refined) == pytest.approx((80.0, 80.0, 37.5, 90, 90, 90), rel=1e-5)


def test_ring_integration_of_a_gaussian_spot():
    yy, xx = np.mgrid[0:40, 0:40]
    frame = 5.0 + 1000.0 * np.exp(-((xx - 20.3) ** 2 + (yy - 19.6) ** 2) / (2 * 0.8**2)) / (
        2 * np.pi * 0.8**2
    )
    pmap = np.zeros((40, 40), dtype=np.int32)
    res = integrate_rings(frame, None, pmap, np.array([0]), np.array([20.3]), np.array([19.6]))
    assert res.intensity[0] == pytest.approx(1000.0, rel=0.01)
    assert res.background[0] == pytest.approx(5.0, abs=0.01)
    assert res.sigma[0] > 0 and res.peak[0] > 100


def test_builtin_params_are_checked():
    with pytest.raises(ValueError, match="search"):
        BuiltinParams(search="fft")
    with pytest.raises(ValueError, match="hkl_tolerance"):
        BuiltinParams(hkl_tolerance=0.7)
    assert BuiltinParams.from_config({"max_spots": 50, "unknown": 1}).max_spots == 50


RSTBX_SCRIPT = textwrap.dedent(
    """
    from braggflow.indexing.dps import import_cctbx
    import_cctbx()  # before scipy/torch: cctbx ships its own libstdc++
    import numpy as np
    import tests.test_index as t
    from braggflow.formats.geometry import Geometry, Panel
    from braggflow.indexing.builtin import BuiltinIndexer, BuiltinParams
    from braggflow.evaluation.orientation import misorientation_deg
    geom = Geometry(panels=[Panel("p0", 0, 1023, 0, 1023, -512.0, -512.0, res_px_per_m=t.RES, clen=t.CLEN)])
    t.N_PX = 1024
    ok = 0
    for seed in range(2):
        rng = np.random.default_rng(seed)
        fs, ss, inten, rstar, _ = t.still(geom, t.LYSO, t.random_rotation(rng), radius=3e-4, rng=rng)
        res = BuiltinIndexer(geom, t.LYSO, BuiltinParams(search="dps")).index_frame(fs, ss, inten, t.ENERGY)
        ok += res.indexed and misorientation_deg(rstar, res.crystals[0].reciprocal) < 0.5
    print("INDEXED", ok)
    """
)


def test_rstbx_dps_search_indexes_a_rich_still(repo):
    """cctbx rstbx's full DPS search (own process: cctbx must come before scipy.special/torch)."""
    proc = subprocess.run(
        [sys.executable, "-c", RSTBX_SCRIPT], cwd=repo, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "INDEXED 2" in proc.stdout


def test_cctbx_after_scipy_special_is_refused_not_a_segfault(repo):
    code = (
        "import scipy.special\nfrom braggflow.indexing.dps import import_cctbx\n"
        "try:\n    import_cctbx()\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "BraggflowError" in proc.stdout and "scipy.special" in proc.stdout
