"""Atomic outputs: nothing under the final name unless the write completed; normal permissions."""

from __future__ import annotations

import os
import stat

import pytest

from braggflow.atomic import atomic_path, atomic_write_json


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_completed_write_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == 0o644
    assert (tmp_path / "a.json").read_text().strip().startswith("{")
