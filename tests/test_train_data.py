"""Training-set loading, the distributed sampler, the schedule and the config (fast, no torchrun)."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.errors import ConfigError, InputError
from braggflow.model.preprocess import IGNORE
from braggflow.training.config import TrainConfig
from braggflow.training.data import GlobalBatchSampler, TrainSet
from braggflow.training.synthetic import write_synthetic_trainset


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    return write_synthetic_trainset(
        tmp_path_factory.mktemp("ts") / "ts.h5", n=10, shape=(60, 64), held_out=3
    )


def test_trainset_splits_and_batches(trainset):
    train, held = TrainSet(trainset, 64, 0), TrainSet(trainset, 64, 1)
    assert len(train) == 7 and len(held) == 3
    assert held.indices.tolist() == [7, 8, 9]
    b = held.batch([2, 0])
    assert b["frame"].tolist() == [9, 7]
    assert b["image"].shape == (2, 1, 64, 64) and b["label"].shape == (2, 64, 64)
    assert np.all(b["label"][~b["valid"]] == IGNORE)
    assert set(np.unique(b["label"][b["valid"]])) <= {0, 1}
    # the HDF5 path (not in memory) gives the same batch, in the requested order
    lazy = TrainSet(trainset, 64, 1, in_memory_max_gb=0)
    assert lazy._images is None
    lb = lazy.batch([2, 0])
    np.testing.assert_array_equal(lb["image"], b["image"])
    np.testing.assert_array_equal(lb["label"], b["label"])


def test_extra_fields_reach_the_batch(trainset):
    ts = TrainSet(
        trainset,
        64,
        0,
        extra_fields={
            "teacher_logits": lambda f: np.stack([np.full((2, 64, 64), i, np.float16) for i in f])
        },
    )
    b = ts.batch([3, 1])
    assert b["teacher_logits"].shape == (2, 2, 64, 64)
    assert b["teacher_logits"][:, 0, 0, 0].tolist() == b["frame"].tolist()


def test_missing_trainset_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="fit_labels"):
        TrainSet(tmp_path / "nope.h5", 64)


def test_sampler_ranks_partition_the_global_batch_and_resume():
    n, steps = 7, 9
    one = GlobalBatchSampler(n, 4, 1, 0, seed=3)
    ranks = [GlobalBatchSampler(n, 2, 2, r, seed=3) for r in range(2)]
    for _ in range(steps):
        assert one.next().tolist() == np.concatenate([s.next() for s in ranks]).tolist()
    # every epoch is a permutation
    stream = one.stream(0, 3 * n)
    for e in range(3):
        assert sorted(stream[e * n : (e + 1) * n]) == list(range(n))
    # resuming from the state continues the same stream
    fresh = GlobalBatchSampler(n, 2, 2, 1, seed=3)
    fresh.load_state_dict(ranks[1].state_dict())
    assert fresh.next().tolist() == ranks[1].next().tolist()
    assert GlobalBatchSampler(n, 4, 1, 0, seed=4).stream(0, n).tolist() != stream[:n].tolist()


def test_lr_schedule_warmup_then_cosine():
    from braggflow.training.schedule import lr_factor

    f = [lr_factor(s, 4, 20, 1e-3, 1e-5) * 1e-3 for s in range(21)]
    assert f[0] == pytest.approx(2.5e-4) and f[3] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))
    assert f[20] == pytest.approx(1e-5)


def test_train_config_checks_values_and_keeps_unknown_keys():
    cfg = TrainConfig.from_params({"steps": 5, "focal_alpha": [0.3, 0.7], "kl_weight": 0.4})
    assert cfg.focal_alpha == (0.3, 0.7) and cfg.extra == {"kl_weight": 0.4}
    assert "checkpoint_every" not in cfg.identity()
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp16")


def test_train_command_reports_a_missing_trainset_in_one_line(tmp_path, capsys):
    from braggflow.cli import main

    code = main(
        [
            "train",
            "--trainset",
            str(tmp_path / "none.h5"),
            "--checkpoint-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "training set not found" in err and len(err.splitlines()) == 1


def test_augmentation_is_consistent_across_fields_ranks_and_codes(trainset):
    from braggflow.training.data import dihedral

    a = np.arange(16).reshape(4, 4)
    assert len({dihedral(a, c).tobytes() for c in range(8)}) == 8  # the 8 symmetries of a square
    ts = TrainSet(
        trainset,
        64,
        0,
        extra_fields={
            "teacher_logits": lambda f: np.random.default_rng(0).normal(size=(len(f), 2, 64, 64))
        },
    )
    plain, aug = ts.batch([0, 1]), ts.batch([0, 1], augment=[5, 3])
    for key in ("image", "label", "valid", "teacher_logits"):
        for i, code in enumerate((5, 3)):
            np.testing.assert_array_equal(aug[key][i], dihedral(plain[key][i], code))
    one = GlobalBatchSampler(7, 4, 1, 0, seed=3)
    ranks = [GlobalBatchSampler(7, 2, 2, r, seed=3) for r in range(2)]
    codes = np.concatenate([one.next_with_codes()[1] for _ in range(20)])
    both = np.concatenate(
        [np.concatenate([s.next_with_codes()[1] for s in ranks]) for _ in range(20)]
    )
    np.testing.assert_array_equal(codes, both)
    assert set(codes.tolist()) == set(range(8))
