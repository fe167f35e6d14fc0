"""The ``crystfel`` engine: CrystFEL's ``indexamajig --peaks=cxi`` on a CXI peak-list file.

indexamajig reads the peaks from the file named in its list (``<file> //<event>`` per frame,
one event per frame of the ``dim0 = %`` dimension) at the geometry's ``peak_list`` path. The
peak file written by ``find-peaks``/``infer`` links the frames and their headers (photon energy,
camera length), so with ``--no-image-data --no-revalidate`` indexamajig indexes from the peak
lists alone. Its stream is parsed with :func:`braggflow.formats.stream.read_stream`, the same
parser as the built-in indexer's output.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braggflow.errors import BraggflowError, InputError, MissingToolError

log = logging.getLogger(__name__)

PEAK_LIST_LINES = {"peak_list": "/entry_1/result_1", "peak_list_type": "cxi"}


@dataclass(frozen=True)
class CrystfelParams:
    """Settings of the crystfel engine (config ``index.crystfel``)."""

    executable: str = "indexamajig"
    method: str = "xgandalf"
    no_image_data: bool = True
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> CrystfelParams:
        cfg = dict(cfg or {})
        return cls(
            executable=str(cfg.get("executable", cls.executable)),
            method=str(cfg.get("method", cls.method)),
            no_image_data=bool(cfg.get("no_image_data", cls.no_image_data)),
            extra_args=tuple(str(a) for a in cfg.get("extra_args", ())),
        )


def require_indexamajig(executable: str) -> str:
    """The indexamajig path, or a :class:`MissingToolError` (raised before any work starts)."""
    found = shutil.which(executable)
    if found is None:
        raise MissingToolError(f"CrystFEL indexamajig ('{executable}')", "index.engine", "builtin")
    return found


def geometry_for_cxi_peaks(geometry_text: str) -> str:
    """The geometry with ``peak_list``/``peak_list_type`` set for CXI peak lists (first lines win)."""
    kept = []
    for line in geometry_text.splitlines():
        key = line.split(";", 1)[0].split("=", 1)[0].strip()
        if key in PEAK_LIST_LINES:
            continue
        kept.append(line)
    head = [f"{k} = {v}" for k, v in PEAK_LIST_LINES.items()]
    return (
        "\n".join(["; peak lists: CXI (Cheetah layout), set by braggflow index", *head, "", *kept])
        + "\n"
    )


def write_list_file(path: Path, peaks_path: Path, n_frames: int) -> None:
    """One ``<file> //<event>`` line per frame (CrystFEL 0.10+ event IDs)."""
    target = peaks_path.resolve()
    path.write_text("".join(f"{target} //{i}\n" for i in range(n_frames)))


def indexamajig_command(
    executable: str,
    list_path: Path,
    stream_path: Path,
    geometry_path: Path,
    cell_path: Path,
    params: CrystfelParams,
    threads: int,
    min_peaks: int,
    tolerance: tuple[float, float],
) -> list[str]:
    """The indexamajig command line (``tolerance``: length percent, angle degrees)."""
    length_pct, angle_deg = tolerance
    cmd = [
        executable,
        "-i",
        str(list_path),
        "-o",
        str(stream_path),
        "-g",
        str(geometry_path),
        "-p",
        str(Path(cell_path).resolve()),
        "--peaks=cxi",
        f"--indexing={params.method}",
        "-j",
        str(int(threads)),
        "--no-revalidate",
        f"--min-peaks={int(min_peaks)}",
        f"--tolerance={length_pct:g},{length_pct:g},{length_pct:g},{angle_deg:g},{angle_deg:g},{angle_deg:g}",
    ]
    if params.no_image_data:
        cmd.append("--no-image-data")
    cmd.extend(params.extra_args)
    return cmd


def run_indexamajig(cmd: Sequence[str], workdir: Path) -> None:
    """Run indexamajig, relaying its output to the log; a failure is one clear error."""
    log.info("running: %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), cwd=workdir, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BraggflowError(f"indexamajig could not start: {exc}") from None
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("indexamajig: %s", line)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BraggflowError(f"indexamajig failed with status {proc.returncode}: {tail}")


def check_stream_written(stream_path: Path) -> None:
    if not stream_path.is_file() or stream_path.stat().st_size == 0:
        raise InputError(
            stream_path, "indexamajig wrote no stream", "see the indexamajig messages in the log"
        )
