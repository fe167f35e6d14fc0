"""CrystFEL detector geometry (``.geom``): panels, reading, writing, pixel positions.

Follows crystfel_geometry(5):

- A panel covers the inclusive raw "slab" rectangle ``min_fs..max_fs`` x ``min_ss..max_ss``;
  ``corner_x/corner_y`` is the outer corner of its first pixel, so the lab position (pixels) of
  raw pixel centre (fs, ss) is ``corner + (fs - min_fs + 0.5) * fs + (ss - min_ss + 0.5) * ss``.
  ``res`` is pixels per metre; the panel sits at z = clen + coffset (metres).
- A global line (no ``panel/`` prefix) sets the default for the panels *first mentioned later*
  in the file; non-panel globals (photon energy, peak lists, groups, ...) apply everywhere.
- Values carry optional units: ``clen = 95.3 mm``, ``photon_energy = 4570 eV`` (or ``keV``),
  ``wavelength = 1.3 A``; a value may be a header location (``clen = /LCLS/detector_1/EncoderValue``,
  whose unit is mm unless given). Header locations are kept as strings.
- Masks: ``mask``/``mask_file``/``mask_good``/``mask_bad`` and ``maskN_data/file/goodbits/badbits``.
- Bad regions ``bad*/``: lab x/y rectangles, or fs/ss rectangles (file coordinates) of one panel.
- Multi-dimensional data blocks (``p0/dim1 = 0``, e.g. AGIPD's (n, 16, 512, 128)) are read as
  one 2-D slab with the fixed-index dimension stacked along slow scan (the C-order reshape
  (n, 16 * 512, 128)): such panels get ``ss_offset`` added to ``min_ss/max_ss`` here and
  removed again by :func:`write_geom`.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from braggflow.errors import InputError

_log = logging.getLogger(__name__)

# unit -> factor to the quantity's base unit (metres, eV, V)
_UNITS = {
    "m": 1.0,
    "mm": 1e-3,
    "um": 1e-6,
    "A": 1e-10,
    "eV": 1.0,
    "keV": 1e3,
    "V": 1.0,
    "kV": 1e3,
}
HC_EV_A = 12398.419843320026  # h c in eV Angstrom: E[eV] = HC_EV_A / lambda[A]

# Global keys that are not panel properties (everything else global is a panel default).
_NON_PANEL = {
    "photon_energy",
    "wavelength",
    "electron_voltage",
    "bandwidth",
    "peak_list",
    "peak_list_type",
    "detector_shift_x",
    "detector_shift_y",
    "photon_energy_bandwidth",
    "photon_energy_scale",
}
_NON_PANEL_PREFIX = ("rigid_group", "group_")
_PANEL_KEYS_INT = ("min_fs", "max_fs", "min_ss", "max_ss")
_KNOWN = set(_PANEL_KEYS_INT) | {
    "corner_x",
    "corner_y",
    "fs",
    "ss",
    "res",
    "clen",
    "coffset",
    "adu_per_photon",
    "adu_per_eV",
    "max_adu",
    "data",
}
_DIM = re.compile(r"dim\d+")


@dataclass
class Panel:
    """One rectangular panel of the raw slab and its position in the lab frame.

    ``min_ss/max_ss`` are 2-D slab coordinates (``ss_offset`` included for stacked layouts).
    ``clen`` is metres, or a header location whose values are in ``clen_unit`` (default mm).
    ``extra`` holds the other panel properties verbatim (``no_index``, ``mask``, ...).
    """

    name: str
    min_fs: int
    max_fs: int
    min_ss: int
    max_ss: int
    corner_x: float
    corner_y: float
    fs: tuple[float, float, float] = (1.0, 0.0, 0.0)
    ss: tuple[float, float, float] = (0.0, 1.0, 0.0)
    res_px_per_m: float | None = None
    clen: float | str | None = None
    coffset_m: float = 0.0
    adu_per_photon: float | None = None
    adu_per_ev: float | None = None
    max_adu: float | None = None
    data: str | None = None
    dim: dict[int, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    ss_offset: int = 0
    clen_unit: str | None = None

    @property
    def width(self) -> int:
        return self.max_fs - self.min_fs + 1

    @property
    def height(self) -> int:
        return self.max_ss - self.min_ss + 1

    @property
    def no_index(self) -> bool:
        return self.extra.get("no_index", "0").strip().lower() in ("1", "true")

    def lab_xy_px(self, fs: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lab x, y (pixels) of slab coordinates measured from the panel's outer corner.

        The centre of raw pixel (fs, ss) is ``lab_xy_px(fs + 0.5, ss + 0.5)``.
        """
        dfs = np.asarray(fs, dtype=float) - self.min_fs
        dss = np.asarray(ss, dtype=float) - self.min_ss
        x = self.corner_x + dfs * self.fs[0] + dss * self.ss[0]
        y = self.corner_y + dfs * self.fs[1] + dss * self.ss[1]
        return x, y

    def contains(self, fs: float, ss: float) -> bool:
        return self.min_fs <= fs <= self.max_fs and self.min_ss <= ss <= self.max_ss

    def clen_m(self, header_value: float | None = None) -> float | None:
        """Camera length in metres: the number, or a header value converted from ``clen_unit``."""
        if isinstance(self.clen, int | float):
            return float(self.clen)
        if header_value is None:
            return None
        return float(header_value) * _UNITS[self.clen_unit or "mm"]


@dataclass
class BadRegion:
    """A ``bad_*`` block: a rectangle in lab x/y pixels, or in slab fs/ss of one panel (or all)."""

    name: str
    panel: str | None = None
    min_fs: int | None = None
    max_fs: int | None = None
    min_ss: int | None = None
    max_ss: int | None = None
    min_x: float | None = None
    max_x: float | None = None
    min_y: float | None = None
    max_y: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class MaskSpec:
    """One bad-pixel mask: where it is (``data`` in ``file`` or the frame file) and its bits."""

    data: str
    file: str | None = None
    goodbits: int = 0
    badbits: int = 0

    def good(self, mask: np.ndarray) -> np.ndarray:
        """CrystFEL rule: good iff all ``goodbits`` are set and no ``badbits`` is set."""
        m = np.asarray(mask).astype(np.int64)
        return ((m & self.goodbits) == self.goodbits) & ((m & self.badbits) == 0)


@dataclass
class Geometry:
    """A whole detector: panels plus the global keys (photon energy, data/mask paths, groups ...).

    ``globals`` maps every global key to its last value in the file (ordered as read).
    """

    panels: list[Panel]
    photon_energy: float | str | None = None
    bad_regions: list[BadRegion] = field(default_factory=list)
    globals: dict[str, str] = field(default_factory=dict)
    photon_energy_unit: str | None = None

    @property
    def slab_shape(self) -> tuple[int, int]:
        """(n_ss, n_fs) of the raw slab that holds every panel."""
        return (
            max(p.max_ss for p in self.panels) + 1,
            max(p.max_fs for p in self.panels) + 1,
        )

    def panel(self, name: str) -> Panel:
        for p in self.panels:
            if p.name == name:
                return p
        raise KeyError(name)

    def panel_of(self, fs: float, ss: float) -> Panel | None:
        for p in self.panels:
            if p.contains(round(fs), round(ss)):
                return p
        return None

    def panel_index_map(self) -> np.ndarray:
        """Raw-slab array of panel indices (-1 where no panel covers a pixel)."""
        out = np.full(self.slab_shape, -1, dtype=np.int32)
        for i, p in enumerate(self.panels):
            out[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1] = i
        return out

    def lab_xy_px(self) -> tuple[np.ndarray, np.ndarray]:
        """Lab x, y (pixels, beam at 0,0) of every raw-slab pixel centre; NaN outside panels."""
        xs = np.full(self.slab_shape, np.nan)
        ys = np.full(self.slab_shape, np.nan)
        for p in self.panels:
            ss, fs = np.mgrid[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1]
            # pixel centre = corner + 0.5 along both vectors (CrystFEL: corner is the pixel edge)
            x, y = p.lab_xy_px(fs + 0.5, ss + 0.5)
            xs[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1] = x
            ys[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1] = y
        return xs, ys

    def bad_pixel_mask(self) -> np.ndarray:
        """Raw-slab bool array, True where a ``bad_*`` region or a ``no_index`` panel excludes a pixel."""
        bad = np.zeros(self.slab_shape, dtype=bool)
        pidx = self.panel_index_map()
        xy = None
        for i, p in enumerate(self.panels):
            if p.no_index:
                bad |= pidx == i
        for region in self.bad_regions:
            if region.min_x is not None or region.max_x is not None or region.min_y is not None:
                if xy is None:
                    xy = self.lab_xy_px()
                xs, ys = xy
                lo_x = -np.inf if region.min_x is None else region.min_x
                hi_x = np.inf if region.max_x is None else region.max_x
                lo_y = -np.inf if region.min_y is None else region.min_y
                hi_y = np.inf if region.max_y is None else region.max_y
                bad |= (xs >= lo_x) & (xs <= hi_x) & (ys >= lo_y) & (ys <= hi_y)
                continue
            panels = [self.panel(region.panel)] if region.panel else self.panels
            for p in panels:
                lo_fs = p.min_fs if region.min_fs is None else max(region.min_fs, 0)
                hi_fs = p.max_fs if region.max_fs is None else region.max_fs
                lo_ss = p.min_ss if region.min_ss is None else max(region.min_ss, 0)
                hi_ss = p.max_ss if region.max_ss is None else region.max_ss
                # bad_* fs/ss are file (slab) coordinates, clipped to the panel
                sl = (slice(lo_ss, hi_ss + 1), slice(lo_fs, hi_fs + 1))
                bad[sl] |= pidx[sl] == self.panels.index(p)
        return bad

    @property
    def masks(self) -> list[MaskSpec]:
        """Bad-pixel masks declared globally (``mask``... synonyms of ``mask0_*``), ordered by N."""
        g = self.globals
        specs = {}
        for n in range(8):
            pre = f"mask{n}_"
            data = g.get(f"{pre}data", g.get("mask") if n == 0 else None)
            if data is None:
                continue
            file = g.get(f"{pre}file", g.get("mask_file") if n == 0 else None)
            good = g.get(f"{pre}goodbits", g.get("mask_good", "0") if n == 0 else "0")
            bad = g.get(f"{pre}badbits", g.get("mask_bad", "0") if n == 0 else "0")
            specs[n] = MaskSpec(data=data, file=file, goodbits=_int(good), badbits=_int(bad))
        return [specs[n] for n in sorted(specs)]

    @property
    def groups(self) -> dict[str, list[str]]:
        """``group_X`` and ``rigid_group_X`` / ``rigid_group_collection_X`` lines: name -> members."""
        out = {}
        for key, value in self.globals.items():
            if key.startswith(_NON_PANEL_PREFIX):
                out[key] = [m.strip() for m in value.split(",") if m.strip()]
        return out

    def photon_energy_ev(self, header_value: float | None = None) -> float | None:
        """Photon energy in eV from ``photon_energy`` or ``wavelength`` (number or header value)."""
        if isinstance(self.photon_energy, int | float):
            return float(self.photon_energy)
        if self.photon_energy is not None:
            return (
                None
                if header_value is None
                else header_value * _UNITS[self.photon_energy_unit or "eV"]
            )
        if "wavelength" in self.globals:
            value, unit = parse_quantity(self.globals["wavelength"])
            if isinstance(value, str):
                value = header_value
            if value is None:
                return None
            return HC_EV_A / (value * _UNITS[unit or "m"] * 1e10)
        return None

    def check_data_shape(self, shape: tuple[int, ...], where: str | Path) -> None:
        """One-line :class:`InputError` unless a frame of ``shape`` (ss, fs) holds every panel."""
        need = self.slab_shape
        if len(shape) < 2 or shape[-2] < need[0] or shape[-1] < need[1]:
            raise InputError(
                where,
                f"frames are {tuple(shape[-2:])} (ss, fs) but the geometry needs at least {need}",
                "use the geometry file that belongs to this detector and data layout",
            )


def _int(text: str) -> int:
    return int(str(text).strip(), 0)


def parse_quantity(text: str) -> tuple[float | str, str | None]:
    """``95.3 mm`` -> (95.3, 'mm'); ``/LCLS/x mm`` -> ('/LCLS/x', 'mm'); ``42`` -> (42.0, None)."""
    parts = text.strip().split()
    unit = None
    if len(parts) >= 2 and parts[-1] in _UNITS:
        unit = parts[-1]
        parts = parts[:-1]
    body = " ".join(parts)
    m = re.fullmatch(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]+)?", body)
    if m:
        if m.group(2):
            if unit is not None or m.group(2) not in _UNITS:
                raise ValueError(f"unknown unit {m.group(2)!r}")
            unit = m.group(2)
        return float(m.group(1)), unit
    return body, unit


def _parse_value(text: str) -> float | str:
    """A number in base units (``95.3 mm`` -> 0.0953, ``4.57 keV`` -> 4570), or a location string."""
    value, unit = parse_quantity(text)
    if isinstance(value, str):
        return value
    return value * (_UNITS[unit] if unit else 1.0)


def _parse_vector(text: str) -> tuple[float, float, float]:
    """``+0.0006x +1y`` -> (0.0006, 1, 0)."""
    vec = {"x": 0.0, "y": 0.0, "z": 0.0}
    compact = text.replace(" ", "")
    terms = re.findall(r"([+-]?(?:\d+\.?\d*|\.\d+)?(?:[eE][-+]?\d+)?)([xyz])", compact)
    if not terms or "".join(c + a for c, a in terms) != compact:
        raise ValueError(f"cannot parse vector {text!r}")
    for coeff, axis in terms:
        if coeff in ("", "+"):
            value = 1.0
        elif coeff == "-":
            value = -1.0
        else:
            value = float(coeff)
        vec[axis] += value
    return (vec["x"], vec["y"], vec["z"])


def _is_panel_default(key: str) -> bool:
    return key not in _NON_PANEL and not key.startswith(_NON_PANEL_PREFIX)


def read_geom(path: str | Path) -> Geometry:
    """Parse a CrystFEL geometry file; any problem is a one-line :class:`InputError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path,
            "geometry file not found",
            "set 'geometry' in the config to an existing .geom file",
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            path, f"unreadable geometry file ({exc})", "give a CrystFEL .geom text file"
        ) from None
    defaults: dict[str, str] = {}
    panel_lines: dict[str, dict[str, str]] = {}
    first_defaults: dict[str, dict[str, str]] = {}
    bad_lines: dict[str, dict[str, str]] = {}
    globals_: dict[str, str] = {}
    line_of: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise InputError(
                f"{path}:{lineno}",
                f"not a 'key = value' line: {line!r}",
                "fix or comment out the line",
            )
        key, value = (s.strip() for s in line.split("=", 1))
        if "/" in key and not key.startswith("/"):
            owner, sub = (s.strip() for s in key.split("/", 1))
            if owner.startswith("bad"):
                bad_lines.setdefault(owner, {})[sub] = value
            else:
                if owner not in panel_lines:
                    # CrystFEL: globals apply to panels *first mentioned* after them
                    first_defaults[owner] = dict(defaults)
                    panel_lines[owner] = {}
                panel_lines[owner][sub] = value
            line_of[(owner, sub)] = lineno
        else:
            globals_.pop(key, None)  # keep the order of last definition
            globals_[key] = value
            if _is_panel_default(key):
                defaults[key] = value
    panels = [
        _build_panel(name, {**first_defaults[name], **keys}, path, line_of)
        for name, keys in panel_lines.items()
    ]
    if not panels:
        raise InputError(path, "no panels defined", "add at least one 'panel/min_fs = ...' block")
    _stack_multidim(panels, path)
    _check_overlaps(panels, path)
    bad = [_build_bad(name, keys, panels, path) for name, keys in bad_lines.items()]
    energy, energy_unit = None, None
    if "photon_energy" in globals_:
        try:
            energy, energy_unit = parse_quantity(globals_["photon_energy"])
        except ValueError as exc:
            raise InputError(path, f"photon_energy: {exc}", "use eV or keV") from None
        if isinstance(energy, float):
            energy, energy_unit = energy * _UNITS[energy_unit or "eV"], None
    return Geometry(
        panels=panels,
        photon_energy=energy,
        bad_regions=bad,
        globals=globals_,
        photon_energy_unit=energy_unit,
    )


def _build_panel(name: str, keys: dict[str, str], path: Path, line_of: dict) -> Panel:
    def where(key: str) -> str:
        n = line_of.get((name, key))
        return f"{path}:{n}" if n else str(path)

    def number(key: str) -> float | None:
        if key not in keys:
            return None
        try:
            value = _parse_value(keys[key])
        except ValueError as exc:
            raise InputError(
                where(key), f"{name}/{key}: {exc}", "use a number with m, mm, eV or keV"
            ) from None
        if isinstance(value, str):
            raise InputError(
                where(key), f"{name}/{key} = {keys[key]!r} is not a number", "give a number"
            )
        return value

    kwargs: dict = {}
    for key in _PANEL_KEYS_INT:
        value = number(key)
        if value is None:
            raise InputError(
                path,
                f"panel {name!r} lacks {key}",
                "give every panel min_fs, max_fs, min_ss, max_ss",
            )
        kwargs[key] = int(value)
    if kwargs["max_fs"] < kwargs["min_fs"] or kwargs["max_ss"] < kwargs["min_ss"]:
        raise InputError(
            path, f"panel {name!r} has max < min in fs or ss", "fix its min_/max_ lines"
        )
    try:
        fs = _parse_vector(keys.get("fs", "x"))
        ss = _parse_vector(keys.get("ss", "y"))
    except ValueError as exc:
        raise InputError(
            where("fs"), f"panel {name!r}: {exc}", "write vectors like '+0.0048x +0.9999y'"
        ) from None
    clen, clen_unit = None, None
    if "clen" in keys:
        try:
            raw, unit = parse_quantity(keys["clen"])
        except ValueError as exc:
            raise InputError(where("clen"), f"clen: {exc}", "use m or mm") from None
        if isinstance(raw, str):
            clen, clen_unit = raw, unit  # header location; CrystFEL's default unit there is mm
        else:
            clen = raw * _UNITS[unit or "m"]
    dims = {}
    for k, v in keys.items():
        if _DIM.fullmatch(k):
            dims[int(k[3:])] = v.strip()
    panel = Panel(
        name=name,
        corner_x=number("corner_x") or 0.0,
        corner_y=number("corner_y") or 0.0,
        fs=fs,
        ss=ss,
        res_px_per_m=number("res"),
        clen=clen,
        clen_unit=clen_unit,
        coffset_m=number("coffset") or 0.0,
        adu_per_photon=number("adu_per_photon"),
        adu_per_ev=number("adu_per_eV"),
        max_adu=number("max_adu"),
        data=keys.get("data"),
        dim=dims,
        **kwargs,
    )
    panel.extra = {k: v for k, v in keys.items() if k not in _KNOWN and not _DIM.fullmatch(k)}
    return panel


def _fixed_dims(p: Panel) -> list[int]:
    """The panel's fixed-index dimensions (``dimN = <number>``), slowest first."""
    out = []
    for axis in sorted(p.dim):
        value = p.dim[axis]
        if value not in ("%", "ss", "fs"):
            try:
                out.append(int(value))
            except ValueError:
                pass
    return out


def _stack_multidim(panels: list[Panel], path: Path) -> None:
    """Stack fixed-index dimensions along slow scan (C-order reshape of the data block)."""
    fixed = [_fixed_dims(p) for p in panels]
    if not any(fixed):
        return
    depth = max(len(f) for f in fixed)
    if any(len(f) != depth for f in fixed):
        raise InputError(
            path,
            "panels differ in their number of fixed dimensions",
            "give every panel the same dim lines",
        )
    sizes = [max(f[k] for f in fixed) + 1 for k in range(depth)]
    n_ss = max(p.max_ss for p in panels) + 1
    for p, f in zip(panels, fixed, strict=True):
        flat = int(np.ravel_multi_index(tuple(f), tuple(sizes)))
        p.ss_offset = flat * n_ss
        p.min_ss += p.ss_offset
        p.max_ss += p.ss_offset


def _check_overlaps(panels: list[Panel], path: Path) -> None:
    area = sum(p.width * p.height for p in panels)
    n_ss = max(p.max_ss for p in panels) + 1
    n_fs = max(p.max_fs for p in panels) + 1
    if area > 50_000_000:
        return
    cover = np.zeros((n_ss, n_fs), dtype=np.uint8)
    for p in panels:
        block = cover[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1]
        if block.any():
            # CrystFEL accepts this; pixels then belong to the panel listed last
            _log.warning(
                "%s: panel %r overlaps another panel in the data (fix its min_/max_ fs/ss)",
                path,
                p.name,
            )
        block[...] = 1


def _build_bad(name: str, keys: dict[str, str], panels: list[Panel], path: Path) -> BadRegion:
    def num(key: str, cast=float):
        if key not in keys:
            return None
        try:
            return cast(float(keys[key]))
        except ValueError:
            raise InputError(
                path, f"{name}/{key} = {keys[key]!r} is not a number", "give a number"
            ) from None

    region = BadRegion(
        name=name,
        panel=keys.get("panel"),
        min_fs=num("min_fs", int),
        max_fs=num("max_fs", int),
        min_ss=num("min_ss", int),
        max_ss=num("max_ss", int),
        min_x=num("min_x"),
        max_x=num("max_x"),
        min_y=num("min_y"),
        max_y=num("max_y"),
        extra={
            k: v
            for k, v in keys.items()
            if k
            not in {
                "panel",
                "min_fs",
                "max_fs",
                "min_ss",
                "max_ss",
                "min_x",
                "max_x",
                "min_y",
                "max_y",
            }
        },
    )
    has_xy = any(v is not None for v in (region.min_x, region.max_x, region.min_y, region.max_y))
    has_fs = any(
        v is not None for v in (region.min_fs, region.max_fs, region.min_ss, region.max_ss)
    )
    if has_xy and has_fs:
        raise InputError(
            path, f"bad region {name!r} mixes x/y and fs/ss limits", "use one or the other"
        )
    if region.panel is not None:
        names = {p.name: p for p in panels}
        if region.panel not in names:
            raise InputError(
                path,
                f"bad region {name!r} names unknown panel {region.panel!r}",
                "fix its panel line",
            )
        off = names[region.panel].ss_offset
        if off:
            region.min_ss = None if region.min_ss is None else region.min_ss + off
            region.max_ss = None if region.max_ss is None else region.max_ss + off
    return region


def _format_vector(vec: tuple[float, float, float]) -> str:
    parts = [f"{c:+.12g}{axis}" for c, axis in zip(vec, "xyz", strict=True) if c != 0.0]
    return " ".join(parts) if parts else "+0x"


def _format_value(value: float | str) -> str:
    return value if isinstance(value, str) else repr(float(value))


def _panel_props(p: Panel) -> dict[str, str]:
    """Every property of a panel as geometry-file text (what a panel line would say)."""
    props: dict[str, str] = {}
    if p.res_px_per_m is not None:
        props["res"] = repr(p.res_px_per_m)
    if p.clen is not None:
        if isinstance(p.clen, str):
            props["clen"] = p.clen + (f" {p.clen_unit}" if p.clen_unit else "")
        else:
            props["clen"] = f"{p.clen!r} m"
    if p.coffset_m:
        props["coffset"] = repr(p.coffset_m)
    for key, attr in (
        ("adu_per_photon", "adu_per_photon"),
        ("adu_per_eV", "adu_per_ev"),
        ("max_adu", "max_adu"),
    ):
        value = getattr(p, attr)
        if value is not None:
            props[key] = repr(value)
    if p.data is not None:
        props["data"] = p.data
    for axis in sorted(p.dim):
        props[f"dim{axis}"] = p.dim[axis]
    props.update(p.extra)
    return props


def write_geom(geom: Geometry, path: str | Path, header: str = "") -> None:
    """Write a geometry file that CrystFEL (and :func:`read_geom`) reads back identically.

    Non-panel globals first, then panel properties shared by every panel as globals, then each
    panel's own lines, then bad regions.
    """
    from braggflow.atomic import atomic_write_text

    atomic_write_text(path, geom_text(geom, header))


def geom_text(geom: Geometry, header: str = "") -> str:
    """The text :func:`write_geom` writes."""
    lines = [f"; {h}" for h in header.splitlines()] if header else []
    for key, value in geom.globals.items():
        if not _is_panel_default(key) and key != "photon_energy":
            lines.append(f"{key} = {value}")
    if geom.photon_energy is not None:
        if isinstance(geom.photon_energy, str):
            unit = f" {geom.photon_energy_unit}" if geom.photon_energy_unit else ""
            lines.append(f"photon_energy = {geom.photon_energy}{unit}")
        else:
            lines.append(f"photon_energy = {_format_value(geom.photon_energy)} eV")
    props = [_panel_props(p) for p in geom.panels]
    shared = {k: v for k, v in props[0].items() if all(pp.get(k) == v for pp in props[1:])}
    for key, value in shared.items():
        lines.append(f"{key} = {value}")
    lines.append("")
    for p, pp in zip(geom.panels, props, strict=True):
        lines.append(f"{p.name}/min_fs = {p.min_fs}")
        lines.append(f"{p.name}/max_fs = {p.max_fs}")
        lines.append(f"{p.name}/min_ss = {p.min_ss - p.ss_offset}")
        lines.append(f"{p.name}/max_ss = {p.max_ss - p.ss_offset}")
        lines.append(f"{p.name}/corner_x = {p.corner_x!r}")
        lines.append(f"{p.name}/corner_y = {p.corner_y!r}")
        lines.append(f"{p.name}/fs = {_format_vector(p.fs)}")
        lines.append(f"{p.name}/ss = {_format_vector(p.ss)}")
        for key, value in pp.items():
            if key not in shared:
                lines.append(f"{p.name}/{key} = {value}")
        lines.append("")
    offsets = {p.name: p.ss_offset for p in geom.panels}
    for b in geom.bad_regions:
        off = offsets.get(b.panel or "", 0)
        for key in (
            "panel",
            "min_fs",
            "max_fs",
            "min_ss",
            "max_ss",
            "min_x",
            "max_x",
            "min_y",
            "max_y",
        ):
            value = getattr(b, key)
            if value is None:
                continue
            if key in ("min_ss", "max_ss"):
                value -= off
            lines.append(
                f"{b.name}/{key} = {value!r}"
                if isinstance(value, float)
                else f"{b.name}/{key} = {value}"
            )
        for key, value in b.extra.items():
            lines.append(f"{b.name}/{key} = {value}")
        lines.append("")
    return "\n".join(lines) + "\n"


def with_panels(geom: Geometry, panels: list[Panel]) -> Geometry:
    return replace(geom, panels=panels)


def two_theta_rad(geom: Geometry, clen_m: float) -> np.ndarray:
    """Scattering angle of every raw-slab pixel centre for a given camera length."""
    xs, ys = geom.lab_xy_px()
    res = np.full(geom.slab_shape, np.nan)
    for p in geom.panels:
        res[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1] = p.res_px_per_m or math.nan
    r_m = np.hypot(xs, ys) / res
    return np.arctan2(r_m, clen_m)
