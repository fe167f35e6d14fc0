"""Built-in peakfinder8 vs Cheetah's compiled peakfinder8 (ondamonitor), side by side, one core each.

Both search the same frames of the embedded simulated experiment with the config's default
find_peaks parameters, the same mask and the same radial bins. Timed passes alternate between
the two batch by batch (so that other load on a shared machine hits both alike); per-frame CPU time
(``time.process_time``, one thread: BLAS/OpenMP pinned to 1) of the fastest pass is reported,
the medians beside it. The built-in engine searches ``batch_frames`` frames per call, as the
find_peaks stage does.

Figures: ``builtin_frames_per_s``, ``reference_frames_per_s``, ``speed_ratio`` (built-in /
reference throughput), ``agreement`` (peaks found by both within 1 px / peaks found by the one
that finds more), and against the simulator's ground truth ``precision`` and ``recall`` (found
peaks within 2 px of a visible reflection). ``cspad_agreement``: the same comparison on the real
CSPAD sensor of ../shared/fixtures, when present. ``*_1mpx``: the same on synthetic frames of a
1024 x 1024 detector (16 panels, 150 spots per frame).

    uv run python benchmarks/find_peaks.py --out benchmarks/results/find_peaks.json [--quick]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import parse_args, write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CSPAD = REPO.parent / "shared" / "fixtures"


def _agreement(ours, theirs) -> tuple[float, int, int]:
    from braggflow.peakfinder8 import match_fraction

    m = np.array([match_fraction(a, b, 1.0) for a, b in zip(ours, theirs, strict=True)]).sum(axis=0)
    return float(m[0] / max(m[1], m[2], 1)), int(m[1]), int(m[2])


def _cspad_agreement() -> float | None:
    from braggflow.formats.geometry import Geometry, read_geom
    from braggflow.peakfinder8 import Peakfinder8, Peakfinder8Params
    from braggflow.peakfinder8.reference import ReferencePeakfinder8

    image = CSPAD / "images" / "cspad_asic_cxitut13_r10_e32.npy"
    if not image.is_file():
        return None
    data = np.load(image).astype(np.float32)
    cspad = read_geom(CSPAD / "geometry" / "cspad_cxiformat.geom")
    geom = Geometry(panels=[cspad.panel("q0a0"), cspad.panel("q0a1")])
    finder = Peakfinder8.from_geometry(
        geom, Peakfinder8Params(adc_threshold=100, min_snr=5, min_pix_count=2)
    )
    return _agreement([finder.find(data)], [ReferencePeakfinder8(finder).find(data)])[0]


def _megapixel(passes: int) -> dict[str, float]:
    """The same comparison on a 1024 x 1024 detector (4 x 4 panels of 256 x 256) of synthetic frames."""
    from braggflow.formats.geometry import Geometry, Panel
    from braggflow.peakfinder8 import Peakfinder8, Peakfinder8Params
    from braggflow.peakfinder8.reference import ReferencePeakfinder8

    panels = [
        Panel(
            f"p{i}{j}",
            j * 256,
            j * 256 + 255,
            i * 256,
            i * 256 + 255,
            -512.0 + j * 258,
            -512.0 + i * 258,
        )
        for i in range(4)
        for j in range(4)
    ]
    geom = Geometry(panels=panels)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:9, :9]
    frames = rng.poisson(5.0, (8, 1024, 1024)).astype(np.float32)
    for f in frames:  # 150 Gaussian spots (sigma 0.9 px) of 50..2000 ADU per frame
        for _ in range(150):
            cy, cx = rng.uniform(5, 1019, 2)
            y0, x0 = int(cy) - 4, int(cx) - 4
            amp = rng.uniform(50, 2000)
            f[y0 : y0 + 9, x0 : x0 + 9] += amp * np.exp(
                -((xx + x0 - cx) ** 2 + (yy + y0 - cy) ** 2) / 1.62
            )
    finder = Peakfinder8.from_geometry(
        geom, Peakfinder8Params(adc_threshold=30, min_snr=5, min_pix_count=2)
    )
    cheetah = ReferencePeakfinder8(finder)
    ours = finder.find_many(frames)
    theirs = [cheetah.find(f) for f in frames]
    t_ours, t_theirs = [], []
    for _ in range(passes):
        t0 = time.process_time()
        finder.find_many(frames)
        t_ours.append((time.process_time() - t0) / len(frames))
        t0 = time.process_time()
        for f in frames:
            cheetah.find(f)
        t_theirs.append((time.process_time() - t0) / len(frames))
    return {
        "builtin_frames_per_s_1mpx": 1.0 / min(t_ours),
        "reference_frames_per_s_1mpx": 1.0 / min(t_theirs),
        "speed_ratio_1mpx": min(t_theirs) / min(t_ours),
        "agreement_1mpx": _agreement(ours, theirs)[0],
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    from braggflow.config import validate_config
    from braggflow.formats.cxi import PeakTable
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.geometry import read_geom
    from braggflow.peakfinder8 import Peakfinder8, Peakfinder8Params, match_fraction
    from braggflow.peakfinder8.reference import ReferencePeakfinder8
    from braggflow.simulate import quick_experiment
    from braggflow.simulate.truth import read_truth

    n_frames = 12 if args.quick else 40
    passes = 3 if args.quick else 15
    section = validate_config({})["find_peaks"]
    with tempfile.TemporaryDirectory() as tmp:
        exp = quick_experiment(tmp, n_frames=n_frames, seed=2025)
        geom = read_geom(exp["geometry"])
        with FrameSource(exp["frames"], geom) as src:
            frames = np.stack([src.read(i) for i in range(len(src))])
            good = ~src.bad_pixels()
        truth = read_truth(exp["truth"])

    params = Peakfinder8Params.from_config(section)
    finder = Peakfinder8.from_geometry(geom, params, good)
    cheetah = ReferencePeakfinder8(finder)
    batch = int(section["batch_frames"])
    ours = finder.find_many(frames, batch=batch)  # warm-up (and the layout for this batch size)
    theirs = [cheetah.find(f) for f in frames]
    t_ours, t_theirs = [], []
    for _ in range(passes):  # alternate batch by batch, so both see the same machine load
        ours_s = theirs_s = 0.0
        for start in range(0, n_frames, batch):
            block = frames[start : start + batch]
            t0 = time.process_time()
            finder.find_many(block, batch=batch)
            ours_s += time.process_time() - t0
            t0 = time.process_time()
            for f in block:
                cheetah.find(f)
            theirs_s += time.process_time() - t0
        t_ours.append(ours_s / n_frames)
        t_theirs.append(theirs_s / n_frames)
    agreement, n_ours, n_theirs = _agreement(ours, theirs)

    m = np.zeros(3)
    for i, found in enumerate(ours):
        r = truth.reflections_in(i, visible_only=True)
        m += match_fraction(found, PeakTable(fs=r["fs"], ss=r["ss"]), 2.0)
    figures = {
        "builtin_frames_per_s": 1.0 / min(t_ours),
        "reference_frames_per_s": 1.0 / min(t_theirs),
        "speed_ratio": min(t_theirs) / min(t_ours),
        "speed_ratio_median": statistics.median(t_theirs) / statistics.median(t_ours),
        "agreement": agreement,
        "peaks_builtin": n_ours,
        "peaks_reference": n_theirs,
        "precision": m[0] / max(m[1], 1),
        "recall": m[0] / max(m[2], 1),
        "frames": n_frames,
        "pixels_per_frame": int(np.prod(frames.shape[1:])),
    }
    cspad = _cspad_agreement()
    if cspad is not None:
        figures["cspad_agreement"] = cspad
    figures.update(_megapixel(2 if args.quick else 4))
    result = write_result(
        args.out, "find_peaks", figures, parameters=params.as_dict(), batch_frames=batch
    )
    for key, value in result["figures"].items():
        print(f"{key:24s} {value:.4g}")


if __name__ == "__main__":
    main()
