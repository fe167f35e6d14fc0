"""Built-in peakfinder8: agreement with Cheetah's compiled peakfinder8, and its rules, on real parts."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.formats.geometry import Geometry, Panel, read_geom
from braggflow.peakfinder8 import FrameStats, Peakfinder8, Peakfinder8Params, match_fraction
from braggflow.peakfinder8 import reference as ref

needs_om = pytest.mark.skipif(
    not ref.available(), reason="ondamonitor (Cheetah's compiled peakfinder8) not installed"
)


def _agreement(a_tables, b_tables, tol=1.0) -> tuple[float, int]:
    m = np.array([match_fraction(a, b, tol) for a, b in zip(a_tables, b_tables, strict=True)]).sum(
        axis=0
    )
    return m[0] / max(m[1], m[2], 1), int(max(m[1], m[2]))


def _two_panels(width: int = 100, height: int = 60) -> Geometry:
    """Two side-by-side panels of a 2x1 sensor, beam off to the side (rings of ~60-100 pixels)."""
    return Geometry(
        panels=[
            Panel("a0", 0, width - 1, 0, height - 1, corner_x=20.0, corner_y=-30.0),
            Panel(
                "a1", width, 2 * width - 1, 0, height - 1, corner_x=20.0 + width + 2, corner_y=-30.0
            ),
        ]
    )


def _spot(frame, fs, ss, amp, sigma=0.8):
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    frame += amp * np.exp(-((xx - fs) ** 2 + (yy - ss) ** 2) / (2 * sigma**2))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from braggflow.formats.frames import FrameSource
    from braggflow.simulate import quick_experiment

    exp = quick_experiment(tmp_path_factory.mktemp("pf8"), n_frames=8, seed=11)
    geom = read_geom(exp["geometry"])
    with FrameSource(exp["frames"], geom) as src:
        frames = np.stack([src.read(i) for i in range(len(src))])
        good = ~src.bad_pixels()
    return geom, frames, good


@needs_om
@pytest.mark.parametrize(
    "params",
    [
        Peakfinder8Params(),
        Peakfinder8Params(adc_threshold=15, min_snr=6, min_pix_count=1, local_bg_radius=2),
    ],
)
def test_matches_cheetah_on_simulated_frames(simulated, params):
    geom, frames, good = simulated
    finder = Peakfinder8.from_geometry(geom, params, good)
    cheetah = ref.ReferencePeakfinder8(finder)
    ours = finder.find_many(frames)
    theirs = [cheetah.find(f) for f in frames]
    agreement, n = _agreement(ours, theirs)
    assert n > 100
    assert agreement >= 0.98, f"{agreement:.3f} of {n} peaks agree"
    # matched peaks carry the same measures
    a, b = ours[0], theirs[0]
    order_a, order_b = np.lexsort((a.fs, a.ss)), np.lexsort((b.fs, b.ss))
    if len(a) == len(b):
        np.testing.assert_allclose(a.intensity[order_a], b.intensity[order_b], rtol=1e-3)
        np.testing.assert_allclose(a.npix[order_a], b.npix[order_b])


@needs_om
def test_matches_cheetah_on_the_real_cspad_sensor(shared_fixtures):
    data = np.load(shared_fixtures / "images" / "cspad_asic_cxitut13_r10_e32.npy").astype(
        np.float32
    )
    assert data.shape == (185, 388)
    cspad = read_geom(shared_fixtures / "geometry" / "cspad_cxiformat.geom")
    geom = Geometry(panels=[cspad.panel("q0a0"), cspad.panel("q0a1")])  # the first 2x1: 185 x 2*194
    assert geom.slab_shape == data.shape
    total = 0
    for params in (
        Peakfinder8Params(adc_threshold=100, min_snr=5, min_pix_count=2, max_pix_count=40),
        Peakfinder8Params(adc_threshold=50, min_snr=4, min_pix_count=1, local_bg_radius=4),
    ):
        finder = Peakfinder8.from_geometry(geom, params)
        ours = finder.find(data)
        theirs = ref.ReferencePeakfinder8(finder).find(data)
        agreement, n = _agreement([ours], [theirs])
        assert agreement >= 0.98, f"{agreement:.3f} of {n} peaks agree"
        total += n
        assert (ours.max_intensity > 0).all()
    assert total >= 15  # the sensor holds ~17 Bragg-like maxima above 200 ADU


def test_finds_spots_at_their_centroids_and_measures_them():
    geom = _two_panels()
    rng = np.random.default_rng(0)
    frame = rng.normal(10.0, 1.0, geom.slab_shape).astype(np.float32)
    truth = [(10.3, 12.6), (25.0, 40.2), (160.7, 8.4)]
    for fs, ss in truth:
        _spot(frame, fs, ss, 1000.0)
    finder = Peakfinder8.from_geometry(
        geom, Peakfinder8Params(adc_threshold=20, min_snr=5, min_pix_count=2)
    )
    stats = FrameStats()
    found = finder.find(frame, stats)
    assert len(found) == 3 and stats.n_peaks == 3
    d = np.hypot(
        found.fs[:, None] - np.array(truth)[:, 0], found.ss[:, None] - np.array(truth)[:, 1]
    )
    assert d.min(axis=0).max() < 0.3
    assert (found.snr > 5).all() and (found.npix >= 2).all()
    # total intensity ~ the spot's integral above the background (2 pi sigma^2 amp = 4021)
    assert np.all((found.intensity > 3000) & (found.intensity < 4300))
    assert np.all((found.max_intensity > 700) & (found.max_intensity < 1010))


def test_peaks_never_cross_panel_edges_and_respect_mask_and_resolution():
    geom = _two_panels()
    frame = np.random.default_rng(1).normal(10.0, 1.0, geom.slab_shape).astype(np.float32)
    _spot(frame, 99.5, 30.0, 1000.0)  # straddles the a0|a1 edge in the slab
    _spot(frame, 10.0, 10.0, 1000.0)
    finder = Peakfinder8.from_geometry(
        geom, Peakfinder8Params(adc_threshold=20, min_snr=5, min_pix_count=1)
    )
    found = finder.find(frame)
    assert np.any(np.abs(found.ss - 30.0) < 0.5)  # the edge spot is found (on one side or both)
    for fs in found.fs:
        assert fs <= 99 or fs >= 100  # each centroid lies inside one panel
    assert np.any(np.abs(found.fs - 10.0) < 0.5)
    good = np.ones(geom.slab_shape, dtype=bool)
    good[8:13, 8:13] = False
    masked = Peakfinder8.from_geometry(
        geom, Peakfinder8Params(adc_threshold=20, min_snr=5, min_pix_count=1), good
    ).find(frame)
    assert not np.any(np.hypot(masked.fs - 10, masked.ss - 10) < 2)
    # min_res: the spot at (10, 10) is ~36 px from the beam, the edge spot ~120 px
    near_cut = Peakfinder8Params(adc_threshold=20, min_snr=5, min_pix_count=1, min_res=60)
    far = Peakfinder8.from_geometry(geom, near_cut).find(frame)
    assert not np.any(np.abs(far.fs - 10.0) < 2) and len(far) >= 1


def test_nonfinite_pixels_are_ignored_and_counted():
    geom = _two_panels()
    frame = np.random.default_rng(2).normal(10.0, 1.0, geom.slab_shape).astype(np.float32)
    _spot(frame, 20.0, 15.0, 1000.0)
    frame[3, 3] = np.nan
    frame[5, 150] = np.inf
    frame[7, 160] = -np.inf
    stats = FrameStats()
    found = Peakfinder8.from_geometry(geom, Peakfinder8Params(adc_threshold=20, min_snr=5)).find(
        frame, stats
    )
    assert stats.n_nonfinite == 3
    assert len(found) == 1 and np.isfinite(found.intensity).all()


def test_batched_search_equals_frame_by_frame(simulated):
    geom, frames, good = simulated
    finder = Peakfinder8.from_geometry(geom, Peakfinder8Params(), good)
    single = [finder.find(f) for f in frames]
    for batch in (3, 8):
        many = finder.find_many(frames, batch=batch)
        for a, b in zip(single, many, strict=True):
            for col in ("fs", "ss", "intensity", "max_intensity", "npix", "snr"):
                np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


def test_parameter_checks_and_shape_errors():
    with pytest.raises(ValueError, match="min_pix_count"):
        Peakfinder8Params(min_pix_count=5, max_pix_count=2)
    with pytest.raises(ValueError, match="min_snr"):
        Peakfinder8Params(min_snr=0)
    p = Peakfinder8Params.from_config(
        {"adc_threshold": 7, "max_peaks_per_frame": 5, "engine": "builtin"}
    )
    assert (p.adc_threshold, p.max_num_peaks) == (7, 5)
    finder = Peakfinder8.from_geometry(_two_panels(), p)
    with pytest.raises(ValueError, match="does not match"):
        finder.find(np.zeros((5, 5), dtype=np.float32))


@needs_om
@pytest.mark.parametrize(
    "case", ["negative_outliers", "adc_below_background", "nan_pixels", "huge_values"]
)
def test_shortcut_paths_agree_with_cheetah(simulated, case):
    """The exact shortcuts (dim core, moved bins, full rounds) give Cheetah's peaks."""
    geom, frames, good = simulated
    frame = frames[0].copy()
    rng = np.random.default_rng(3)
    params = Peakfinder8Params()
    if case == "negative_outliers":  # bins whose minimum reaches the lower threshold
        idx = rng.choice(frame.size, 200, replace=False)
        frame.flat[idx] = -500.0
    elif case == "adc_below_background":  # nearly every pixel is in the fringe
        frame += 100.0
        params = Peakfinder8Params(adc_threshold=5.0)
    elif case == "nan_pixels":  # Cheetah never counts NaN; the full-round path
        frame.flat[rng.choice(frame.size, 300, replace=False)] = np.nan
    else:  # beyond Cheetah's initial +-1e9 limits
        frame.flat[rng.choice(frame.size, 5, replace=False)] = 2e9
    finder = Peakfinder8.from_geometry(geom, params, good)
    ours = finder.find(frame)
    theirs = ref.ReferencePeakfinder8(finder).find(frame)
    agreement, n = _agreement([ours], [theirs])
    assert n > 10 and agreement >= 0.98, f"{agreement:.3f} of {n}"
    assert np.isfinite(ours.intensity).all()


def test_tiled_layout_of_big_detectors_gives_the_same_peaks(simulated):
    """Big detectors are laid out tile by tile (scattered in raster order): same peaks."""
    geom, frames, good = simulated
    plain = Peakfinder8.from_geometry(geom, Peakfinder8Params(), good)
    tiled = Peakfinder8(
        plain.pidx_flat.reshape(plain.shape),
        plain.bounds,
        plain.rbin_flat.reshape(plain.shape).astype(np.float32),
        plain.valid_flat.reshape(plain.shape),
        plain.params,
        tiled=True,
    )
    assert tiled.tiled and not plain.tiled
    for a, b in zip(plain.find_many(frames), tiled.find_many(frames, batch=3), strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.fs, b.fs, atol=1e-4)
        np.testing.assert_allclose(a.ss, b.ss, atol=1e-4)
        np.testing.assert_allclose(a.intensity, b.intensity, rtol=1e-4)
        np.testing.assert_array_equal(a.npix, b.npix)
