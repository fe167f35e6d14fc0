"""The simulated detector: its CrystFEL geometry file and its per-pixel model.

The default is a small ePix10ka-like detector: four modules of two ASICs each (120 ss x 60 fs
pixels of 100 um by default), one module per quadrant in a pinwheel around the beam with a
gap around the direct beam, stored like the real ePix10k2M files as a raw slab with the
modules stacked along the slow-scan axis (module m = rows m*120 .. m*120+119, ASIC a = columns
a*60 .. a*60+59). Any other CrystFEL .geom can be simulated instead (``detector.geometry``).

:class:`DetectorModel` is everything the renderer needs per pixel, derived from a geometry
(read with :func:`braggflow.formats.geometry.read_geom`) and the seed: lab positions, scattering
directions, polarisation x solid angle, the bad-pixel mask with dead and hot pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.frames import CLEN_PATH, DATA_PATH, MASK_BITS, MASK_PATH, PHOTON_ENERGY_PATH
from braggflow.formats.geometry import Geometry, read_geom
from braggflow.simulate.diffraction import (
    FWHM_TO_SIGMA,
    PanelPlanes,
    polarisation_factor,
    wavelength_A,
)

TAG_DETECTOR = 0xDE7EC7


def _rot90(vec: tuple[float, float], quarter_turns: int) -> tuple[float, float]:
    x, y = vec
    for _ in range(quarter_turns % 4):
        x, y = -y, x
    return x, y


def _fmt_vec(vec: tuple[float, float]) -> str:
    return f"{vec[0]:+.6f}x {vec[1]:+.6f}y"


def default_geometry_text(det: dict[str, Any], bandwidth_fwhm: float = 0.0) -> str:
    """The embedded detector as CrystFEL geometry text (see the module docstring)."""
    h, w = int(det["asic_ss"]), int(det["asic_fs"])
    gap, beam_gap = float(det["asic_gap_px"]), float(det["beam_gap_px"]) / 2.0
    res = 1e6 / float(det["pixel_size_um"])
    lines = [
        "; braggflow embedded detector: ePix10ka-like, 4 modules x 2 ASICs around the beam",
        f"; ASIC {h} (ss) x {w} (fs) pixels of {det['pixel_size_um']} um; raw slab {4 * h} x {2 * w}:",
        f"; module m = rows m*{h}..m*{h}+{h - 1}, ASIC a = columns a*{w}..a*{w}+{w - 1}.",
        "; clen and photon_energy are read per frame from the CXI file (clen in mm).",
        f"clen = {CLEN_PATH}",
        "coffset = 0.0",
        f"photon_energy = {PHOTON_ENERGY_PATH}",
        f"bandwidth = {bandwidth_fwhm * FWHM_TO_SIGMA:.6g}",
        f"adu_per_photon = {float(det['adu_per_photon']):g}",
        f"max_adu = {float(det['max_adu']):g}",
        f"res = {res:g}",
        "",
        f"data = {DATA_PATH}",
        "dim0 = %",
        "dim1 = ss",
        "dim2 = fs",
        "",
        f"mask = {MASK_PATH}",
        "mask_good = 0x0000",
        "mask_bad = 0xffff",
        "",
    ]
    names = [[f"m{m}a{a}" for a in range(2)] for m in range(4)]
    lines += [f"group_m{m} = {','.join(names[m])}" for m in range(4)]
    lines += ["group_all = m0,m1,m2,m3", ""]
    for m in range(4):  # module m sits in quadrant m, rotated by m quarter turns (pinwheel)
        fs_vec, ss_vec = _rot90((1.0, 0.0), m), _rot90((0.0, 1.0), m)
        for a in range(2):
            corner = _rot90((beam_gap + a * (w + gap), beam_gap), m)
            name = names[m][a]
            lines += [
                f"{name}/min_fs = {a * w}",
                f"{name}/max_fs = {(a + 1) * w - 1}",
                f"{name}/min_ss = {m * h}",
                f"{name}/max_ss = {(m + 1) * h - 1}",
                f"{name}/fs = {_fmt_vec(fs_vec)}",
                f"{name}/ss = {_fmt_vec(ss_vec)}",
                f"{name}/corner_x = {corner[0]:g}",
                f"{name}/corner_y = {corner[1]:g}",
                "",
            ]
    return "\n".join(lines)


def augmented_geometry_text(path: str | Path, det: dict[str, Any]) -> str:
    """A user's geometry, unchanged, with what simulated CXI files need prepended where absent.

    Adds (only if missing) ``res``, ``clen`` / ``photon_energy`` pointing to the per-frame header
    values, ``data``/``dim*`` and the mask lines; global keys apply to the panels defined later.
    """
    geom = read_geom(path)
    text = Path(path).read_text()
    keys = set(geom.globals)
    add = [
        f"; simulated by braggflow from {Path(path).name}; lines below added where the original lacked them"
    ]
    if any(p.res_px_per_m is None for p in geom.panels):
        add.append(f"res = {1e6 / float(det['pixel_size_um']):g}")
    if all(p.clen is None for p in geom.panels):
        add.append(f"clen = {CLEN_PATH}")
    if geom.photon_energy is None and "wavelength" not in keys:
        add.append(f"photon_energy = {PHOTON_ENERGY_PATH}")
    if all(p.data is None for p in geom.panels):
        add.append(f"data = {DATA_PATH}")
    if all(not p.dim for p in geom.panels):
        add += ["dim0 = %", "dim1 = ss", "dim2 = fs"]
    if "mask" not in keys and "mask0_data" not in keys:
        add += [f"mask = {MASK_PATH}", "mask_good = 0x0000", "mask_bad = 0xffff"]
    if not any(k in keys for k in ("adu_per_photon", "adu_per_eV")) and all(
        p.adu_per_photon is None and p.adu_per_ev is None for p in geom.panels
    ):
        add.append(f"adu_per_photon = {float(det['adu_per_photon']):g}")
    return "\n".join(add) + "\n\n" + text


def detector_geometry_text(det: dict[str, Any], bandwidth_fwhm: float = 0.0) -> str:
    """The geometry the simulator writes: the embedded detector or the configured .geom."""
    if det.get("geometry"):
        return augmented_geometry_text(det["geometry"], det)
    return default_geometry_text(det, bandwidth_fwhm)


@dataclass
class DetectorModel:
    """Per-pixel detector model for one geometry, camera length and seed."""

    geometry: Geometry
    clen_m: float
    planes: PanelPlanes
    panel_index: np.ndarray  # (ss, fs) int, -1 where no panel covers the pixel
    panel_bounds: np.ndarray  # (p, 4): min_fs, max_fs, min_ss, max_ss
    direction: np.ndarray  # (ss, fs, 3) unit scattered direction of each pixel centre
    two_theta: np.ndarray  # (ss, fs) rad (NaN outside panels)
    geometric: np.ndarray  # (ss, fs) polarisation x solid angle relative to the beam axis
    mask: np.ndarray  # (ss, fs) uint16, MASK_BITS
    hot_adu: np.ndarray  # (ss, fs) float32 stuck level of hot pixels (0 elsewhere)
    adu_per_photon: float
    read_noise_adu: float
    max_adu: float

    @property
    def slab_shape(self) -> tuple[int, int]:
        return self.geometry.slab_shape

    @property
    def dead(self) -> np.ndarray:
        return (self.mask & MASK_BITS["dead"]) != 0

    @property
    def no_panel(self) -> np.ndarray:
        return self.panel_index < 0

    @classmethod
    def build(
        cls,
        geom: Geometry,
        det: dict[str, Any],
        clen_m: float,
        photon_energy_ev: float,
        seed: int,
        polarisation: float = 1.0,
    ) -> DetectorModel:
        res_default = 1e6 / float(det["pixel_size_um"])
        for p in geom.panels:
            if p.res_px_per_m is None:
                p.res_px_per_m = res_default
        panel_clen = np.array(
            [p.clen if isinstance(p.clen, int | float) else clen_m for p in geom.panels],
            dtype=float,
        )
        planes = PanelPlanes.from_geometry(geom, panel_clen)
        z_min = float((planes.origin_m[:, 2]).min())
        if z_min <= 0:
            name = geom.panels[int(np.argmin(planes.origin_m[:, 2]))].name
            raise InputError(
                f"panel {name}",
                f"lies behind the sample (clen + coffset = {z_min:.4g} m)",
                "raise simulate.clen_m (the geometry's coffset is added to it)",
            )
        pos = planes.pixel_positions_m(geom)
        dist = np.linalg.norm(pos, axis=-1)
        direction = pos / dist[..., None]
        two_theta = np.arccos(np.clip(direction[..., 2], -1.0, 1.0))
        # relative solid angle of a pixel: (clen / r)^2 * |n . u| (flat panel: cos^3 2theta)
        normals = np.cross(planes.fs_m, planes.ss_m)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        pidx = geom.panel_index_map()
        n_dot_u = np.abs(np.einsum("ijk,ijk->ij", direction, normals[np.clip(pidx, 0, None)]))
        ref = float(np.median(panel_clen + np.array([p.coffset_m for p in geom.panels])))
        geometric = polarisation_factor(direction, polarisation) * n_dot_u * (ref / dist) ** 2
        geometric = np.where(pidx >= 0, geometric, 0.0)
        gain = _panel_value(geom, "adu_per_photon", det["adu_per_photon"], photon_energy_ev)
        mask, hot = _bad_pixels(geom, pidx, det, seed)
        bounds = np.array(
            [[p.min_fs, p.max_fs, p.min_ss, p.max_ss] for p in geom.panels], dtype=np.int64
        )
        return cls(
            geometry=geom,
            clen_m=clen_m,
            planes=planes,
            panel_index=pidx,
            panel_bounds=bounds,
            direction=np.nan_to_num(direction),
            two_theta=two_theta,
            geometric=np.nan_to_num(geometric),
            mask=mask,
            hot_adu=hot,
            adu_per_photon=gain,
            read_noise_adu=float(det["read_noise_adu"]),
            max_adu=float(det["max_adu"]),
        )

    def max_q_inv_A(self, photon_energy_ev: float) -> float:
        """Largest 1/d any pixel records at this photon energy."""
        tt = np.nanmax(self.two_theta)
        return 2.0 * math.sin(tt / 2.0) / wavelength_A(photon_energy_ev)


def _panel_value(geom: Geometry, key: str, default: float, photon_energy_ev: float) -> float:
    """The detector gain: the geometry's adu_per_photon (or adu_per_eV x energy), else the config."""
    p = geom.panels[0]
    if p.adu_per_photon is not None:
        return float(p.adu_per_photon)
    if p.adu_per_ev is not None:
        return float(p.adu_per_ev) * photon_energy_ev
    if key in geom.globals:
        return float(geom.globals[key])
    return float(default)


def _bad_pixels(
    geom: Geometry, pidx: np.ndarray, det: dict[str, Any], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mask bits (dead, hot, panel edges, geometry bad regions, no panel) and hot-pixel levels."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, TAG_DETECTOR]))
    shape = geom.slab_shape
    on_panel = pidx >= 0
    mask = np.zeros(shape, dtype=np.uint16)
    dead = (rng.random(shape) < float(det["dead_fraction"])) & on_panel
    hot = (rng.random(shape) < float(det["hot_fraction"])) & on_panel & ~dead
    hot_adu = np.where(hot, rng.uniform(0.2, 1.0, size=shape) * float(det["max_adu"]), 0.0).astype(
        np.float32
    )
    mask[dead] |= MASK_BITS["dead"]
    mask[hot] |= MASK_BITS["hot"]
    edge = int(det["mask_edge_px"])
    if edge > 0:
        for p in geom.panels:
            block = np.ones((p.height, p.width), dtype=bool)
            block[edge:-edge, edge:-edge] = False
            sub = mask[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1]
            sub[block] |= MASK_BITS["edge"]
    mask[geom.bad_pixel_mask()] |= MASK_BITS["bad_region"]
    mask[~on_panel] |= MASK_BITS["no_panel"]
    return mask, hot_adu


def load_geometry(path: str | Path) -> Geometry:
    """Read a geometry for simulation; refuses what the simulator cannot place (no res, bad panels)."""
    geom = read_geom(path)
    for p in geom.panels:
        if p.width <= 0 or p.height <= 0:
            raise InputError(
                path, f"panel {p.name} has an empty fs/ss range", "fix min_fs/max_fs/min_ss/max_ss"
            )
        if abs(np.cross(np.asarray(p.fs), np.asarray(p.ss))).sum() == 0:
            raise InputError(
                path, f"panel {p.name} has parallel fs and ss vectors", "fix its fs/ss lines"
            )
    return geom
