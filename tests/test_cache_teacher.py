"""Teacher-logit cache: float16 rows aligned with the trainset, stamped, resumable, stale refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from braggflow.distill.cache import TeacherCache, partial_path, write_cache
from braggflow.errors import InputError

N, H, W, C = 7, 12, 10, 2


def make_trainset(path, n=N, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as fh:
        fh["images"] = rng.poisson(3.0, size=(n, H, W)).astype(np.float32)
        fh["labels"] = (rng.random((n, H, W)) > 0.9).astype(np.uint8)
        valid = np.ones((H, W), np.uint8)
        valid[:, :2] = 0
        fh["valid"] = valid
        fh["frames/run"] = np.array([b"r0000"] * (n - 2) + [b"r0001"] * 2)
        fh["frames/event"] = np.arange(n)
        fh["frames/split"] = (np.arange(n) >= n - 2).astype(np.uint8)
    return path


class ToyTeacher:
    """A deterministic stand-in forward: logits from the image, counting the frames it saw."""

    def __init__(self, fail_after_batches=None):
        self.frames_seen = 0
        self.batches = 0
        self.fail_after = fail_after_batches

    def __call__(self, images, valid):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt("killed")  # what SIGINT/SIGTERM does mid-run
        self.batches += 1
        self.frames_seen += len(images)
        z = np.stack([-images / 3.0, images / 3.0 - 1.0], axis=1) * valid
        return z + 1e-3 * np.arange(C)[None, :, None, None]


@pytest.fixture
def trainset(tmp_path):
    return make_trainset(tmp_path / "trainset.h5")


def test_cache_rows_match_forward_and_are_float16(tmp_path, trainset):
    out = tmp_path / "cache" / "teacher_logits.h5"
    teacher = ToyTeacher()
    counts = write_cache(out, trainset, teacher, (C, H, W), "a" * 64, batch_size=3)
    assert counts == {"frames": N, "resumed_at": 0, "computed": N}
    assert teacher.frames_seen == N and not partial_path(out).exists()
    cache = TeacherCache(out, teacher_sha256="a" * 64, trainset_path=trainset)
    with h5py.File(trainset) as fh:
        fresh = ToyTeacher()(fh["images"][...], fh["valid"][...].astype(bool))
    got = cache.logits(slice(None))
    assert got.dtype == np.float16 and len(cache) == N
    np.testing.assert_allclose(got.astype(np.float32), fresh, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(cache.logits(4), got[4])  # row i is trainset frame i
    with h5py.File(out) as fh:
        assert fh.attrs["complete"] and fh.attrs["n_done"] == N
        assert "braggflow_provenance" in fh.attrs


def test_killed_job_resumes_where_it_stopped(tmp_path, trainset):
    out = tmp_path / "teacher_logits.h5"
    with pytest.raises(KeyboardInterrupt):
        write_cache(out, trainset, ToyTeacher(fail_after_batches=2), (C, H, W), "b" * 64, 2)
    assert not out.exists()  # never half-written under the final name
    with h5py.File(partial_path(out)) as fh:
        assert fh.attrs["n_done"] == 4 and not fh.attrs["complete"]
    teacher = ToyTeacher()
    counts = write_cache(out, trainset, teacher, (C, H, W), "b" * 64, batch_size=2)
    assert counts["resumed_at"] == 4 and teacher.frames_seen == N - 4
    # identical to an uninterrupted run
    ref = tmp_path / "ref.h5"
    write_cache(ref, trainset, ToyTeacher(), (C, H, W), "b" * 64, batch_size=5)
    np.testing.assert_array_equal(
        TeacherCache(out).logits(slice(None)), TeacherCache(ref).logits(slice(None))
    )


def test_partial_from_another_teacher_or_corrupt_is_restarted(tmp_path, trainset):
    out = tmp_path / "teacher_logits.h5"
    with pytest.raises(KeyboardInterrupt):
        write_cache(out, trainset, ToyTeacher(fail_after_batches=1), (C, H, W), "c" * 64, 2)
    teacher = ToyTeacher()
    assert write_cache(out, trainset, teacher, (C, H, W), "d" * 64, 2)["resumed_at"] == 0
    partial_path(out).write_bytes(b"not hdf5 at all")
    assert write_cache(out, trainset, ToyTeacher(), (C, H, W), "d" * 64, 2)["resumed_at"] == 0
    assert TeacherCache(out).teacher_sha256 == "d" * 64


def test_stale_cache_is_refused_with_one_clear_line(tmp_path, trainset):
    out = tmp_path / "teacher_logits.h5"
    teacher_file = tmp_path / "teacher.pt"
    teacher_file.write_bytes(b"teacher weights v1")
    from braggflow.provenance import sha256_file

    write_cache(out, trainset, ToyTeacher(), (C, H, W), sha256_file(teacher_file), 4)
    TeacherCache(out, teacher_path=teacher_file)  # same teacher: accepted
    teacher_file.write_bytes(b"teacher weights v2, retrained")
    with pytest.raises(InputError) as err:
        TeacherCache(out, teacher_path=teacher_file)
    msg = str(err.value)
    assert "\n" not in msg
    assert "stale teacher cache" in msg and "rerun 'braggflow cache-teacher'" in msg
    assert str(teacher_file) in msg


def test_misaligned_or_missing_cache_is_refused(tmp_path, trainset):
    out = tmp_path / "teacher_logits.h5"
    write_cache(out, trainset, ToyTeacher(), (C, H, W), "e" * 64, 4)
    other = make_trainset(tmp_path / "other.h5", n=N + 1)
    with pytest.raises(InputError, match="not aligned"):
        TeacherCache(out, trainset_path=other)
    with pytest.raises(InputError, match="not found"):
        TeacherCache(tmp_path / "nope.h5")
