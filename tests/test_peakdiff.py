"""PeakDiff: the matcher, precision/recall, frame selection, TSV and figures (section 2.1.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from braggflow import peakdiff as pd


def test_match_is_one_to_one_and_globally_optimal():
    # Greedy nearest-neighbour would pair a1-b0 (0.9 px) and leave a0 unmatched; the
    # assignment keeps both pairs.
    m = pd.match_peaks([0.0, 2.0], [0.0, 0.0], [1.1, 3.0], [0.0, 0.0], max_distance_px=1.5)
    assert m.n_matched == 2
    assert dict(zip(m.a_index.tolist(), m.b_index.tolist(), strict=True)) == {0: 0, 1: 1}
    np.testing.assert_allclose(m.distance_px, [1.1, 1.0])


def test_pairs_beyond_max_distance_and_other_panels_stay_unmatched():
    a_fs, a_ss = [10.0, 50.0, 80.0], [10.0, 10.0, 10.0]
    b_fs, b_ss = [10.5, 54.0, 80.2], [10.0, 10.0, 10.0]
    m = pd.match_peaks(a_fs, a_ss, b_fs, b_ss, 3.0, a_panel=[0, 0, 1], b_panel=[0, 0, 2])
    assert m.a_index.tolist() == [0]  # 4 px too far; 0.2 px but on another panel
    assert m.unmatched_a().tolist() == [1, 2]
    assert m.unmatched_b().tolist() == [1, 2]


@pytest.mark.parametrize("n_a,n_b", [(0, 0), (0, 3), (4, 0)])
def test_empty_peak_lists(n_a, n_b):
    m = pd.match_peaks(np.zeros(n_a), np.zeros(n_a), np.ones(n_b), np.ones(n_b), 3.0)
    assert m.n_matched == 0 and m.n_a == n_a and m.n_b == n_b
    p, r = pd.precision_recall(m.n_matched, n_a, n_b)
    assert math.isnan(p) if n_a == 0 else p == 0.0
    assert math.isnan(r) if n_b == 0 else r == 0.0


def test_match_handles_many_peaks_and_recovers_a_permutation():
    rng = np.random.default_rng(3)
    fs, ss = rng.uniform(0, 500, 300), rng.uniform(0, 500, 300)
    perm = rng.permutation(300)
    m = pd.match_peaks(fs, ss, fs[perm] + 0.1, ss[perm], 1.0)
    assert m.n_matched >= 298  # two random points closer than 1 px may swap partners
    assert np.mean(perm[m.b_index] == m.a_index) > 0.98


def test_precision_recall_definitions():
    assert pd.precision_recall(8, 10, 40) == (0.8, 0.2)


def _stats(found, predicted, matched, indexed=True):
    return pd.FrameStats("f.cxi", 0, found, predicted, matched, indexed=indexed)


@pytest.mark.parametrize(
    "stats,reason",
    [
        (_stats(50, 100, 45), pd.REASON_SELECTED),
        (_stats(50, 0, 0, indexed=False), pd.REASON_NOT_INDEXED),
        (_stats(5, 100, 5), pd.REASON_FEW_FOUND),
        (_stats(50, 5, 5), pd.REASON_FEW_PREDICTED),
        (_stats(50, 100, 39), pd.REASON_LOW_PRECISION),
        (_stats(12, 200, 12), pd.REASON_LOW_RECALL),
    ],
)
def test_selection_reasons(stats, reason):
    params = {"min_precision": 0.8, "min_recall": 0.1, "min_found": 10, "min_predicted": 10}
    pd.apply_selection([stats], params)
    assert stats.reason == reason
    assert stats.selected == (reason == pd.REASON_SELECTED)


def test_nan_precision_never_selected():
    s = _stats(0, 30, 0)
    pd.apply_selection(
        [s], {"min_found": 0, "min_predicted": 0, "min_precision": 0.0, "min_recall": 0.0}
    )
    assert not s.selected and s.reason == pd.REASON_LOW_PRECISION


def test_tsv_round_trip_and_bad_tsv():
    from braggflow.errors import InputError

    rows = [_stats(50, 100, 45), _stats(0, 0, 0, indexed=False)]
    pd.apply_selection(rows, {})
    text = pd.format_selection_tsv(rows)
    assert text.splitlines()[0].split("\t") == list(pd.TSV_COLUMNS)
    back = pd.parse_selection_tsv(text)
    assert [r.selected for r in back] == [True, False]
    assert back[0].precision == pytest.approx(0.9) and math.isnan(back[1].precision)
    with pytest.raises(InputError, match="missing columns"):
        pd.parse_selection_tsv("file\tevent\n")


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        _stats(int(f), 60, int(f * p))
        for f, p in zip(rng.integers(0, 60, 30), rng.uniform(0, 1, 30), strict=True)
    ]
    pd.apply_selection(rows, {})
    pd.plot_counts(rows, str(tmp_path / "c.png"))
    pd.plot_precision_recall(rows, {}, str(tmp_path / "s.png"))
    img = rng.poisson(2.0, (64, 64)).astype(float)
    frame = pd.OverlayFrame(
        "t",
        img,
        rng.uniform(0, 64, (5, 2)),
        rng.uniform(0, 64, (7, 2)),
        np.r_[True, False, True, False, False],
        np.zeros(7, bool),
    )
    pd.plot_overlay([frame], str(tmp_path / "o.png"))
    pd.plot_overlay([], str(tmp_path / "empty.png"))
    for name in ("c", "s", "o", "empty"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_overlay_picks_distinct_selected_and_rejected_frames():
    rows = [_stats(50, 100, 45), _stats(50, 100, 42), _stats(60, 100, 20), _stats(0, 0, 0, False)]
    for i, r in enumerate(rows):
        r.event = i
    pd.apply_selection(rows, {})
    picks = pd.pick_overlay_events(rows, 3)
    assert len(picks) == len(set(picks)) == 3
    assert 2 in picks  # the rejected frame with peaks


def test_crystals_correct():
    t = (np.array([10.0, 20.0, 30.0]), np.array([5.0, 5.0, 5.0]), np.zeros(3, int))
    right = (t[0] + 0.3, t[1], t[2])
    wrong = (t[0] + 7.0, t[1] + 7.0, t[2])
    assert pd.crystals_correct([right], [t], [True], 1.5)
    assert not pd.crystals_correct([wrong], [t], [True], 1.5)
    assert not pd.crystals_correct([], [t], [True], 1.5)
    # a second true lattice that is needed but not indexed
    assert not pd.crystals_correct([right], [t, wrong], [True, True], 1.5)
    assert pd.crystals_correct([right], [t, wrong], [True, False], 1.5)
