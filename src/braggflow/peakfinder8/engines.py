"""External peak-finding engines: CrystFEL's ``indexamajig --peaks=peakfinder8`` and Cheetah.

Both are checked before any work starts (:func:`require_tool` raises
:class:`~braggflow.errors.MissingToolError` naming the tool, the config key and the built-in
alternative); both end in the same :class:`~braggflow.formats.cxi.PeakTable` per frame so that
the stage always writes one CXI peak list, whichever engine found the peaks.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from braggflow.errors import ConfigError, InputError, MissingToolError
from braggflow.formats.cxi import PeakTable, read_cxi_peaks
from braggflow.peakfinder8.algorithm import Peakfinder8Params

log = logging.getLogger("braggflow.find_peaks")


def require_tool(executable: str, config_key: str) -> str:
    """The full path of ``executable`` (on PATH or a path), else :class:`MissingToolError`."""
    found = shutil.which(executable)
    if found is None:
        raise MissingToolError(executable, config_key, "builtin")
    return found


def indexamajig_command(
    executable: str,
    input_list: Path,
    geometry: Path,
    stream: Path,
    params: Peakfinder8Params,
    threads: int = 1,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """indexamajig peak search only (``--indexing=none``): CrystFEL's peakfinder8 options."""
    return [
        executable,
        "-i",
        str(input_list),
        "-g",
        str(geometry),
        "-o",
        str(stream),
        f"-j{max(1, int(threads))}",
        "--peaks=peakfinder8",
        f"--threshold={params.adc_threshold:g}",
        f"--min-snr={params.min_snr:g}",
        f"--min-pix-count={params.min_pix_count}",
        f"--max-pix-count={params.max_pix_count}",
        f"--local-bg-radius={params.local_bg_radius}",
        f"--min-res={params.min_res:g}",
        f"--max-res={min(params.max_res, 1e7):g}",
        "--indexing=none",
        *extra_args,
    ]


def run_crystfel(
    frames: Path,
    geometry: Path,
    n_frames: int,
    params: Peakfinder8Params,
    settings: Mapping[str, Any],
    workdir: Path,
    threads: int = 1,
) -> list[PeakTable]:
    """Run indexamajig's peakfinder8 on every frame; peaks per frame from its stream."""
    exe = require_tool(
        str(settings.get("executable", "indexamajig")), "find_peaks.crystfel.executable"
    )
    workdir.mkdir(parents=True, exist_ok=True)
    input_list = workdir / "frames.lst"
    input_list.write_text(f"{Path(frames).resolve()}\n")
    stream = workdir / "peaks.stream"
    cmd = indexamajig_command(
        exe,
        input_list,
        Path(geometry).resolve(),
        stream,
        params,
        threads,
        settings.get("extra_args", []),
    )
    _run(cmd, "indexamajig", workdir)
    return tables_from_stream(stream, n_frames)


def tables_from_stream(stream: Path, n_frames: int) -> list[PeakTable]:
    """One table per frame from a stream's "Peaks from peak search" (frames without chunk: none)."""
    from braggflow.formats.stream import read_stream

    tables = [PeakTable() for _ in range(n_frames)]
    parsed = read_stream(stream, with_reflections=False)
    for order, chunk in enumerate(parsed.chunks):
        index = chunk.frame_index if chunk.frame_index is not None else order
        if not 0 <= index < n_frames:
            raise InputError(
                stream,
                f"chunk for event {chunk.event!r} is outside the {n_frames} frames",
                "check the frames file",
            )
        if chunk.peaks is not None and len(chunk.peaks):
            # the stream reader already removed CrystFEL's half-pixel shift
            tables[index] = PeakTable(
                fs=chunk.peaks.fs, ss=chunk.peaks.ss, intensity=chunk.peaks.intensity
            )
    return tables


def cheetah_command(template: str, values: Mapping[str, Any]) -> list[str]:
    """Format the configured command template (``{frames}``, ``{geometry}``, ``{out}``, params)."""
    quoted = {k: shlex.quote(str(v)) for k, v in values.items()}
    try:
        text = template.format(**quoted)
    except (KeyError, IndexError) as exc:
        raise ConfigError(
            f"find_peaks.cheetah.command: unknown placeholder {exc}; use {sorted(values)}"
        ) from None
    return shlex.split(text)


def run_cheetah(
    frames: Path,
    geometry: Path,
    n_frames: int,
    params: Peakfinder8Params,
    settings: Mapping[str, Any],
    workdir: Path,
) -> list[PeakTable]:
    """Run a Cheetah-style command that writes a CXI peak list to ``{out}``; read it back."""
    template = settings.get("command")
    if not template:
        raise ConfigError(
            "find_peaks.cheetah.command is not set: give a command template such as "
            "'cheetah-pf8 {frames} {geometry} {out} --snr {min_snr}', or use engine: builtin"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "cheetah_peaks.cxi"
    values = {
        "frames": Path(frames).resolve(),
        "geometry": Path(geometry).resolve(),
        "out": out.resolve(),
        "n_frames": n_frames,
        **params.as_dict(),
    }
    cmd = cheetah_command(str(template), values)
    cmd[0] = require_tool(cmd[0], "find_peaks.cheetah.command")
    _run(cmd, "cheetah", workdir)
    if not out.is_file():
        raise InputError(
            out,
            "the cheetah command wrote no peak file",
            "make the command write a CXI peak list to {out}",
        )
    tables = read_cxi_peaks(out)
    if len(tables) != n_frames:
        raise InputError(
            out, f"{len(tables)} frames of peaks for {n_frames} frames", "check the cheetah command"
        )
    return tables


def _run(cmd: list[str], tool: str, workdir: Path) -> None:
    log.info("running: %s", shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    (workdir / f"{tool}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise InputError(
            tool,
            f"exited with status {proc.returncode}: {tail}",
            f"see {workdir / (tool + '.log')}",
        )
