"""CXI peak lists for the index stage (Cheetah layout under ``/entry_1/result_1``).

Read with :func:`braggflow.formats.cxi.read_cxi_peaks` (the shared reader); a minimal reader of
the four datasets the indexer needs stands in where that module is not available.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError

RESULT = "/entry_1/result_1"


@dataclass
class _Peaks:
    fs: np.ndarray
    ss: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.fs.size)


def read_peak_tables(path: str | Path) -> list[Any]:
    """Every frame's peaks: objects with ``fs``, ``ss``, ``intensity`` (raw slab, centre at integer)."""
    try:
        from braggflow.formats.cxi import read_cxi_peaks
    except ImportError:
        return _read_minimal(Path(path))
    return read_cxi_peaks(path)


def _read_minimal(path: Path) -> list[_Peaks]:
    import h5py

    if not path.is_file():
        raise InputError(
            path, "CXI peak file not found", "run 'braggflow find-peaks' or check the path"
        )
    try:
        with h5py.File(path, "r") as h5:
            for name in ("nPeaks", "peakXPosRaw", "peakYPosRaw", "peakTotalIntensity"):
                if f"{RESULT}/{name}" not in h5:
                    raise InputError(
                        path, f"no {RESULT}/{name}", "give a CXI peak list (Cheetah layout)"
                    )
            n = np.asarray(h5[f"{RESULT}/nPeaks"][()]).reshape(-1).astype(np.int64)
            x = np.asarray(h5[f"{RESULT}/peakXPosRaw"][()], dtype=float)
            y = np.asarray(h5[f"{RESULT}/peakYPosRaw"][()], dtype=float)
            inten = np.asarray(h5[f"{RESULT}/peakTotalIntensity"][()], dtype=float)
    except OSError as exc:
        raise InputError(path, f"unreadable HDF5 ({exc})", "regenerate the peak file") from None
    if x.ndim != 2 or x.shape[0] != n.size or (n > x.shape[1]).any():
        raise InputError(path, "nPeaks does not match the peak arrays", "regenerate the peak file")
    return [_Peaks(x[i, :k], y[i, :k], inten[i, :k]) for i, k in enumerate(n)]


def count_frames(path: str | Path) -> int:
    """Number of frames (rows of ``nPeaks``) in a CXI peak file."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            if f"{RESULT}/nPeaks" not in h5:
                raise InputError(
                    path, f"no {RESULT}/nPeaks", "give a CXI peak list (Cheetah layout)"
                )
            return int(np.asarray(h5[f"{RESULT}/nPeaks"].shape[0]))
    except OSError as exc:
        raise InputError(path, f"unreadable HDF5 ({exc})", "regenerate the peak file") from None
