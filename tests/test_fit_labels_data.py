"""Test data for PeakDiff and fit_labels: a simulated run plus stand-in peak lists and streams.

The stand-ins come straight from the simulator's ground truth (found peaks = visible spots with
centroid noise plus a few spurious peaks; one indexed crystal per hit = the true first lattice
with all its predicted reflections), so these tests need neither peakfinder8 nor an indexer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

simulate = pytest.importorskip(
    "braggflow.simulate", reason="the simulator (issue 1) is not available"
)


def standin_inputs(
    out: Path,
    n_frames: int = 6,
    seed: int = 1,
    run: str = "r0000",
    spurious_per_frame: int = 2,
    unindexed: tuple[int, ...] = (),
    **overrides,
) -> dict[str, Path]:
    """Simulate a run and write stand-in CXI peaks and a stream for it; returns all paths."""
    from braggflow.formats.cxi import PeakTable, write_cxi_peaks
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.stream import (
        Chunk,
        Crystal,
        PeakList,
        ReflectionList,
        Stream,
        write_stream,
    )
    from braggflow.simulate import quick_experiment, read_truth

    exp = quick_experiment(out, n_frames=n_frames, seed=seed, run=run, **overrides)
    geom = read_geom(exp["geometry"])
    truth = read_truth(exp["truth"])
    names = np.array([p.name for p in geom.panels], dtype=object)
    pmap = geom.panel_index_map()
    rng = np.random.default_rng(seed + 17)
    tables, chunks = [], []
    refl = truth.reflections
    for i in range(truth.n_frames):
        vis = (refl["frame"] == i) & refl["visible"]
        fs = refl["fs"][vis] + rng.normal(0, 0.25, vis.sum())
        ss = refl["ss"][vis] + rng.normal(0, 0.25, vis.sum())
        n_sp = spurious_per_frame if truth.has_crystal[i] else 0
        cand = np.argwhere(pmap >= 0)
        pick = cand[rng.choice(len(cand), n_sp, replace=False)] if n_sp else np.zeros((0, 2), int)
        fs = np.r_[fs, pick[:, 1].astype(float)]
        ss = np.r_[ss, pick[:, 0].astype(float)]
        inten = np.r_[refl["photons"][vis], np.full(n_sp, 20.0)]
        tables.append(PeakTable(fs=fs, ss=ss, intensity=inten))
        panel = pmap[
            np.clip(np.rint(ss).astype(int), 0, pmap.shape[0] - 1),
            np.clip(np.rint(fs).astype(int), 0, pmap.shape[1] - 1),
        ]
        peaks = PeakList(fs, ss, np.zeros(fs.size), inten, names[np.maximum(panel, 0)])
        crystals = []
        lat = truth.lattices_in(i)
        if truth.has_crystal[i] and i not in unindexed and len(lat):
            sel = (refl["frame"] == i) & (refl["lattice"] == 0)
            ph = refl["photons"][sel]
            reflections = ReflectionList(
                refl["h"][sel],
                refl["k"][sel],
                refl["l"][sel],
                ph,
                np.sqrt(ph + 10.0),
                ph,
                np.zeros(ph.size),
                refl["fs"][sel],
                refl["ss"][sel],
                names[refl["panel"][sel]],
            )
            crystals.append(Crystal(lat[0, 0], lat[0, 1], lat[0, 2], reflections=reflections))
        chunks.append(
            Chunk(
                filename=str(exp["frames"]),
                event=f"//{i}",
                serial=i + 1,
                indexed_by="standin" if crystals else "none",
                peaks=peaks,
                crystals=crystals,
            )
        )
    peaks_path = out / f"{run}.peaks.cxi"
    stream_path = out / f"{run}.stream"
    write_cxi_peaks(peaks_path, tables)
    write_stream(stream_path, Stream(chunks=chunks))
    return {
        **{k: exp[k] for k in ("geometry", "cell", "frames", "truth")},
        "peaks": peaks_path,
        "stream": stream_path,
    }


def test_standin_inputs_round_trip(tmp_path):
    from braggflow.formats.cxi import read_cxi_peaks
    from braggflow.formats.stream import read_stream
    from braggflow.simulate import read_truth

    paths = standin_inputs(tmp_path, n_frames=3)
    tables = read_cxi_peaks(paths["peaks"])
    stream = read_stream(paths["stream"])
    truth = read_truth(paths["truth"])
    assert len(tables) == len(stream.chunks) == truth.n_frames == 3
    for i, chunk in enumerate(stream.chunks):
        assert chunk.frame_index == i
        assert bool(chunk.crystals) == bool(truth.has_crystal[i])
