"""Edge cases of fit windows on a slab: panel and slab edges, masked, NaN and saturated pixels."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.fitting.fit import STATUS_ACCEPTED, fit_windows, label_windows, paint_labels
from braggflow.fitting.model import N_PARAMS, model
from braggflow.fitting.windows import FitSettings, extract_windows

N_SS, N_FS = 40, 60  # two panels side by side: fs 0..29 -> panel 0, fs 30..59 -> panel 1


def _panel_map() -> np.ndarray:
    pmap = np.zeros((N_SS, N_FS), int)
    pmap[:, 30:] = 1
    return pmap


def _slab(peaks, rng, background=2.0, amplitude=300.0, sigma=0.9):
    """Poisson slab with Gaussian spots (eta = 0) that never cross their panel edge."""
    pmap = _panel_map()
    mean = np.full((N_SS, N_FS), background)
    ss, fs = np.mgrid[0:N_SS, 0:N_FS].astype(float)
    for pfs, pss in peaks:
        panel = pmap[int(round(pss)), int(round(pfs))]
        spot = amplitude * np.exp(-((fs - pfs) ** 2 + (ss - pss) ** 2) / (2 * sigma**2))
        mean += np.where(pmap == panel, spot, 0.0)
    return rng.poisson(mean).astype(float), pmap


def _fit(slab, pmap, usable, fs, ss, saturation=None, settings=None):
    win = extract_windows(
        slab, pmap, usable, np.array(fs, float), np.array(ss, float), 9, saturation
    )
    settings = settings or FitSettings()
    table = fit_windows(win, settings)
    labels = paint_labels(np.zeros(slab.shape, np.uint8), win, label_windows(table, win, 0.5))
    return win, table, labels


def test_window_at_a_panel_edge_is_clipped_never_wrapped():
    rng = np.random.default_rng(0)
    slab, pmap = _slab([(29.2, 20.0)], rng)  # centre in the last column of panel 0
    slab[:, 30:] += 500.0  # bright neighbour panel: would ruin the fit if it leaked in
    usable = np.ones_like(slab, bool)
    win, table, labels = _fit(slab, pmap, usable, [29.0], [20.0])
    assert not win.fit_mask[0][:, 5:].any()  # columns fs 30..33 belong to panel 1
    assert win.fit_mask[0][:, :5].all()
    assert table["status"][0] == STATUS_ACCEPTED
    assert abs(table["fs"][0] - 29.2) < 0.25 and abs(table["ss"][0] - 20.0) < 0.2
    assert table["fs"][0] <= 29.0 + 1e-9  # centre bounded inside the usable window
    assert labels[:, 30:].sum() == 0 and labels[20, 29] == 1


def test_window_at_the_slab_edge():
    rng = np.random.default_rng(1)
    slab, pmap = _slab([(0.3, 0.4)], rng)
    usable = np.ones_like(slab, bool)
    win, table, labels = _fit(slab, pmap, usable, [0.0], [0.0])
    assert win.fit_mask[0].sum() == 25  # 5 x 5 corner of the 9 x 9 window
    assert table["status"][0] == STATUS_ACCEPTED
    assert labels[0, 0] == 1
    assert labels[-5:, :].sum() == 0 and labels[:, -5:].sum() == 0  # nothing wrapped around


def test_masked_and_nan_pixels_are_left_out():
    rng = np.random.default_rng(2)
    slab, pmap = _slab([(10.0, 12.0)], rng)
    usable = np.ones_like(slab, bool)
    usable[12, 11] = False  # masked pixel right next to the peak
    usable[8:17, 14] = False  # a dead column inside the window
    slab[13, 9] = np.nan
    slab[12, 11] = 1e6  # garbage under the mask
    win, table, labels = _fit(slab, pmap, usable, [10.0], [12.0])
    m = win.fit_mask[0]
    assert not m[4, 5] and not m[:, 8].any() and not m[5, 3]
    assert table["status"][0] == STATUS_ACCEPTED
    assert abs(table["fs"][0] - 10.0) < 0.15 and abs(table["ss"][0] - 12.0) < 0.15
    assert labels[12, 11] == 0 and labels[13, 9] == 0  # never label unusable pixels
    assert labels[12, 10] == 1


def test_saturated_peak_is_fitted_from_its_wings_and_labelled():
    rng = np.random.default_rng(3)
    slab, pmap = _slab([(15.3, 20.0)], rng, amplitude=3000.0)
    usable = np.ones_like(slab, bool)
    clipped = np.minimum(slab, 1200.0)  # detector saturation
    assert (clipped == 1200.0).sum() >= 3
    _, t_naive, _ = _fit(clipped, pmap, usable, [15.0], [20.0])
    win, table, labels = _fit(clipped, pmap, usable, [15.0], [20.0], saturation=1200.0)
    assert win.fit_mask[0].sum() < win.label_mask[0].sum()  # saturated pixels out of the fit
    assert table["status"][0] == STATUS_ACCEPTED
    assert abs(table["fs"][0] - 15.3) < 0.1
    assert table["reduced_chi2"][0] < t_naive["reduced_chi2"][0]
    assert table["amplitude"][0] > 1200.0  # the profile extrapolates above the clip level
    assert labels[20, 15] == 1 and labels[20, 16] == 1  # saturated core is labelled


def test_candidates_off_any_panel_are_recorded_not_dropped():
    rng = np.random.default_rng(4)
    slab, pmap = _slab([(10.0, 10.0)], rng)
    pmap[:, 50:] = -1
    usable = pmap >= 0
    win, table, _ = _fit(slab, pmap, usable, [10.0, 55.0, -3.0], [10.0, 10.0, 5.0])
    assert table["status"].size == 3
    assert table["accepted"].tolist() == [True, False, False]


def test_empty_candidate_list_gives_empty_table():
    slab = np.zeros((N_SS, N_FS))
    win, table, labels = _fit(slab, _panel_map(), np.ones_like(slab, bool), [], [])
    assert win.n == 0 and table["status"].size == 0 and labels.sum() == 0


def test_model_parameter_count():
    assert model(np.ones((1, N_PARAMS)), np.zeros(3), np.zeros(3)).shape == (1, 3)


def test_fit_frames_with_zero_candidates_and_a_bad_frame(tmp_path):
    """A batch of real frames: one with candidates, one with none, one unreadable."""
    pytest.importorskip("braggflow.simulate")
    from braggflow.fitting.stage import FrameJob, detector_context, fit_frames
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.simulate import quick_experiment, read_truth

    exp = quick_experiment(tmp_path, n_frames=3, seed=3, blank_fraction=0.0)
    geom = read_geom(exp["geometry"])
    truth = read_truth(exp["truth"])
    with FrameSource(exp["frames"], geom) as src:
        ctx = detector_context(geom, src.bad_pixels())
    vis = truth.reflections_in(0, visible_only=True)
    jobs = [
        FrameJob("r", str(exp["frames"]), 0, vis["fs"], vis["ss"]),
        FrameJob("r", str(exp["frames"]), 1, np.empty(0), np.empty(0)),
        FrameJob("r", str(exp["frames"]), 99, np.array([5.0]), np.array([5.0])),
    ]
    out = fit_frames(ctx, jobs, FitSettings())
    assert [o.event for o in out] == [0, 1, 99]
    assert out[0].labels.any() and out[0].fits["status"].size == vis["fs"].size
    assert out[0].fits["accepted"].mean() > 0.9
    assert out[1].labels is not None and not out[1].labels.any() and out[1].fits["status"].size == 0
    assert out[2].labels is None and out[2].error
