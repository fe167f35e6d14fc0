"""Inference stage (issue 7), fast parts: config, batching, model loop, on-device reduction, chunks.

The Ray pipeline itself is tested in test_infer_ray.py; both use :func:`make_experiment`, a tiny
detector (four panels, one upside down) with Gaussian spots at known sub-pixel positions, and
:func:`threshold_model`, a 1x1 convolution that segments z-scores above a threshold (a stand-in
for a trained PeakNet with the same input and output contract).
"""

from __future__ import annotations

import threading
from pathlib import Path

import h5py
import numpy as np
import pytest

from braggflow.errors import ConfigError
from braggflow.formats.geometry import Geometry, Panel, write_geom
from braggflow.inference.config import InferConfig
from braggflow.inference.pipeline import plan_batches

PANEL_SS, PANEL_FS = 48, 80


def make_geometry() -> Geometry:
    """Four 48 x 80 panels stacked in the slab; in the lab a 2 x 2 layout, the last one rotated 180 deg."""
    panels = []
    corners = [(-85.0, -55.0), (5.0, -55.0), (-85.0, 5.0), (85.0, 55.0)]
    for i, (cx, cy) in enumerate(corners):
        flip = i == 3
        panels.append(
            Panel(
                f"p{i}",
                0,
                PANEL_FS - 1,
                i * PANEL_SS,
                (i + 1) * PANEL_SS - 1,
                corner_x=cx,
                corner_y=cy,
                fs=(-1.0, 0.0, 0.0) if flip else (1.0, 0.0, 0.0),
                ss=(0.0, -1.0, 0.0) if flip else (0.0, 1.0, 0.0),
                res_px_per_m=10000.0,
                clen=0.1,
            )
        )
    return Geometry(panels=panels, photon_energy=9500.0)


def make_experiment(
    folder: Path,
    n_frames: int = 12,
    seed: int = 0,
    spots: tuple[int, int] = (6, 14),
    nan_frames: tuple[int, ...] = (),
) -> dict[str, Path]:
    """Frames (CXI), geometry and a truth file with every spot's raw position; frame 2 is blank,
    ``nan_frames`` hold no finite pixel (unusable frames)."""
    from braggflow.formats.frames import write_frames

    rng = np.random.default_rng(seed)
    geom = make_geometry()
    n_ss, n_fs = geom.slab_shape
    ss, fs = np.indices((n_ss, n_fs))
    frames = np.empty((n_frames, n_ss, n_fs), np.float32)
    rows = {"frame": [], "fs": [], "ss": [], "panel": []}
    for i in range(n_frames):
        clean = np.zeros((n_ss, n_fs))
        if i != 2 and i not in nan_frames:
            for _ in range(rng.integers(*spots)):
                p = int(rng.integers(0, 4))
                cf = rng.uniform(4, PANEL_FS - 5)
                cs = p * PANEL_SS + rng.uniform(4, PANEL_SS - 5)
                sel = (abs(fs - cf) < 6) & (abs(ss - cs) < 6)
                clean[sel] += rng.uniform(150, 400) * np.exp(
                    -((fs[sel] - cf) ** 2 + (ss[sel] - cs) ** 2) / 2.0
                )
                rows["frame"].append(i)
                rows["fs"].append(cf)
                rows["ss"].append(cs)
                rows["panel"].append(p)
        frames[i] = rng.poisson(clean + 5.0).astype(np.float32)
        if i in nan_frames:
            frames[i] = np.nan
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "frames": folder / "run.cxi",
        "geometry": folder / "det.geom",
        "truth": folder / "run.truth.h5",
    }
    write_geom(geom, paths["geometry"])
    write_frames(paths["frames"], frames, None, 9500.0, 0.1)
    with h5py.File(paths["truth"], "w") as h5:
        for key, values in rows.items():
            h5[f"reflections/{key}"] = np.asarray(values)
        h5["reflections/visible"] = np.ones(len(rows["fs"]), bool)
        h5["frames/has_crystal"] = np.array(
            [i != 2 and i not in nan_frames for i in range(n_frames)]
        )
    return paths


def threshold_model(threshold: float = 4.0):
    """A 1x1 convolution: class-1 logit = z - threshold, class-0 logit = 0 (argmax = z > threshold)."""
    import torch

    conv = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0]]], [[[1.0]]]]))
        conv.bias.copy_(torch.tensor([0.0, -threshold]))
    return conv.eval()


# --------------------------------------------------------------------------- config, batching
def test_config_defaults_and_errors():
    cfg = InferConfig.from_params({"batch_size": 4, "peaks": {"min_pixels": 3}})
    assert cfg.batch_size == 4 and cfg.peaks.min_pixels == 3 and cfg.num_workers is None
    with pytest.raises(ConfigError, match="unknown keys"):
        InferConfig.from_params({"batchsize": 4})
    with pytest.raises(ConfigError, match="infer.device"):
        InferConfig.from_params({"device": "tpu"})
    with pytest.raises(ConfigError, match="infer.peaks"):
        InferConfig.from_params({"peaks": {"min_pixels": 5, "max_pixels": 2}})


def test_plan_batches_covers_every_frame_once():
    batches = plan_batches(23, 8)
    assert [b for b, _ in batches] == [0, 1, 2]
    frames = [f for _, fr in batches for f in fr]
    assert frames == list(range(23)) and len(batches[-1][1]) == 7


def test_schema_infer_section_matches_config_keys(repo):
    """Every key of the config dataclass is in the schema (and vice versa), with the same defaults."""
    import dataclasses

    import yaml

    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    block = schema["properties"]["infer"]
    assert block["additionalProperties"] is False
    defaults = InferConfig()
    for f in dataclasses.fields(InferConfig):
        assert f.name in block["properties"], f.name
        prop = block["properties"][f.name]
        assert "description" in prop and "default" in prop, f.name
        if f.name != "peaks":
            assert prop["default"] == getattr(defaults, f.name), f.name
    peak_block = block["properties"]["peaks"]["properties"]
    for f in dataclasses.fields(type(defaults.peaks)):
        assert peak_block[f.name]["default"] == getattr(defaults.peaks, f.name), f.name
    assert set(block["properties"]) == {f.name for f in dataclasses.fields(InferConfig)}


# --------------------------------------------------------------------------- model side
def test_logits_to_mask_is_the_inverse_of_the_model_preprocessing():
    import torch

    from braggflow.inference.worker import logits_to_mask
    from braggflow.model.preprocess import pad_crop, restore_shape, square_window

    rng = np.random.default_rng(0)
    for shape, size in (((40, 52), 64), ((80, 70), 64)):  # padded, and cropped on one axis
        logits = rng.normal(size=(3, 2, size, size)).astype(np.float32)
        valid = rng.random(shape) > 0.1
        got = logits_to_mask(
            torch.from_numpy(logits),
            square_window(shape, size),
            torch.from_numpy(valid.astype(np.uint8)),
        ).numpy()
        want = restore_shape(logits.argmax(1).astype(np.uint8), shape) * valid
        assert got.dtype == np.uint8 and got.shape == (3, *shape)
        np.testing.assert_array_equal(got, want)
        # and the image -> square -> mask round trip places every pixel back where it was
        image = rng.random(shape) > 0.5
        back = restore_shape(pad_crop(image.astype(np.uint8), size), shape)
        win = square_window(shape, size)
        np.testing.assert_array_equal(back[win.src], image[win.src])


def test_logits_to_mask_equals_argmax_with_ties_and_more_classes():
    import torch

    from braggflow.inference.worker import logits_to_mask
    from braggflow.model.preprocess import square_window

    rng = np.random.default_rng(1)
    shape = (16, 16)
    ones = torch.ones(shape, dtype=torch.uint8)
    for classes in (2, 3):
        logits = rng.normal(size=(2, classes, 16, 16)).astype(np.float32)
        logits[0, :, :4, :4] = 0.5  # ties: argmax takes the first class
        got = logits_to_mask(torch.from_numpy(logits), square_window(shape, 16), ones).numpy()
        np.testing.assert_array_equal(got, logits.argmax(1).astype(np.uint8))
        assert (got[0, :4, :4] == 0).all() and got.max() == classes - 1


def test_overlapped_loop_processes_everything_with_bounded_memory():
    """A slow consumer holds the loop back: batches taken never run ahead of the bounds."""
    import time

    import torch

    from braggflow.inference.worker import ModelRunner, OverlappedLoop

    runner = ModelRunner(threshold_model(1.0), torch.device("cpu"), (20, 24), 32)
    n_batches, taken, done = 12, [0], []
    stop = threading.Event()

    def get_batch(timeout):
        if taken[0] == n_batches:
            stop.set()
            return None
        taken[0] += 1
        x = np.zeros((2, 1, 32, 32), np.float32)
        x[:, 0, 16, 16] = 5.0  # one bright pixel, inside the image window
        return taken[0], x

    def put_result(meta, masks):
        time.sleep(0.05)
        ahead.append(taken[0] - len(done))
        done.append((meta, masks.copy()))

    ahead: list[int] = []
    loop = OverlappedLoop(runner, get_batch, put_result, stop, prefetch=2)
    stats = loop.run()
    assert [m for m, _ in done] == list(range(1, n_batches + 1))
    assert stats.batches == n_batches and stats.frames == 2 * n_batches and stats.in_hand == 0
    # prefetch thread (1) + staged (2) + compute (1) + hand-off (2) + output (1): a constant bound
    assert max(ahead) <= 7
    masks = done[0][1]
    assert masks.shape == (2, 20, 24) and masks.sum() == 2  # (16,16) of the square is image (10,12)
    assert masks[0, 10, 12] == 1


# --------------------------------------------------------------------------- writer side
def test_chunks_merge_to_every_frame_once(tmp_path):
    from braggflow.formats.cxi import read_cxi_peaks
    from braggflow.formats.geometry import read_geom
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.inference.writer import (
        ChunkWriter,
        list_parts,
        merge_parts,
        write_masks,
        write_outputs,
    )

    paths = make_experiment(tmp_path / "exp", n_frames=6)
    pm = PixelMap.from_geometry(read_geom(paths["geometry"]))
    with h5py.File(paths["frames"]) as h5:
        slabs = h5["entry_1/data_1/data"][()]
    masks = pm.assemble((slabs > 40).astype(np.uint8))
    bad_px = np.zeros(slabs.shape[1:], bool)
    writer = ChunkWriter(tmp_path / "parts", pm, bad_px, chunk_frames=4, keep_masks=True)
    bad = np.array([False, False, False, True])
    writer.add_batch([0, 1, 2, 3], bad, slabs[:4], masks[:4])  # fills a chunk: flushed
    assert len(list_parts(tmp_path / "parts")) == 1 and writer.pending == 0
    writer.add_batch([4, 5], bad[:2], slabs[4:], masks[4:])
    assert writer.pending == 2
    writer.add_batch([2, 3], bad[2:], slabs[2:4], masks[2:4])  # a redone batch: duplicates
    writer.flush()
    merged = merge_parts(list_parts(tmp_path / "parts"), 7)
    assert merged.duplicates == 2 and merged.missing == [6]
    merged = merge_parts(list_parts(tmp_path / "parts"), 6)
    assert [r.frame for r in merged.results] == list(range(6)) and merged.results[3].bad
    write_outputs(tmp_path / "peaks.cxi", merged.results, paths["frames"], 2048)
    write_masks(tmp_path / "masks.h5", list_parts(tmp_path / "parts"), 6, slabs.shape[1:])
    tables = read_cxi_peaks(tmp_path / "peaks.cxi")
    assert len(tables) == 6 and len(tables[3]) == 0 and len(tables[2]) == 0  # bad and blank frames
    assert all(len(tables[i]) > 0 for i in (0, 1, 4, 5))
    with h5py.File(tmp_path / "masks.h5") as h5:
        stored = h5["entry_1/result_1/segmentation"][()]
    assert stored.shape == slabs.shape and stored[0].sum() == (slabs[0] > 40).sum()


def test_masks_travel_bit_packed():
    from braggflow.inference.pipeline import pack_masks, unpack_masks

    masks = (np.random.default_rng(0).random((3, 17, 13)) > 0.9).astype(np.uint8)
    bits, shape = pack_masks(masks)
    assert bits.nbytes <= masks.nbytes / 8 + 3
    np.testing.assert_array_equal(unpack_masks((bits, shape)), masks)


def test_worker_layout_and_psana_without_psana():
    from braggflow.errors import InputError
    from braggflow.inference.pipeline import worker_layout
    from braggflow.inference.source import open_source

    cfg = InferConfig()
    assert worker_layout(cfg, False, 0, 2) == (1, 1)  # one core left to readers and writers
    assert worker_layout(cfg, False, 0, 16) == (15, 1)
    assert worker_layout(InferConfig(torch_threads=4), False, 0, 16) == (3, 4)
    assert worker_layout(cfg, True, 4, 64) == (4, None)  # one per GPU
    assert worker_layout(InferConfig(num_workers=2), True, 4, 64) == (2, None)
    try:
        import psana  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="psana is not importable"):
            open_source("psana:exp=cxi12345:run=7", make_geometry())


def test_preparer_equals_pixel_map_assembly_and_model_preprocessing(tmp_path):
    from braggflow.formats.frames import FrameSource
    from braggflow.formats.pixelmap import PixelMap
    from braggflow.inference.source import Preparer, read_batch
    from braggflow.model.preprocess import preprocess

    paths = make_experiment(tmp_path, n_frames=3, nan_frames=(1,))
    geom = make_geometry()
    pm = PixelMap.from_geometry(geom)
    with FrameSource(paths["frames"], geom) as src:
        slabs, bad = read_batch(src, [0, 1, 2], geom.slab_shape)
    assert bad.tolist() == [False, True, False] and not slabs[1].any()
    x = Preparer(pm, 256)(slabs)
    want, _ = preprocess(pm.assemble(slabs), pm.valid, 256)
    assert x.shape == (3, 1, 256, 256) and x.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 0], want)
