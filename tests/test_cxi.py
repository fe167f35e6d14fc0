"""CXI peak lists (Cheetah layout): write -> read, empty frames, truncation, links, bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from braggflow.errors import InputError
from braggflow.formats.cxi import (
    PeakTable,
    cxi_peak_geometry,
    peak_list_geometry_lines,
    read_cxi_peaks,
    write_cxi_peaks,
)
from braggflow.formats.geometry import Geometry, Panel


def _table(n: int, seed: int = 0) -> PeakTable:
    rng = np.random.default_rng(seed)
    return PeakTable(
        fs=rng.uniform(0, 100, n),
        ss=rng.uniform(0, 50, n),
        intensity=rng.uniform(10, 1000, n),
        max_intensity=rng.uniform(5, 100, n),
        npix=rng.integers(2, 20, n),
        snr=rng.uniform(6, 30, n),
    )


def test_write_read_round_trip_with_empty_frames(tmp_path):
    tables = [_table(5, 1), PeakTable(), _table(17, 2)]
    out = tmp_path / "peaks.cxi"
    write_cxi_peaks(out, tables, config={"engine": "builtin"})
    back = read_cxi_peaks(out)
    assert [len(t) for t in back] == [5, 0, 17]
    for a, b in zip(tables, back, strict=True):
        for col in ("fs", "ss", "intensity", "max_intensity", "npix", "snr"):
            np.testing.assert_allclose(getattr(b, col), getattr(a, col), rtol=1e-6)
    with h5py.File(out, "r") as h5:
        assert h5["/entry_1/result_1/nPeaks"].shape == (3,)
        assert h5["/entry_1/result_1/peakXPosRaw"].shape == (3, 2048)
        assert h5["/entry_1/result_1/peakTotalIntensity"].dtype == np.float32
        assert "braggflow_provenance" in h5.attrs


def test_truncation_keeps_the_strongest(tmp_path):
    t = PeakTable(fs=np.arange(6), ss=np.zeros(6), intensity=[5, 1, 9, 3, 8, 2])
    write_cxi_peaks(tmp_path / "p.cxi", [t], max_peaks=3)
    (back,) = read_cxi_peaks(tmp_path / "p.cxi")
    assert back.fs.tolist() == [0, 2, 4]
    with h5py.File(tmp_path / "p.cxi", "r") as h5:
        assert h5["/entry_1/result_1"].attrs["n_frames_truncated"] == 1


def test_external_link_to_frames_resolves_from_another_folder(tmp_path, monkeypatch):
    data_dir, peak_dir = tmp_path / "data", tmp_path / "peaks" / "pf8"
    data_dir.mkdir()
    frames = np.random.default_rng(0).random((2, 8, 10)).astype(np.float32)
    with h5py.File(data_dir / "r0.cxi", "w") as h5:
        h5["/entry_1/data_1/data"] = frames
        h5["/LCLS/photon_energy_eV"] = np.array([9500.0, 9500.0])
    write_cxi_peaks(peak_dir / "r0.cxi", [_table(2), PeakTable()], frames_path=data_dir / "r0.cxi")
    monkeypatch.chdir(tmp_path / "peaks")  # HDF5 resolves the relative link from the file's folder
    with h5py.File(peak_dir / "r0.cxi", "r") as h5:
        assert np.array_equal(h5["/entry_1/data_1/data"][1], frames[1])
        assert h5["/LCLS/photon_energy_eV"][0] == 9500.0


def test_geometry_lines_for_indexamajig():
    geom = Geometry(panels=[Panel("p0", 0, 9, 0, 9, 0.0, 0.0)], globals={"dim0": "%"})
    g2 = cxi_peak_geometry(geom)
    assert g2.globals["peak_list"] == "/entry_1/result_1"
    assert g2.globals["peak_list_type"] == "cxi"
    assert "peak_list" not in geom.globals
    assert peak_list_geometry_lines() == "peak_list = /entry_1/result_1\npeak_list_type = cxi\n"


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_cxi_peaks(tmp_path / "missing.cxi")
    (tmp_path / "junk.cxi").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="unreadable HDF5"):
        read_cxi_peaks(tmp_path / "junk.cxi")
    with h5py.File(tmp_path / "empty.cxi", "w") as h5:
        h5["x"] = 1
    with pytest.raises(InputError, match="nPeaks"):
        read_cxi_peaks(tmp_path / "empty.cxi")
    with pytest.raises(ValueError, match="has 1 values"):
        PeakTable(fs=[1, 2], ss=[1])
