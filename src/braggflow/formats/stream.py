"""CrystFEL stream files (format 2.x): read every dialect, write the subset indexamajig writes.

A stream is a header (format line, audit lines, embedded geometry and target cell) followed by
one chunk per frame: frame metadata, the found peaks (``Peaks from peak search``) and zero or
more crystals, each with its reciprocal basis and predicted reflections (``Reflections measured
after indexing``).  Both indexamajig's streams and the built-in indexer's go through this module.

Dialects handled (CrystFEL's ``libcrystfel/src/stream.c``):

* format 2.3 (CrystFEL >= 0.6.3, both the 0.9 writer and the 0.10-0.12 writer): peak lines
  ``fs ss 1/d intensity panel``, reflection lines ``h k l I sigma peak background fs ss panel``;
  0.9 writes per-frame header values as ``hdf5/<path> = v``, 0.10+ as ``header/float/<path> = v``
  and always an ``Event:`` line;
* formats 2.0-2.2: peak lines without the panel column; reflection lines
  ``h k l I phase sigma counts fs ss`` (2.0/2.1) or ``h k l I sigma peak background fs ss`` (2.2).

Coordinates: streams store raw slab positions with the pixel centre at ``n + 0.5``; braggflow
keeps the centre at the integer (docs/conventions.md), so :func:`read_stream` subtracts 0.5 and
:func:`write_stream` adds it back.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from braggflow.errors import InputError

if TYPE_CHECKING:
    from braggflow.formats.geometry import Geometry

log = logging.getLogger(__name__)

HALF_PIXEL = 0.5  # stream coordinate = braggflow coordinate + 0.5 (conventions.md)

CHUNK_START = "----- Begin chunk -----"
CHUNK_END = "----- End chunk -----"
GEOM_START = "----- Begin geometry file -----"
GEOM_END = "----- End geometry file -----"
CELL_START = "----- Begin unit cell -----"
CELL_END = "----- End unit cell -----"
PEAKS_START = "Peaks from peak search"
PEAKS_END = "End of peak list"
CRYSTAL_START = "--- Begin crystal"
CRYSTAL_END = "--- End crystal"
REFL_START = "Reflections measured after indexing"
REFL_END = "End of reflections"

PEAK_HEADER = "  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel"
REFL_HEADER = "   h    k    l          I   sigma(I)       peak background  fs/px  ss/px panel"

ON_TRUNCATED = ("skip", "error")


# --------------------------------------------------------------------------- data model


@dataclass
class PeakList:
    """Found peaks of one frame (braggflow raw-slab coordinates: pixel centre at an integer)."""

    fs: np.ndarray
    ss: np.ndarray
    one_over_d_nm: np.ndarray
    intensity: np.ndarray
    panel: np.ndarray  # panel names (str); "" where an old stream has no panel column

    def __len__(self) -> int:
        return len(self.fs)

    @classmethod
    def empty(cls) -> PeakList:
        z = np.zeros(0)
        return cls(z, z.copy(), z.copy(), z.copy(), np.zeros(0, dtype=object))


@dataclass
class ReflectionList:
    """Predicted (and integrated) reflections of one crystal, positions in braggflow coordinates."""

    h: np.ndarray
    k: np.ndarray
    l: np.ndarray  # noqa: E741 (Miller index)
    intensity: np.ndarray
    sigma: np.ndarray
    peak: np.ndarray
    background: np.ndarray
    fs: np.ndarray
    ss: np.ndarray
    panel: np.ndarray

    def __len__(self) -> int:
        return len(self.h)

    @classmethod
    def empty(cls) -> ReflectionList:
        i = np.zeros(0, dtype=np.int32)
        f = np.zeros(0)
        return cls(
            i,
            i.copy(),
            i.copy(),
            f,
            f.copy(),
            f.copy(),
            f.copy(),
            f.copy(),
            f.copy(),
            np.zeros(0, dtype=object),
        )

    @property
    def hkl(self) -> np.ndarray:
        return np.stack([self.h, self.k, self.l], axis=1)


@dataclass
class Crystal:
    """One indexed lattice: reciprocal basis in the lab frame (nm^-1) and its reflections."""

    astar: np.ndarray
    bstar: np.ndarray
    cstar: np.ndarray
    lattice_type: str = "triclinic"
    centering: str = "P"
    unique_axis: str = "?"
    profile_radius_nm: float | None = None
    resolution_limit_nm: float | None = None
    det_shift_mm: tuple[float, float] | None = None
    num_saturated: int | None = None
    num_implausible: int | None = None
    reflections: ReflectionList | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def reciprocal_matrix_nm(self) -> np.ndarray:
        """Rows a*, b*, c* in nm^-1 (lab frame)."""
        return np.stack([self.astar, self.bstar, self.cstar]).astype(float)

    @property
    def direct_matrix_A(self) -> np.ndarray:
        """Rows a, b, c in Angstrom (lab frame)."""
        return np.linalg.inv(self.reciprocal_matrix_nm).T * 10.0

    @property
    def cell(self) -> tuple[float, float, float, float, float, float]:
        """(a_A, b_A, c_A, alpha_deg, beta_deg, gamma_deg) from the reciprocal basis."""
        return cell_parameters(self.direct_matrix_A)


@dataclass
class Chunk:
    """One frame of a stream."""

    filename: str
    event: str | None = None
    serial: int | None = None
    hit: int | None = None
    indexed_by: str | None = None
    n_indexing_tries: int | None = None
    photon_energy_ev: float | None = None
    beam_divergence_rad: float | None = None
    beam_bandwidth: float | None = None
    headers: dict[str, str] = field(default_factory=dict)  # "header/float/<path>" or "hdf5/<path>"
    average_camera_length_m: float | None = None
    num_peaks: int | None = None
    peak_resolution_nm: float | None = None
    peaks: PeakList | None = None
    crystals: list[Crystal] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def frame_index(self) -> int | None:
        """The frame number of the event ID (``//12`` -> 12), None without one."""
        if self.event is None:
            return None
        m = re.search(r"(\d+)\s*$", self.event)
        return int(m.group(1)) if m else None


@dataclass
class SkippedChunk:
    line: int
    reason: str


@dataclass
class Stream:
    """A whole stream: header blocks and chunks (plus chunks skipped as truncated or corrupt)."""

    chunks: list[Chunk] = field(default_factory=list)
    format_version: str = "2.3"
    audit: list[str] = field(default_factory=list)  # "Generated by ...", command line, methods
    geometry_text: str | None = None
    cell_text: str | None = None
    skipped: list[SkippedChunk] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "chunks": len(self.chunks),
            "crystals": sum(len(c.crystals) for c in self.chunks),
            "peaks": sum(len(c.peaks) for c in self.chunks if c.peaks is not None),
            "reflections": sum(
                len(x.reflections)
                for c in self.chunks
                for x in c.crystals
                if x.reflections is not None
            ),
            "skipped_chunks": len(self.skipped),
        }

    def geometry(self) -> Geometry:
        """The embedded geometry, parsed with :func:`braggflow.formats.geometry.read_geom`."""
        from braggflow.formats.geometry import read_geom

        if not self.geometry_text:
            raise InputError(
                "stream", "no embedded geometry", "pass the detector's .geom file explicitly"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "embedded.geom"
            path.write_text(self.geometry_text)
            return read_geom(path)


def cell_parameters(direct_A: np.ndarray) -> tuple[float, float, float, float, float, float]:
    """Lengths (A) and angles (deg) of a direct basis given as rows a, b, c."""
    a, b, c = (np.asarray(v, dtype=float) for v in direct_A)
    la, lb, lc = (float(np.linalg.norm(v)) for v in (a, b, c))

    def angle(u: np.ndarray, v: np.ndarray, lu: float, lv: float) -> float:
        return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v) / (lu * lv)))))

    return la, lb, lc, angle(b, c, lb, lc), angle(a, c, la, lc), angle(a, b, la, lb)


# --------------------------------------------------------------------------- reading


class _ChunkError(Exception):
    """A chunk that cannot be parsed (truncated or corrupt)."""


def read_stream(
    path: str | Path, on_truncated: str = "skip", with_reflections: bool = True
) -> Stream:
    """Parse a CrystFEL stream.

    A chunk that is cut off (end of file, or a new chunk starting before ``----- End chunk -----``)
    or that holds an unparsable peak/reflection line is skipped and recorded in ``Stream.skipped``
    (``on_truncated="skip"``, with a warning) or raises :class:`InputError` (``"error"``).
    """
    path = Path(path)
    if on_truncated not in ON_TRUNCATED:
        raise ValueError(f"on_truncated must be one of {ON_TRUNCATED}")
    if not path.is_file():
        raise InputError(path, "stream file not found", "check the path (index stage output)")
    with open(path, errors="replace") as fh:
        return _parse(fh, path, on_truncated, with_reflections)


def _parse(fh: TextIO, path: Path, on_truncated: str, with_reflections: bool) -> Stream:
    lines = _numbered(fh)
    first = next(lines, None)
    if first is None:
        raise InputError(path, "empty file, not a CrystFEL stream", "re-run the index stage")
    m = re.match(r"CrystFEL stream format (\d+)\.(\d+)", first[1])
    if not m:
        raise InputError(
            path,
            f"line 1 is {first[1][:60]!r}, not 'CrystFEL stream format 2.x'",
            "pass a CrystFEL stream",
        )
    stream = Stream(format_version=f"{m.group(1)}.{m.group(2)}")
    lines = _Peekable(lines)
    # header: audit lines, then optional geometry / cell blocks, up to the first chunk
    for lineno, line in lines:
        if line == GEOM_START:
            stream.geometry_text = _block(lines, GEOM_END, path, lineno)
        elif line == CELL_START:
            stream.cell_text = _block(lines, CELL_END, path, lineno)
        elif line == CHUNK_START:
            lines.push((lineno, line))
            break
        elif stream.geometry_text is None and stream.cell_text is None and line.strip():
            stream.audit.append(line)
    while True:
        item = next(lines, None)
        if item is None:
            break
        lineno, line = item
        if line != CHUNK_START:
            continue  # text between chunks (e.g. a concatenated header) is ignored, as CrystFEL does
        try:
            stream.chunks.append(_read_chunk(lines, lineno, with_reflections))
        except _ChunkError as exc:
            reason = str(exc)
            following = next(lines, None)
            if following is None and "truncated" not in reason:
                reason = f"the file ends inside this chunk (truncated stream): {reason}"
            elif following is not None:
                lines.push(following)
            if on_truncated == "error":
                raise InputError(
                    path,
                    f"chunk starting at line {lineno}: {reason}",
                    "re-run indexing for this run (the stream was cut off or corrupted)",
                ) from None
            log.warning("%s: skipping chunk at line %d: %s", path, lineno, reason)
            stream.skipped.append(SkippedChunk(lineno, reason))
    return stream


def _numbered(fh: TextIO) -> Iterator[tuple[int, str]]:
    for i, line in enumerate(fh, 1):
        yield i, line.rstrip("\r\n")


class _Peekable:
    """An iterator of numbered lines with one-item push-back."""

    def __init__(self, it: Iterator[tuple[int, str]]) -> None:
        self._it = it
        self._pushed: list[tuple[int, str]] = []

    def __iter__(self) -> _Peekable:
        return self

    def __next__(self) -> tuple[int, str]:
        if self._pushed:
            return self._pushed.pop()
        return next(self._it)

    def push(self, item: tuple[int, str]) -> None:
        self._pushed.append(item)


def _block(lines: _Peekable, end: str, path: Path, start: int) -> str:
    out = []
    for _, line in lines:
        if line == end:
            return "\n".join(out) + "\n"
        out.append(line)
    raise InputError(
        path, f"block opened at line {start} never ends (no {end!r})", "the stream is truncated"
    )


def _read_chunk(lines: _Peekable, start: int, with_reflections: bool) -> Chunk:
    chunk = Chunk(filename="")
    have_filename = False
    for lineno, line in lines:
        if line == CHUNK_END:
            if not have_filename:
                raise _ChunkError("chunk has no 'Image filename:' line")
            return chunk
        if line == CHUNK_START:
            lines.push((lineno, line))
            raise _ChunkError(
                f"a new chunk starts at line {lineno} before this one ended (truncated)"
            )
        if line.startswith("Image filename: "):
            chunk.filename = line[16:]
            have_filename = True
        elif line.startswith("Event: "):
            chunk.event = line[7:]
        elif line.startswith("Image serial number: "):
            chunk.serial = int(line[21:])
        elif line == PEAKS_START:
            chunk.peaks = _read_peaks(lines)
        elif line == CRYSTAL_START:
            chunk.crystals.append(_read_crystal(lines, with_reflections))
        elif " = " in line:
            key, value = line.split(" = ", 1)
            _chunk_key(chunk, key, value)
    raise _ChunkError("the file ends inside this chunk (truncated stream)")


def _first_float(text: str) -> float:
    return float(text.split()[0])


def _chunk_key(chunk: Chunk, key: str, value: str) -> None:
    try:
        if key.startswith(("hdf5/", "header/")):
            chunk.headers[key] = value
        elif key == "hit":
            chunk.hit = int(value)
        elif key == "indexed_by":
            chunk.indexed_by = value
        elif key == "n_indexing_tries":
            chunk.n_indexing_tries = int(value)
        elif key == "photon_energy_eV":
            chunk.photon_energy_ev = float(value)
        elif key == "beam_divergence":
            chunk.beam_divergence_rad = _first_float(value)
        elif key == "beam_bandwidth":
            chunk.beam_bandwidth = _first_float(value)
        elif key == "average_camera_length":
            chunk.average_camera_length_m = _first_float(value)
        elif key == "num_peaks":
            chunk.num_peaks = int(value)
        elif key == "peak_resolution":
            chunk.peak_resolution_nm = _first_float(value)
        else:
            chunk.extra[key] = value
    except ValueError as exc:
        raise _ChunkError(f"bad value in '{key} = {value}': {exc}") from None


def _read_peaks(lines: _Peekable) -> PeakList:
    rows: list[list[str]] = []
    header_seen = False
    for lineno, line in lines:
        if line == PEAKS_END:
            return _peaks_from_rows(rows)
        if line in (CHUNK_END, CHUNK_START):
            lines.push((lineno, line))
            raise _ChunkError(f"peak list not closed before line {lineno} (truncated)")
        if not header_seen:  # CrystFEL skips the first line (column titles)
            header_seen = True
            continue
        parts = line.split()
        if len(parts) not in (4, 5):
            raise _ChunkError(f"line {lineno}: bad peak line {line[:60]!r}")
        rows.append(parts)
    raise _ChunkError("the file ends inside a peak list (truncated stream)")


def _peaks_from_rows(rows: list[list[str]]) -> PeakList:
    if not rows:
        return PeakList.empty()
    try:
        num = np.array([[float(x) for x in r[:4]] for r in rows], dtype=float)
    except ValueError as exc:
        raise _ChunkError(f"bad number in peak list: {exc}") from None
    panel = np.array([r[4] if len(r) == 5 else "" for r in rows], dtype=object)
    return PeakList(
        fs=num[:, 0] - HALF_PIXEL,
        ss=num[:, 1] - HALF_PIXEL,
        one_over_d_nm=num[:, 2],
        intensity=num[:, 3],
        panel=panel,
    )


_VEC = re.compile(r"^([abc])star = ([-+0-9.eE]+) ([-+0-9.eE]+) ([-+0-9.eE]+)")
_CELL_LINE = re.compile(
    r"Cell parameters ([-+0-9.eE]+) ([-+0-9.eE]+) ([-+0-9.eE]+) nm, "
    r"([-+0-9.eE]+) ([-+0-9.eE]+) ([-+0-9.eE]+) deg"
)


def _read_crystal(lines: _Peekable, with_reflections: bool) -> Crystal:
    vecs: dict[str, np.ndarray] = {}
    fields: dict[str, object] = {}
    extra: dict[str, str] = {}
    reflections: ReflectionList | None = None
    for lineno, line in lines:
        if line == CRYSTAL_END:
            if len(vecs) != 3:
                raise _ChunkError("crystal without astar/bstar/cstar")
            return Crystal(
                vecs["a"], vecs["b"], vecs["c"], reflections=reflections, extra=extra, **fields
            )
        if line in (CHUNK_END, CHUNK_START):
            lines.push((lineno, line))
            raise _ChunkError(f"crystal not closed before line {lineno} (truncated)")
        if line == REFL_START:
            refl = _read_reflections(lines)
            reflections = refl if with_reflections else None
            continue
        m = _VEC.match(line)
        if m:
            vecs[m.group(1)] = np.array([float(m.group(i)) for i in (2, 3, 4)])
            continue
        if line.startswith("Cell parameters"):
            continue  # derived from the reciprocal basis
        if line.startswith("No integrated reflections"):
            continue
        if " = " not in line:
            continue
        key, value = line.split(" = ", 1)
        try:
            if key == "lattice_type":
                fields["lattice_type"] = value.strip()
            elif key == "centering":
                fields["centering"] = value.strip()
            elif key == "unique_axis":
                fields["unique_axis"] = value.strip()
            elif key == "profile_radius":
                fields["profile_radius_nm"] = _first_float(value)
            elif key == "diffraction_resolution_limit":
                fields["resolution_limit_nm"] = _first_float(value)
            elif key == "num_saturated_reflections":
                fields["num_saturated"] = int(value)
            elif key == "num_implausible_reflections":
                fields["num_implausible"] = int(value)
            elif key == "predict_refine/det_shift x":
                # "predict_refine/det_shift x = 0.022 y = -0.009 mm"
                mm = re.match(r"([-+0-9.eE]+) y = ([-+0-9.eE]+) mm", value)
                if mm:
                    fields["det_shift_mm"] = (float(mm.group(1)), float(mm.group(2)))
            elif key == "num_reflections":
                continue  # recomputed when writing
            else:
                extra[key] = value
        except ValueError as exc:
            raise _ChunkError(f"line {lineno}: bad value {line[:60]!r}: {exc}") from None
    raise _ChunkError("the file ends inside a crystal (truncated stream)")


def _read_reflections(lines: _Peekable) -> ReflectionList:
    rows: list[list[str]] = []
    layout: str | None = None
    for lineno, line in lines:
        if line == REFL_END:
            return _reflections_from_rows(rows, layout or "2.3")
        if line in (CHUNK_END, CHUNK_START, CRYSTAL_END):
            lines.push((lineno, line))
            raise _ChunkError(f"reflection list not closed before line {lineno} (truncated)")
        if layout is None:  # the column-title line tells the dialect
            if "panel" in line:
                layout = "2.3"
            elif "phase" in line:
                layout = "2.1"
            else:
                layout = "2.2"
            if line.split() and line.split()[0] == "h":
                continue
        parts = line.split()
        want = 10 if layout == "2.3" else 9
        if len(parts) != want:
            raise _ChunkError(f"line {lineno}: bad reflection line {line[:60]!r}")
        rows.append(parts)
    raise _ChunkError("the file ends inside a reflection list (truncated stream)")


def _reflections_from_rows(rows: list[list[str]], layout: str) -> ReflectionList:
    if not rows:
        return ReflectionList.empty()
    try:
        hkl = np.array([[int(x) for x in r[:3]] for r in rows], dtype=np.int32)
        if layout == "2.1":  # h k l I phase sigma counts fs ss
            num = np.array(
                [
                    [float(r[3]), float(r[5]), math.nan, math.nan, float(r[7]), float(r[8])]
                    for r in rows
                ]
            )
            panel = np.full(len(rows), "", dtype=object)
        else:  # h k l I sigma peak background fs ss [panel]
            num = np.array([[float(x) for x in r[3:9]] for r in rows])
            panel = np.array([r[9] if len(r) == 10 else "" for r in rows], dtype=object)
    except ValueError as exc:
        raise _ChunkError(f"bad number in reflection list: {exc}") from None
    return ReflectionList(
        h=hkl[:, 0],
        k=hkl[:, 1],
        l=hkl[:, 2],
        intensity=num[:, 0],
        sigma=num[:, 1],
        peak=num[:, 2],
        background=num[:, 3],
        fs=num[:, 4] - HALF_PIXEL,
        ss=num[:, 5] - HALF_PIXEL,
        panel=panel,
    )


# --------------------------------------------------------------------------- writing


def write_stream(path: str | Path, stream: Stream) -> None:
    """Write ``stream`` atomically in format 2.3 as CrystFEL 0.10+ indexamajig writes it."""
    from braggflow.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        for text in format_header(stream):
            fh.write(text)
        for chunk in stream.chunks:
            fh.write(format_chunk(chunk))


def format_header(stream: Stream) -> Iterable[str]:
    yield "CrystFEL stream format 2.3\n"
    for line in stream.audit:
        yield line + "\n"
    if stream.geometry_text is not None:
        yield GEOM_START + "\n" + _ensure_newline(stream.geometry_text) + GEOM_END + "\n"
    if stream.cell_text is not None:
        yield CELL_START + "\n" + _ensure_newline(stream.cell_text) + CELL_END + "\n"


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def format_chunk(chunk: Chunk) -> str:
    """One chunk as text (``stream_write_chunk`` of CrystFEL 0.10+)."""
    out = [CHUNK_START, f"Image filename: {chunk.filename}"]
    if chunk.event is not None:
        out.append(f"Event: {chunk.event}")
    if chunk.serial is not None:
        out.append(f"Image serial number: {chunk.serial}")
    if chunk.hit is not None:
        out.append(f"hit = {chunk.hit}")
    indexed_by = chunk.indexed_by or "none"
    out.append(f"indexed_by = {indexed_by}")
    if indexed_by != "none" and chunk.n_indexing_tries is not None:
        out.append(f"n_indexing_tries = {chunk.n_indexing_tries}")
    if chunk.photon_energy_ev is not None:
        out.append(f"photon_energy_eV = {chunk.photon_energy_ev:f}")
    if chunk.beam_divergence_rad is not None:
        out.append(f"beam_divergence = {chunk.beam_divergence_rad:.2e} rad")
    if chunk.beam_bandwidth is not None:
        out.append(f"beam_bandwidth = {chunk.beam_bandwidth:.2e} (fraction)")
    for key, value in chunk.headers.items():
        out.append(f"{key} = {value}")
    for key, value in chunk.extra.items():
        out.append(f"{key} = {value}")
    if chunk.average_camera_length_m is not None:
        out.append(f"average_camera_length = {chunk.average_camera_length_m:f} m")
    peaks = chunk.peaks
    num_peaks = len(peaks) if peaks is not None else (chunk.num_peaks or 0)
    out.append(f"num_peaks = {num_peaks}")
    if chunk.peak_resolution_nm is not None:
        res = chunk.peak_resolution_nm
        res_a = 10.0 / res if res > 0 else math.inf
        out.append(f"peak_resolution = {res:f} nm^-1 or {res_a:f} A")
    if peaks is not None:
        out.append(PEAKS_START)
        out.append(PEAK_HEADER)
        for fs, ss, d, inten, pn in zip(
            peaks.fs, peaks.ss, peaks.one_over_d_nm, peaks.intensity, peaks.panel, strict=True
        ):
            out.append(
                f"{fs + HALF_PIXEL:7.2f} {ss + HALF_PIXEL:7.2f} {d:10.2f}  {inten:10.2f}   {pn}"
            )
        out.append(PEAKS_END)
    for crystal in chunk.crystals:
        out.extend(_format_crystal(crystal))
    out.append(CHUNK_END)
    return "\n".join(out) + "\n"


def _format_crystal(cr: Crystal) -> list[str]:
    a, b, c, al, be, ga = cr.cell
    out = [
        CRYSTAL_START,
        f"Cell parameters {a / 10:7.5f} {b / 10:7.5f} {c / 10:7.5f} nm, {al:7.5f} {be:7.5f} {ga:7.5f} deg",
    ]
    for name, vec in (("astar", cr.astar), ("bstar", cr.bstar), ("cstar", cr.cstar)):
        out.append(f"{name} = {vec[0]:+9.7f} {vec[1]:+9.7f} {vec[2]:+9.7f} nm^-1")
    out.append(f"lattice_type = {cr.lattice_type}")
    out.append(f"centering = {cr.centering}")
    out.append(f"unique_axis = {cr.unique_axis}")
    if cr.profile_radius_nm is not None:
        out.append(f"profile_radius = {cr.profile_radius_nm:.5f} nm^-1")
    for key, value in cr.extra.items():
        out.append(f"{key} = {value}")
    if cr.det_shift_mm is not None:
        out.append(
            f"predict_refine/det_shift x = {cr.det_shift_mm[0]:.3f} y = {cr.det_shift_mm[1]:.3f} mm"
        )
    refl = cr.reflections
    if refl is not None:
        lim = cr.resolution_limit_nm if cr.resolution_limit_nm is not None else 0.0
        lim_a = 10.0 / lim if lim > 0 else math.inf
        out.append(f"diffraction_resolution_limit = {lim:.2f} nm^-1 or {lim_a:.2f} A")
        out.append(f"num_reflections = {len(refl)}")
        out.append(f"num_saturated_reflections = {cr.num_saturated or 0}")
        out.append(f"num_implausible_reflections = {cr.num_implausible or 0}")
        out.append(REFL_START)
        out.append(REFL_HEADER)
        for i in range(len(refl)):
            out.append(
                f"{refl.h[i]:4d} {refl.k[i]:4d} {refl.l[i]:4d} {refl.intensity[i]:10.2f} "
                f"{refl.sigma[i]:10.2f} {refl.peak[i]:10.2f} {refl.background[i]:10.2f} "
                f"{refl.fs[i] + HALF_PIXEL:6.1f} {refl.ss[i] + HALF_PIXEL:6.1f} {refl.panel[i]}"
            )
        out.append(REFL_END)
    out.append(CRYSTAL_END)
    return out


# --------------------------------------------------------------------------- checks


def unknown_panels(stream: Stream, geom: Geometry) -> set[str]:
    """Panel names used by peaks or reflections of ``stream`` that ``geom`` does not define."""
    known = {p.name for p in geom.panels}
    used: set[str] = set()
    for chunk in stream.chunks:
        if chunk.peaks is not None:
            used.update(str(p) for p in chunk.peaks.panel)
        for cr in chunk.crystals:
            if cr.reflections is not None:
                used.update(str(p) for p in cr.reflections.panel)
    used.discard("")
    return used - known
