"""Built-in indexer on the embedded simulated experiment: speed and correctness against truth.

    uv run python benchmarks/index.py --out benchmarks/results/index.json [--quick]

One core, in process. Peaks are (a) the truly visible spots with 0.3 px noise (independent of
any peak finder) and (b) the built-in peakfinder8's peaks on the same frames. Figures:
``seconds_per_frame`` (wall, all frames, blanks included; target <= 1; ``cpu_seconds_per_frame``
tells it apart from load by other processes), ``seconds_per_hit``,
``index_rate_true_hits`` (true hits = frames with a crystal and >= 20 visible spots),
``correct_orientation_fraction`` (cell within 1% / 1 deg and orientation within 1 deg of a true
lattice, modulo lattice symmetry), ``blank_frames_indexed``, and the ``pf8_`` equivalents.
"""

from __future__ import annotations

# cctbx first: it ships its own libstdc++ (HPC-NOTES.md)
from braggflow.indexing.dps import import_cctbx

import_cctbx()

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from _common import parse_args, write_result  # noqa: E402
from braggflow.formats.cell import read_cell  # noqa: E402
from braggflow.formats.frames import FrameSource  # noqa: E402
from braggflow.formats.geometry import read_geom  # noqa: E402
from braggflow.indexing.builtin import BuiltinIndexer, BuiltinParams  # noqa: E402
from braggflow.indexing.truthcheck import score_frames  # noqa: E402
from braggflow.simulate import quick_experiment, read_truth  # noqa: E402


def index_all(
    indexer: BuiltinIndexer, peaks: list, src: FrameSource
) -> tuple[list, float, float, list[float]]:
    """Crystals (reciprocal bases, nm^-1) per frame, wall and CPU seconds, per-frame wall seconds."""
    found, per_frame = [], []
    start, cpu_start = time.perf_counter(), time.process_time()
    for i, (fs, ss, inten) in enumerate(peaks):
        t0 = time.perf_counter()
        res = indexer.index_frame(fs, ss, inten, src.photon_energy_ev(i), src.clen_m(i))
        per_frame.append(time.perf_counter() - t0)
        found.append([c.reciprocal * 10.0 for c in res.crystals])
    return found, time.perf_counter() - start, time.process_time() - cpu_start, per_frame


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_frames = 16 if args.quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        exp = quick_experiment(tmp, n_frames=n_frames, seed=2025)
        geom, cell = read_geom(exp["geometry"]), read_cell(exp["cell"])
        truth = read_truth(exp["truth"], footprint=False)
        rng = np.random.default_rng(0)
        truth_peaks = []
        for i in range(truth.n_frames):
            r = truth.reflections_in(i, visible_only=True)
            n = r["fs"].size
            truth_peaks.append(
                (r["fs"] + rng.normal(0, 0.3, n), r["ss"] + rng.normal(0, 0.3, n), r["photons"])
            )
        pf8_peaks = _peakfinder8_peaks(exp, Path(tmp))
        indexer = BuiltinIndexer(geom, cell, BuiltinParams())
        with FrameSource(exp["frames"], geom) as src:
            indexer.index_frame(*truth_peaks[0], src.photon_energy_ev(0), src.clen_m(0))  # warm-up
            found, total, cpu, per_frame = index_all(indexer, truth_peaks, src)
            pf8_found, pf8_total, pf8_cpu, _ = index_all(indexer, pf8_peaks, src)
    score = score_frames(found, truth, cell.parameters)
    pf8 = score_frames(pf8_found, truth, cell.parameters)
    hits = [
        t
        for t, p in zip(per_frame, truth_peaks, strict=True)
        if len(p[0]) >= indexer.params.min_peaks
    ]
    figures = {
        "seconds_per_frame": total / n_frames,
        "cpu_seconds_per_frame": cpu / n_frames,
        "seconds_per_hit": float(np.mean(hits)) if hits else 0.0,
        "max_seconds_per_frame": float(np.max(per_frame)),
        "index_rate_true_hits": score.index_rate_true_hits,
        "correct_orientation_fraction": score.correct_orientation_fraction,
        "median_orientation_error_deg": float(np.median(score.orientation_errors_deg or [np.nan])),
        "true_hits": score.true_hits,
        "blank_frames": score.blank_frames,
        "blank_frames_indexed": score.blank_frames_indexed,
        "pf8_seconds_per_frame": pf8_total / n_frames,
        "pf8_cpu_seconds_per_frame": pf8_cpu / n_frames,
        "pf8_index_rate_true_hits": pf8.index_rate_true_hits,
        "pf8_correct_orientation_fraction": pf8.correct_orientation_fraction,
        "pf8_blank_frames_indexed": pf8.blank_frames_indexed,
        "frames": n_frames,
    }
    result = write_result(args.out, "index", figures)
    print(result["figures"])


def _peakfinder8_peaks(exp: dict, tmp: Path) -> list:
    """The built-in peakfinder8's peaks on the frames (default config), via the find-peaks command."""
    from braggflow.cli import main as cli_main
    from braggflow.indexing.peaks import read_peak_tables

    out = tmp / "pf8.cxi"
    rc = cli_main(
        [
            "find-peaks",
            "--frames",
            str(exp["frames"]),
            "--geometry",
            str(exp["geometry"]),
            "--out",
            str(out),
            "--log-level",
            "WARNING",
        ]
    )
    if rc != 0:
        raise SystemExit("find-peaks failed")
    return [
        (np.asarray(t.fs, float), np.asarray(t.ss, float), np.asarray(t.intensity, float))
        for t in read_peak_tables(out)
    ]


if __name__ == "__main__":
    main()
