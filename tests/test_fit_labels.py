"""fit-labels: held-out split, training-set layout, the command on a simulated run (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from braggflow.fitting.trainset import SPLIT_HELD_OUT, assign_split, read_trainset

standin = pytest.importorskip("test_fit_labels_data")


def test_split_is_seeded_deterministic_and_order_free():
    keys = [("r0000", i) for i in range(40)] + [("r0001", i) for i in range(40)]
    a = assign_split(keys, 0.2, seed=7)
    assert a.sum() == 16
    b = assign_split(keys[::-1], 0.2, seed=7)[::-1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, assign_split(keys, 0.2, seed=8))
    assert assign_split(keys[:2], 0.2, 1).sum() == 1  # at least one held-out frame
    assert assign_split(keys, 0.0, 1).sum() == 0 and assign_split([], 0.2, 1).size == 0
    # adding frames leaves most assignments alone
    more = assign_split(keys + [("r0002", i) for i in range(10)], 0.2, seed=7)[: len(keys)]
    assert np.mean(more == a) > 0.9


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two simulated runs with stand-in streams and PeakDiff selections (in-process CLI)."""
    from braggflow.cli import main

    root = tmp_path_factory.mktemp("fl")
    runs = {}
    for run, seed in (("r0000", 11), ("r0001", 12)):
        p = standin.standin_inputs(root / run, n_frames=6, seed=seed, run=run)
        sel = root / f"{run}.tsv"
        assert (
            main(
                [
                    "peakdiff",
                    "--peaks",
                    str(p["peaks"]),
                    "--stream",
                    str(p["stream"]),
                    "--frames",
                    str(p["frames"]),
                    "--geometry",
                    str(p["geometry"]),
                    "--out",
                    str(sel),
                ]
            )
            == 0
        )
        runs[run] = {**p, "selection": sel}
    return runs


def fit_labels_args(runs, out, params, extra=()):
    r = list(runs.values())
    return [
        "fit-labels",
        "--params",
        json.dumps(params),
        "--selections",
        *[str(x["selection"]) for x in r],
        "--streams",
        *[str(x["stream"]) for x in r],
        "--frames",
        *[str(x["frames"]) for x in r],
        "--geometry",
        str(r[0]["geometry"]),
        "--out",
        str(out),
        "--summary",
        str(out.with_suffix(".json")),
        *extra,
    ]


def test_fit_labels_writes_the_training_set(two_runs, tmp_path):
    from braggflow.cli import main
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.peakdiff import parse_selection_tsv

    out = tmp_path / "trainset.h5"
    truth = [str(x["truth"]) for x in two_runs.values()]
    assert (
        main(
            fit_labels_args(
                two_runs,
                out,
                {"executor": "serial", "val_fraction": 0.25},
                ["--truth", *truth, "--seed", "3"],
            )
        )
        == 0
    )
    ts = read_trainset(out)
    selected = [
        (run, r.event)
        for run, x in two_runs.items()
        for r in parse_selection_tsv(x["selection"].read_text())
        if r.selected
    ]
    assert list(zip(ts["frames"]["run"], ts["frames"]["event"].tolist(), strict=True)) == selected
    n = len(selected)
    pixmap = PixelMap.from_geometry(read_geom(two_runs["r0000"]["geometry"]))
    assert ts["images"].shape == ts["labels"].shape == (n, *pixmap.shape)
    assert ts["images"].dtype == np.float32 and ts["labels"].dtype == np.uint8
    assert set(np.unique(ts["labels"])) <= {0, 1}
    np.testing.assert_array_equal(ts["pixel_map"]["panel"], pixmap.panel)
    assert ts["valid"].shape == pixmap.shape and ts["valid"].dtype == np.uint8
    assert not ts["labels"][:, ts["valid"] == 0].any()
    assert ts["frames"]["split"].sum() == max(1, round(0.25 * n))
    assert set(ts["frames"]["split"]) <= {0, SPLIT_HELD_OUT}
    fits = ts["fits"]
    for col in (
        "frame",
        "panel",
        "fs",
        "ss",
        "amplitude",
        "eta",
        "sigma_fs",
        "sigma_ss",
        "gamma_fs",
        "gamma_ss",
        "slope_ss",
        "slope_fs",
        "offset",
        "reduced_chi2",
        "converged",
        "accepted",
    ):
        assert col in fits, col
    assert fits["frame"].max() == n - 1
    assert "braggflow_provenance" in ts["attrs"]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["frames_written"] == n and summary["frames_failed"] == []
    assert summary["candidates"] == fits["status"].size
    t = summary["truth"]
    assert t["spot_coverage"] >= 0.95
    # default candidates=both also labels real reflections below the simulator's visibility
    # cut, which count against precision (the footprint holds visible spots only)
    assert t["pixel_precision"] >= 0.8 and 0 < t["pixel_recall"] <= 1
    # the photon-scale images: ADU / adu_per_photon (8 in the simulated geometry)
    assert 0.5 < np.median(ts["images"][0][ts["valid"] == 1]) < 10


def test_candidate_modes_and_zero_candidates(two_runs, tmp_path):
    from braggflow.cli import main

    counts = {}
    for mode in ("matched", "predicted", "both"):
        out = tmp_path / f"{mode}.h5"
        params = {
            "executor": "serial",
            "candidates": mode,
            "min_i_over_sigma": 1e9 if mode == "predicted" else 3.0,
        }
        truth = [str(x["truth"]) for x in two_runs.values()]
        assert main(fit_labels_args(two_runs, out, params, ["--truth", *truth])) == 0
        counts[mode] = json.loads(out.with_suffix(".json").read_text())
    # found peaks matched to the lattice: labels almost only on the true spots
    assert counts["matched"]["truth"]["pixel_precision"] >= 0.95
    assert counts["predicted"]["candidates"] == 0  # nothing passes an absurd I/sigma cut
    assert counts["predicted"]["frames_zero_candidates"] == counts["predicted"]["frames_written"]
    assert not read_trainset(tmp_path / "predicted.h5")["labels"].any()
    assert counts["both"]["candidates"] >= counts["matched"]["candidates"]


def test_bad_inputs_are_one_line_errors(two_runs, tmp_path, capsys):
    from braggflow.cli import main

    args = fit_labels_args(two_runs, tmp_path / "x.h5", {"candidates": "everything"})
    assert main(args) == 2
    assert "fit_labels.candidates" in capsys.readouterr().err
    args = fit_labels_args(two_runs, tmp_path / "x.h5", {"executor": "serial"})
    i = args.index("--streams")
    del args[i + 1]  # one stream fewer than selections
    assert main(args) == 2
    assert not (tmp_path / "x.h5").exists()
