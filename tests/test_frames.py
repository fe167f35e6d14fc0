"""CXI frame files: round trip, metadata units as CrystFEL reads them, validation, corrupt files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from braggflow.errors import InputError
from braggflow.formats.frames import (
    CLEN_PATH,
    DATA_PATH,
    MASK_PATH,
    PHOTON_ENERGY_PATH,
    FrameSource,
    write_frames,
)
from braggflow.formats.geometry import read_geom
from braggflow.simulate import default_params
from braggflow.simulate.detector import default_geometry_text


@pytest.fixture(scope="module")
def geom(tmp_path_factory):
    path = tmp_path_factory.mktemp("geom") / "detector.geom"
    path.write_text(default_geometry_text(default_params()["detector"]))
    return read_geom(path)


def _stack(shape, n=3, seed=0):
    return np.random.default_rng(seed).normal(10, 3, size=(n, *shape)).astype(np.float32)


def test_roundtrip_with_geometry(tmp_path, geom):
    frames = _stack(geom.slab_shape)
    mask = np.zeros(geom.slab_shape, dtype=np.uint16)
    mask[5, 7] = 1
    path = write_frames(tmp_path / "r.cxi", frames, mask, [9500.0, 9501.0, 9502.0], 0.035)
    with FrameSource(path, geom) as src:
        assert len(src) == 3
        np.testing.assert_array_equal(src.read(1), frames[1])
        assert src.read(0).dtype == np.float32
        assert src.photon_energy_ev(2) == pytest.approx(9502.0)
        assert src.clen_m(0) == pytest.approx(0.035)
        assert src.event_ids == ["//0", "//1", "//2"]
        np.testing.assert_array_equal(src.mask, mask)
        bad = src.bad_pixels()
        assert bad[5, 7] and bad.sum() == 1  # the default detector's slab is fully covered
    with h5py.File(path) as f:  # what CrystFEL reads: header clen in mm, energy in eV
        assert f[CLEN_PATH][0] == pytest.approx(35.0)
        assert f[PHOTON_ENERGY_PATH][1] == pytest.approx(9501.0)
        assert f[DATA_PATH].shape == (3, *geom.slab_shape)
        assert "braggflow_provenance" in f.attrs


def test_geometry_with_numeric_clen_and_energy(tmp_path, geom):
    text = "clen = 95.3 mm\nphoton_energy = 4570 eV\nres = 10000\np0/min_fs = 0\np0/max_fs = 9\np0/min_ss = 0\np0/max_ss = 9\n"
    (tmp_path / "n.geom").write_text(text)
    g = read_geom(tmp_path / "n.geom")
    path = write_frames(tmp_path / "r.cxi", _stack((10, 10), n=2), None, 9500.0, 0.035)
    src = FrameSource(path, g)
    assert src.clen_m(1) == pytest.approx(0.0953)
    assert src.photon_energy_ev(0) == pytest.approx(4570.0)
    assert src.mask is None


def test_single_2d_frame(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f[DATA_PATH] = np.ones((4, 5), dtype=np.uint16)
    src = FrameSource(path)
    assert len(src) == 1 and src.read(0).shape == (4, 5) and src.read(0).dtype == np.float32
    assert src.photon_energy_ev(0) is None and src.clen_m(0) is None


def test_frames_smaller_than_geometry_are_refused(tmp_path, geom):
    path = write_frames(tmp_path / "small.cxi", _stack((100, 120), n=1), None, 9500.0, 0.035)
    with pytest.raises(
        InputError, match=r"frames are \(100, 120\).*geometry needs at least \(480, 120\)"
    ):
        FrameSource(path, geom)


def test_missing_and_not_hdf5_files(tmp_path):
    with pytest.raises(InputError, match="frame file not found"):
        FrameSource(tmp_path / "nope.cxi")
    junk = tmp_path / "junk.cxi"
    junk.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(InputError, match="not a readable HDF5 file") as err:
        FrameSource(junk)
    assert "\n" not in str(err.value)


def test_truncated_file_is_one_line_error(tmp_path, geom):
    path = write_frames(tmp_path / "t.cxi", _stack(geom.slab_shape, n=4), None, 9500.0, 0.035)
    cut = tmp_path / "cut.cxi"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError) as err:
        src = FrameSource(cut, geom)
        for i in range(len(src)):
            src.read(i)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


def test_missing_dataset_and_missing_metadata(tmp_path, geom):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(InputError, match="no dataset /entry_1/data_1/data"):
        FrameSource(path)
    # the geometry points to per-frame clen/energy that the file lacks
    with h5py.File(path, "a") as f:
        f[DATA_PATH] = np.zeros((1, *geom.slab_shape), dtype=np.float32)
    with pytest.raises(
        InputError, match="geometry points to /LCLS/photon_energy_eV, which is missing"
    ):
        FrameSource(path, geom)


def test_wrong_number_of_metadata_values(tmp_path, geom):
    path = write_frames(tmp_path / "m.cxi", _stack(geom.slab_shape, n=2), None, 9500.0, 0.035)
    with h5py.File(path, "a") as f:
        del f[CLEN_PATH]
        f[CLEN_PATH] = np.array([35.0, 35.0, 35.0])
    with pytest.raises(InputError, match="has 3 values for 2 frames"):
        FrameSource(path, geom)


def test_mask_shape_is_checked(tmp_path):
    with pytest.raises(ValueError, match="mask shape"):
        write_frames(tmp_path / "x.cxi", _stack((4, 4)), np.zeros((3, 3)), 9500.0, 0.035)
    assert not (tmp_path / "x.cxi").exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_mask_bits_follow_geometry_mask_good_bad(tmp_path):
    text = (
        "res = 10000\nclen = 0.1\nphoton_energy = 9000\nmask = "
        + MASK_PATH
        + "\nmask_good = 0x1\nmask_bad = 0x4\n"
        "p0/min_fs = 0\np0/max_fs = 3\np0/min_ss = 0\np0/max_ss = 1\n"
    )
    (tmp_path / "m.geom").write_text(text)
    g = read_geom(tmp_path / "m.geom")
    mask = np.array([[1, 0, 5, 1], [3, 1, 1, 1]], dtype=np.uint16)
    path = write_frames(tmp_path / "m.cxi", _stack((2, 4), n=1), mask, 9000.0, 0.1)
    bad = FrameSource(path, g).bad_pixels()
    np.testing.assert_array_equal(bad, [[False, True, True, False], [False, False, False, False]])
