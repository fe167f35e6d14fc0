"""Peaks from segmentation masks: per-panel components, weighted centroids, background, SNR."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.formats.pixelmap import PixelMap
from braggflow.inference.peaks import (
    PanelLayout,
    PeakParams,
    grouped_median,
    label_per_panel,
    peaks_from_mask,
)


def _layout(n_panels: int = 2, ss: int = 32, fs: int = 40) -> PanelLayout:
    raw_panel = np.repeat(np.arange(n_panels), ss)[:, None].repeat(fs, 1)
    return PanelLayout.from_raw_panel(raw_panel)


def _gauss(shape, cf, cs, amp, sigma=1.0):
    ss, fs = np.indices(shape)
    return amp * np.exp(-((fs - cf) ** 2 + (ss - cs) ** 2) / (2 * sigma**2))


def test_single_pixel_peak_sits_on_the_integer_pixel_centre():
    layout = _layout()
    frame = np.full(layout.shape, 10.0, np.float32)
    frame[5, 7] = 110.0
    frame[5, 8] = 60.0
    mask = np.zeros(layout.shape, bool)
    mask[5, 7:9] = True
    table, panel = peaks_from_mask(frame, mask, layout)
    assert len(table) == 1 and panel.tolist() == [0]
    # weights 100 and 50 above the flat background of 10: centroid 7 + 50/150, row exactly 5
    assert table.fs[0] == pytest.approx(7 + 1 / 3, abs=1e-5)
    assert table.ss[0] == pytest.approx(5.0, abs=1e-6)
    assert table.intensity[0] == pytest.approx(150.0, rel=1e-5)
    assert table.max_intensity[0] == pytest.approx(100.0, rel=1e-5)
    assert table.npix[0] == 2
    assert table.snr[0] == 0.0  # a perfectly flat background has no sigma: SNR 0 (peakfinder8)


def test_gaussian_spot_centroid_intensity_and_snr():
    layout = _layout()
    rng = np.random.default_rng(1)
    clean = _gauss(layout.shape, 17.3, 11.6, 300.0, sigma=1.1)
    frame = (rng.normal(50.0, 2.0, layout.shape) + clean).astype(np.float32)
    mask = clean > 20
    table, _ = peaks_from_mask(frame, mask, layout)
    assert len(table) == 1
    assert table.fs[0] == pytest.approx(17.3, abs=0.05)
    assert table.ss[0] == pytest.approx(11.6, abs=0.05)
    assert table.intensity[0] == pytest.approx(clean[mask].sum(), rel=0.03)
    assert table.max_intensity[0] == pytest.approx(clean.max(), rel=0.05)
    sigma = 2.0
    assert table.snr[0] == pytest.approx(clean[mask].sum() / sigma, rel=0.15)


def test_background_offset_does_not_change_the_measurements():
    layout = _layout()
    rng = np.random.default_rng(2)
    frame = rng.poisson(5.0 + _gauss(layout.shape, 20.2, 40.7, 200.0)).astype(np.float32)
    mask = _gauss(layout.shape, 20.2, 40.7, 200.0) > 10
    a, _ = peaks_from_mask(frame, mask, layout)
    b, _ = peaks_from_mask(frame + 1000.0, mask, layout)
    for name in ("fs", "ss", "intensity", "max_intensity", "npix", "snr"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-3)


def test_a_spot_across_a_panel_boundary_gives_one_peak_per_panel():
    layout = _layout(ss=32)
    frame = np.full(layout.shape, 1.0, np.float32)
    frame += _gauss(layout.shape, 20.0, 31.5, 100.0).astype(np.float32)
    mask = frame > 20
    labels, n = label_per_panel(mask, layout)
    assert n == 2
    table, panel = peaks_from_mask(frame, mask, layout)
    assert sorted(panel.tolist()) == [0, 1]
    assert (table.ss[panel == 0] <= 31).all() and (table.ss[panel == 1] >= 32).all()


def test_bad_pixels_size_limits_and_empty_masks():
    layout = _layout()
    frame = np.full(layout.shape, 1.0, np.float32)
    mask = np.zeros(layout.shape, bool)
    assert len(peaks_from_mask(frame, mask, layout)[0]) == 0
    mask[3, 3] = True  # single pixel: below min_pixels=2
    mask[10:12, 10:12] = True  # 4 pixels
    mask[20:30, 5:30] = True  # 250 pixels
    table, _ = peaks_from_mask(frame, mask, layout, params=PeakParams(min_pixels=2, max_pixels=100))
    assert table.npix.tolist() == [4.0]
    bad = np.zeros(layout.shape, bool)
    bad[10:12, 10] = True  # half the 4-pixel peak is masked
    table, _ = peaks_from_mask(frame, mask, layout, bad, PeakParams(min_pixels=2, max_pixels=100))
    assert table.npix.tolist() == [2.0] and table.fs[0] == pytest.approx(11.0)


def test_max_peaks_keeps_the_strongest_and_min_snr_filters():
    layout = _layout(n_panels=1, ss=64, fs=64)
    rng = np.random.default_rng(3)
    frame = rng.normal(10, 1, layout.shape).astype(np.float32)
    mask = np.zeros(layout.shape, bool)
    amps = [50, 400, 200, 100]
    for k, amp in enumerate(amps):
        cf, cs = 10 + 14 * k, 30
        frame += _gauss(layout.shape, cf, cs, amp).astype(np.float32)
        mask |= _gauss(layout.shape, cf, cs, 1.0) > 0.3
    table, _ = peaks_from_mask(frame, mask, layout, params=PeakParams(max_peaks=2))
    assert len(table) == 2 and table.fs.tolist() == pytest.approx([24, 38], abs=0.1)  # order kept
    all_peaks, _ = peaks_from_mask(frame, mask, layout)
    cut = float(np.sort(all_peaks.snr)[1]) + 1e-3
    assert len(peaks_from_mask(frame, mask, layout, params=PeakParams(min_snr=cut))[0]) == 2


def test_grouped_median_matches_numpy():
    rng = np.random.default_rng(4)
    groups = rng.integers(1, 6, 200)
    values = rng.normal(size=200)
    got = grouped_median(groups, values, 6)
    for g in range(1, 6):
        assert got[g - 1] == pytest.approx(np.median(values[groups == g]))
    assert np.isnan(got[5])


def test_mask_from_a_rotated_panel_goes_back_to_raw_coordinates():
    """Segment the assembled image, map back with the pixel map: centroids equal the raw truth."""
    from test_infer import make_geometry

    geom = make_geometry()
    pm = PixelMap.from_geometry(geom)
    layout = PanelLayout.from_raw_panel(pm.raw_panel)
    ss, fs = np.indices(geom.slab_shape)
    truth = [(30.4, 3 * 48 + 20.2), (12.7, 10.6)]  # (fs, ss): one on the upside-down panel 3
    clean = sum(200 * np.exp(-((fs - f) ** 2 + (ss - s) ** 2) / 2.0) for f, s in truth)
    slab = (clean + 2.0).astype(np.float32)
    assembled_mask = pm.assemble((clean > 15).astype(np.uint8))
    slab_mask = pm.to_slab(assembled_mask) > 0
    table, panel = peaks_from_mask(slab, slab_mask, layout)
    order = np.argsort(panel)
    assert panel[order].tolist() == [0, 3]
    assert table.fs[order] == pytest.approx([12.7, 30.4], abs=0.05)
    assert table.ss[order] == pytest.approx([10.6, 3 * 48 + 20.2], abs=0.05)
