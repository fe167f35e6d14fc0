"""CrystFEL detector geometry (``.geom``): panels, reading, writing, pixel positions.

Conventions follow CrystFEL's geometry(5) manual: a panel covers the inclusive raw "slab"
rectangle ``min_fs..max_fs`` x ``min_ss..max_ss``; the lab position of raw pixel (fs, ss), in
pixels, is ``corner + (fs - min_fs) * fs_vec + (ss - min_ss) * ss_vec``; ``res`` is pixels per
metre; the panel sits at z = clen + coffset (metres).  ``clen`` and ``photon_energy`` may be
numbers or HDF5 paths resolved per frame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from braggflow.errors import InputError

_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "eV": 1.0, "keV": 1e3}


@dataclass
class Panel:
    """One rectangular panel of the raw slab and its position in the lab frame."""

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

    @property
    def width(self) -> int:
        return self.max_fs - self.min_fs + 1

    @property
    def height(self) -> int:
        return self.max_ss - self.min_ss + 1

    def lab_xy_px(self, fs: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lab x, y in pixels of raw slab coordinates (pixel centres at integers + 0.5 offsets are the caller's)."""
        dfs = np.asarray(fs, dtype=float) - self.min_fs
        dss = np.asarray(ss, dtype=float) - self.min_ss
        x = self.corner_x + dfs * self.fs[0] + dss * self.ss[0]
        y = self.corner_y + dfs * self.fs[1] + dss * self.ss[1]
        return x, y

    def contains(self, fs: float, ss: float) -> bool:
        return self.min_fs <= fs <= self.max_fs and self.min_ss <= ss <= self.max_ss


@dataclass
class BadRegion:
    """A ``bad_*`` block: a rectangle in lab x/y pixels, or in raw fs/ss of one panel."""

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


@dataclass
class Geometry:
    """A whole detector: panels plus the global keys (photon energy, data/mask paths, ...)."""

    panels: list[Panel]
    photon_energy: float | str | None = None
    bad_regions: list[BadRegion] = field(default_factory=list)
    globals: dict[str, str] = field(default_factory=dict)

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
        """Raw-slab boolean array, True where a ``bad_*`` region excludes the pixel."""
        bad = np.zeros(self.slab_shape, dtype=bool)
        pidx = self.panel_index_map()
        xs, ys = self.lab_xy_px()
        for region in self.bad_regions:
            if region.min_x is not None:
                sel = (
                    (xs >= region.min_x)
                    & (xs <= region.max_x)
                    & (ys >= region.min_y)
                    & (ys <= region.max_y)
                )
                bad |= sel
            else:
                panels = [self.panel(region.panel)] if region.panel else self.panels
                for p in panels:
                    lo_fs = p.min_fs if region.min_fs is None else region.min_fs
                    hi_fs = p.max_fs if region.max_fs is None else region.max_fs
                    lo_ss = p.min_ss if region.min_ss is None else region.min_ss
                    hi_ss = p.max_ss if region.max_ss is None else region.max_ss
                    # bad_* fs/ss are file coordinates (absolute in the slab)
                    sl = (slice(lo_ss, hi_ss + 1), slice(lo_fs, hi_fs + 1))
                    bad[sl] |= pidx[sl] == self.panels.index(p)
        return bad


def _parse_value(text: str) -> float | str:
    """A number with an optional unit (``95.3 mm``, ``4570 eV``), or a string such as an HDF5 path."""
    text = text.strip()
    m = re.fullmatch(r"([-+0-9.eE]+)\s*([a-zA-Z]+)?", text)
    if m:
        try:
            value = float(m.group(1))
        except ValueError:
            return text
        unit = m.group(2)
        if unit is None:
            return value
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        return value * _UNITS[unit]
    return text


def _parse_vector(text: str) -> tuple[float, float, float]:
    """``+0.0006x +1y`` -> (0.0006, 1, 0)."""
    vec = {"x": 0.0, "y": 0.0, "z": 0.0}
    compact = text.replace(" ", "")
    for coeff, axis in re.findall(r"([+-]?[0-9.eE]*)([xyz])", compact):
        if coeff in ("", "+"):
            value = 1.0
        elif coeff == "-":
            value = -1.0
        else:
            value = float(coeff)
        vec[axis] += value
    return (vec["x"], vec["y"], vec["z"])


_PANEL_KEYS_INT = {"min_fs", "max_fs", "min_ss", "max_ss"}


def read_geom(path: str | Path) -> Geometry:
    """Parse a CrystFEL geometry file (global keys, ``panel/key`` lines, ``bad_*`` regions)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "geometry file not found", "set 'geometry' in the config to an existing .geom file")
    defaults: dict[str, str] = {}
    panel_lines: dict[str, dict[str, str]] = {}
    bad_lines: dict[str, dict[str, str]] = {}
    globals_: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if "/" in key and not key.startswith("/"):
            owner, sub = key.split("/", 1)
            target = bad_lines if owner.startswith("bad") else panel_lines
            target.setdefault(owner, {})[sub] = value
        else:
            # a global key sets the default for panels defined after it (CrystFEL semantics)
            globals_[key] = value
            defaults[key] = value
            for block in panel_lines.values():
                block.setdefault("_after", "1")
            _ = lineno
    panels = [_build_panel(name, {**defaults, **{k: v for k, v in keys.items() if k != "_after"}}, path)
              for name, keys in panel_lines.items()]
    if not panels:
        raise InputError(path, "no panels defined", "add at least one 'panel/min_fs = ...' block")
    bad = [_build_bad(name, keys) for name, keys in bad_lines.items()]
    energy = globals_.get("photon_energy")
    return Geometry(
        panels=panels,
        photon_energy=_parse_value(energy) if energy is not None else None,
        bad_regions=bad,
        globals=globals_,
    )


def _build_panel(name: str, keys: dict[str, str], path: Path) -> Panel:
    try:
        kwargs: dict = {k: int(float(keys[k])) for k in _PANEL_KEYS_INT}
    except KeyError as exc:
        raise InputError(path, f"panel {name!r} lacks {exc.args[0]}", "give every panel min_fs, max_fs, min_ss, max_ss") from None
    dims = {int(k[3:]): v for k, v in keys.items() if re.fullmatch(r"dim\d+", k)}
    clen = keys.get("clen")
    res = keys.get("res")
    panel = Panel(
        name=name,
        corner_x=float(keys.get("corner_x", 0.0)),
        corner_y=float(keys.get("corner_y", 0.0)),
        fs=_parse_vector(keys.get("fs", "x")),
        ss=_parse_vector(keys.get("ss", "y")),
        res_px_per_m=float(res) if res is not None else None,
        clen=_parse_value(clen) if clen is not None else None,
        coffset_m=float(_parse_value(keys.get("coffset", "0"))),
        adu_per_photon=float(keys["adu_per_photon"]) if "adu_per_photon" in keys else None,
        adu_per_ev=float(keys["adu_per_eV"]) if "adu_per_eV" in keys else None,
        max_adu=float(keys["max_adu"]) if "max_adu" in keys else None,
        data=keys.get("data"),
        dim=dims,
        **kwargs,
    )
    known = _PANEL_KEYS_INT | {"corner_x", "corner_y", "fs", "ss", "res", "clen", "coffset",
                               "adu_per_photon", "adu_per_eV", "max_adu", "data"}
    panel.extra = {k: v for k, v in keys.items() if k not in known and not re.fullmatch(r"dim\d+", k)}
    return panel


def _build_bad(name: str, keys: dict[str, str]) -> BadRegion:
    def num(key: str, cast=float):
        return cast(float(keys[key])) if key in keys else None

    return BadRegion(
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
    )


def _format_vector(vec: tuple[float, float, float]) -> str:
    parts = [f"{c:+.6f}{axis}" for c, axis in zip(vec, "xyz", strict=True) if c != 0.0]
    return " ".join(parts) if parts else "+0.000000x"


def _format_value(value: float | str) -> str:
    return value if isinstance(value, str) else repr(float(value))


def write_geom(geom: Geometry, path: str | Path, header: str = "") -> None:
    """Write a geometry file that CrystFEL (and :func:`read_geom`) reads back identically."""
    from braggflow.atomic import atomic_write_text

    lines = [f"; {h}" for h in header.splitlines()] if header else []
    for key, value in geom.globals.items():
        if key != "photon_energy":
            lines.append(f"{key} = {value}")
    if geom.photon_energy is not None:
        unit = "" if isinstance(geom.photon_energy, str) else " eV"
        lines.append(f"photon_energy = {_format_value(geom.photon_energy)}{unit}")
    lines.append("")
    for p in geom.panels:
        for key in ("min_fs", "max_fs", "min_ss", "max_ss"):
            lines.append(f"{p.name}/{key} = {getattr(p, key)}")
        lines.append(f"{p.name}/corner_x = {p.corner_x!r}")
        lines.append(f"{p.name}/corner_y = {p.corner_y!r}")
        lines.append(f"{p.name}/fs = {_format_vector(p.fs)}")
        lines.append(f"{p.name}/ss = {_format_vector(p.ss)}")
        if p.res_px_per_m is not None:
            lines.append(f"{p.name}/res = {p.res_px_per_m!r}")
        if p.clen is not None:
            unit = "" if isinstance(p.clen, str) else " m"
            lines.append(f"{p.name}/clen = {_format_value(p.clen)}{unit}")
        if p.coffset_m:
            lines.append(f"{p.name}/coffset = {p.coffset_m!r}")
        for key, attr in (("adu_per_photon", "adu_per_photon"), ("adu_per_eV", "adu_per_ev"), ("max_adu", "max_adu")):
            value = getattr(p, attr)
            if value is not None:
                lines.append(f"{p.name}/{key} = {value!r}")
        if p.data is not None:
            lines.append(f"{p.name}/data = {p.data}")
        for axis in sorted(p.dim):
            lines.append(f"{p.name}/dim{axis} = {p.dim[axis]}")
        for key, value in p.extra.items():
            lines.append(f"{p.name}/{key} = {value}")
        lines.append("")
    for b in geom.bad_regions:
        for key in ("panel", "min_fs", "max_fs", "min_ss", "max_ss", "min_x", "max_x", "min_y", "max_y"):
            value = getattr(b, key)
            if value is not None:
                lines.append(f"{b.name}/{key} = {value}")
        lines.append("")
    atomic_write_text(path, "\n".join(lines) + "\n")


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
