"""``braggflow peakdiff`` on a simulated run with stand-in peak lists and stream."""

from __future__ import annotations

import json

import pytest

from braggflow import peakdiff as pd

standin = pytest.importorskip("test_fit_labels_data")


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    # frame 1 is a hit the stand-in indexer fails on
    return standin.standin_inputs(tmp_path_factory.mktemp("pd"), n_frames=8, seed=5, unindexed=(1,))


def test_peakdiff_command_selects_correct_hits_and_no_blank(run_inputs, tmp_path):
    from braggflow.cli import main
    from braggflow.simulate import read_truth

    p = run_inputs
    out = tmp_path / "r0000.tsv"
    figs = {k: tmp_path / f"{k}.png" for k in ("counts", "scatter", "overlay")}
    rc = main(
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
            str(out),
            "--plot-counts",
            str(figs["counts"]),
            "--plot-scatter",
            str(figs["scatter"]),
            "--plot-overlay",
            str(figs["overlay"]),
            "--truth",
            str(p["truth"]),
            "--summary",
            str(tmp_path / "summary.json"),
        ]
    )
    assert rc == 0
    rows = pd.parse_selection_tsv(out.read_text())
    truth = read_truth(p["truth"])
    assert len(rows) == truth.n_frames
    for row in rows:
        if not truth.has_crystal[row.event]:
            assert not row.selected and row.reason in (pd.REASON_NOT_INDEXED, pd.REASON_FEW_FOUND)
    assert rows[1].reason == pd.REASON_NOT_INDEXED and not rows[1].selected
    summary = json.loads((tmp_path / "summary.json").read_text())
    t = summary["truth"]
    assert t["blank_selected"] == 0
    assert t["kept_fraction_of_correct_hits"] >= 0.9
    assert summary["selected"] == sum(r.selected for r in rows)
    assert (tmp_path / "r0000.tsv.provenance.json").is_file()
    for f in figs.values():
        assert f.read_bytes()[:4] == b"\x89PNG"


def test_peakdiff_command_rejects_a_stream_of_another_run(run_inputs, tmp_path):
    from braggflow.cli import main
    from braggflow.formats.cxi import PeakTable, write_cxi_peaks

    short = tmp_path / "short.cxi"
    write_cxi_peaks(short, [PeakTable(fs=[1.0], ss=[1.0], intensity=[1.0])])
    p = run_inputs
    rc = main(
        [
            "peakdiff",
            "--peaks",
            str(short),
            "--stream",
            str(p["stream"]),
            "--frames",
            str(p["frames"]),
            "--geometry",
            str(p["geometry"]),
            "--out",
            str(tmp_path / "x.tsv"),
        ]
    )
    assert rc == 2
    assert not (tmp_path / "x.tsv").exists()
