"""Inference stage (issue 7) on a real local Ray instance, shared by every test here.

The threshold stand-in model (see test_infer.py) makes the expected output computable without
Ray: the pipeline must equal the same functions applied frame by frame, and a run in which a
model worker and a writer are killed must equal an undisturbed run.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from braggflow.formats.cxi import read_cxi_peaks
from test_infer import make_experiment, threshold_model

pytestmark = pytest.mark.slow
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

N_FRAMES = 16
PARAMS = {
    "batch_size": 4,
    "chunk_frames": 6,
    "queue_batches": 2,
    "monitor_interval_s": 0.25,
    "progress": False,
}


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return make_experiment(tmp_path_factory.mktemp("infer"), n_frames=N_FRAMES, nan_frames=(7,))


@pytest.fixture(scope="module")
def undisturbed(ray_instance, experiment, tmp_path_factory):
    from braggflow.inference.pipeline import run_inference

    out = tmp_path_factory.mktemp("undisturbed")
    metrics = run_inference(
        threshold_model(),
        experiment["frames"],
        experiment["geometry"],
        out / "peaks.cxi",
        PARAMS,
        metrics_path=out / "metrics.json",
        plot_path=out / "metrics.png",
        masks_out=out / "masks.h5",
        truth=experiment["truth"],
        input_size=256,
    )
    return out, metrics


def _direct(experiment):
    """The same preprocessing, model and peak measurement, frame by frame, without Ray."""
    import h5py
    import torch

    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.inference.peaks import PanelLayout, peaks_from_mask
    from braggflow.model.preprocess import preprocess, restore_shape

    pm = PixelMap.from_geometry(read_geom(experiment["geometry"]))
    layout = PanelLayout.from_raw_panel(pm.raw_panel)
    with h5py.File(experiment["frames"]) as h5:
        slabs = h5["entry_1/data_1/data"][()]
    model = threshold_model()
    tables = []
    for slab in slabs:
        x, _ = preprocess(pm.assemble(slab[None]), pm.valid, 256)
        with torch.no_grad():
            classes = model(torch.from_numpy(x[:, None])).argmax(1).numpy().astype(np.uint8)
        mask = restore_shape(classes, pm.shape)[0] * pm.valid
        tables.append(peaks_from_mask(slab, pm.to_slab(mask) > 0, layout)[0])
    return tables


def _assert_same_tables(a, b):
    assert len(a) == len(b)
    for i, (ta, tb) in enumerate(zip(a, b, strict=True)):
        for name in ("fs", "ss", "intensity", "max_intensity", "npix", "snr"):
            np.testing.assert_array_equal(
                getattr(ta, name), getattr(tb, name), err_msg=f"frame {i} {name}"
            )


def test_every_frame_once_peaks_as_computed_directly_and_vs_truth(undisturbed, experiment):
    out, metrics = undisturbed
    tables = read_cxi_peaks(out / "peaks.cxi")
    assert len(tables) == N_FRAMES  # every frame exactly once, in order
    assert len(tables[2]) == 0 and len(tables[7]) == 0  # blank frame, unusable (NaN) frame
    assert metrics["bad_frames"] == 1 and metrics["bad_frame_indices"] == [7]
    direct = _direct(experiment)
    direct[7] = type(direct[7])()  # the reader flags the NaN frame: no peaks
    for i, (got, want) in enumerate(zip(tables, direct, strict=True)):
        assert len(got) == len(want), i
        np.testing.assert_allclose(got.fs, want.fs, atol=1e-4)
        np.testing.assert_allclose(got.ss, want.ss, atol=1e-4)
        np.testing.assert_allclose(got.intensity, want.intensity, rtol=1e-5)
    truth = metrics["truth"]
    assert truth["precision"] > 0.95 and truth["recall"] > 0.9
    assert truth["median_distance_px"] < 0.25
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["frames"] == N_FRAMES and on_disk["passes"] == 1
    series = on_disk["monitor"]["timeseries"]
    assert len(series["t_s"]) >= 2 and series["frames_done"][-1] == N_FRAMES
    assert max(series["queue_in"]) <= PARAMS["queue_batches"]
    assert 0 < on_disk["monitor"]["workers"]["worker0"]["utilisation"] <= 1
    assert (out / "metrics.png").stat().st_size > 10_000
    if CORES and len(CORES) >= 2:  # a 2-CPU Ray: one model worker on the last core, the rest I/O
        assert metrics["cpu_pinning"] == {"workers": [[CORES[1]]], "io": [CORES[0]]}
        assert sorted(os.sched_getaffinity(0)) == CORES  # this process given its cores back
    import h5py

    with h5py.File(out / "masks.h5") as h5:
        assert h5["entry_1/result_1/segmentation"].shape[0] == N_FRAMES


def test_killed_worker_and_writer_restart_and_output_equals_undisturbed(
    undisturbed, experiment, tmp_path
):
    from braggflow.inference.pipeline import Faults, run_inference

    ref_out, _ = undisturbed
    faults = Faults(str(tmp_path), worker_crash_at_batch=2, writer_crash_at_batch=3)
    metrics = run_inference(
        threshold_model(),
        experiment["frames"],
        experiment["geometry"],
        tmp_path / "peaks.cxi",
        PARAMS,
        masks_out=tmp_path / "masks.h5",
        input_size=256,
        faults=faults,
    )
    assert (tmp_path / "crashed-worker").exists() and (tmp_path / "crashed-writer").exists()
    assert metrics["restarts"]["worker0"] >= 1 and metrics["restarts"]["writer0"] >= 1
    assert metrics["passes"] >= 2 and metrics["redone_frames"] > 0
    _assert_same_tables(
        read_cxi_peaks(tmp_path / "peaks.cxi"), read_cxi_peaks(ref_out / "peaks.cxi")
    )
    import h5py

    key = "entry_1/result_1/segmentation"
    with h5py.File(tmp_path / "masks.h5") as a, h5py.File(ref_out / "masks.h5") as b:
        np.testing.assert_array_equal(a[key][()], b[key][()])


def test_cli_runs_an_exported_peaknet(ray_instance, experiment, tmp_path, capsys):
    """The real model path: an exported PeakNet (random weights) through ``braggflow infer``."""
    import torch

    from braggflow.cli import main
    from braggflow.model import build_model, export_model, get_preset

    arch = get_preset("tiny-test").replace(input_size=256)
    torch.manual_seed(0)
    export_model(build_model(arch), arch, tmp_path / "tiny.pt")
    params = json.dumps({**PARAMS, "num_writers": 2})
    rc = main(
        [
            "infer",
            "--params",
            params,
            "--model",
            str(tmp_path / "tiny.pt"),
            "--frames",
            str(experiment["frames"]),
            "--geometry",
            str(experiment["geometry"]),
            "--out",
            str(tmp_path / "peaks.cxi"),
            "--metrics",
            str(tmp_path / "m.json"),
        ]
    )
    assert rc == 0
    assert len(read_cxi_peaks(tmp_path / "peaks.cxi")) == N_FRAMES
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["input_size"] == 256 and metrics["frames_written"] == N_FRAMES
    assert set(metrics["monitor"]["writers"]) == {"writer0", "writer1"}
    assert (tmp_path / "m.png").is_file()
    # a missing model and a corrupt one: one line each (the second from inside the worker)
    (tmp_path / "corrupt.pt").write_bytes(b"not a model")
    (tmp_path / "corrupt.json").write_text((tmp_path / "tiny.json").read_text())
    for name, problem in (
        ("missing.pt", "model file not found"),
        ("corrupt.pt", "not a braggflow model"),
    ):
        argv = [
            "infer",
            "--params",
            params,
            "--model",
            str(tmp_path / name),
            "--frames",
            str(experiment["frames"]),
            "--geometry",
            str(experiment["geometry"]),
            "--out",
            str(tmp_path / "x.cxi"),
            "--metrics",
            str(tmp_path / "x.json"),
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert problem in err[-1] and err[-1].startswith("braggflow infer: error:")
        assert not (tmp_path / "x.cxi").exists()
