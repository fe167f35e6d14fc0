"""The detector as the indexer sees it: panel planes in metres, peaks -> reciprocal vectors -> pixels.

Lab frame as CrystFEL: the beam travels along +z, k_in = (0, 0, 1/lambda); a diffracted ray along
unit vector u corresponds to the scattering vector q = (u - z) / lambda (no 2 pi), and a
reciprocal lattice point q is recorded along k_in + q (CrystFEL's ``locate_peak``).
Raw slab coordinates keep the pixel centre at an integer (docs/conventions.md), so the
continuous CrystFEL panel coordinate of a braggflow position is ``fs - min_fs + 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braggflow.errors import InputError
from braggflow.formats.geometry import Geometry

HC_EV_A = 12398.419843320026  # h c in eV Angstrom


def wavelength_A(photon_energy_ev: float) -> float:
    return HC_EV_A / float(photon_energy_ev)


@dataclass(frozen=True)
class Detector:
    """Panel planes for one frame (camera length resolved): origin/fs/ss steps in metres."""

    origin_m: np.ndarray  # (p, 3): outer corner of the first pixel
    fs_m: np.ndarray  # (p, 3): lab step of one pixel along fs
    ss_m: np.ndarray  # (p, 3)
    min_fs: np.ndarray  # (p,)
    min_ss: np.ndarray
    width: np.ndarray
    height: np.ndarray
    names: tuple[str, ...]
    panel_map: np.ndarray  # raw slab -> panel index (-1 outside panels)

    @classmethod
    def from_geometry(cls, geom: Geometry, clen_m: float | None = None) -> Detector:
        """``clen_m``: the frame's camera length for panels whose ``clen`` is a header path."""
        origin, fs, ss = [], [], []
        for p in geom.panels:
            if not p.res_px_per_m:
                raise InputError(
                    "geometry",
                    f"panel {p.name} has no 'res'",
                    "give res (pixels per metre) for every panel",
                )
            clen = p.clen if isinstance(p.clen, int | float) else clen_m
            if clen is None:
                raise InputError(
                    "geometry",
                    f"panel {p.name}: camera length unknown ({p.clen!r})",
                    "give 'clen' in metres or a header path present in the frames file",
                )
            res = p.res_px_per_m
            origin.append([p.corner_x / res, p.corner_y / res, float(clen) + p.coffset_m])
            fs.append(np.asarray(p.fs, dtype=float) / res)
            ss.append(np.asarray(p.ss, dtype=float) / res)
        return cls(
            origin_m=np.asarray(origin, dtype=float),
            fs_m=np.asarray(fs, dtype=float),
            ss_m=np.asarray(ss, dtype=float),
            min_fs=np.array([p.min_fs for p in geom.panels]),
            min_ss=np.array([p.min_ss for p in geom.panels]),
            width=np.array([p.width for p in geom.panels]),
            height=np.array([p.height for p in geom.panels]),
            names=tuple(p.name for p in geom.panels),
            panel_map=geom.panel_index_map(),
        )

    def panel_of(self, fs: np.ndarray, ss: np.ndarray) -> np.ndarray:
        """Panel index of raw slab positions (-1 outside every panel)."""
        fs_i = np.rint(np.asarray(fs, dtype=float)).astype(np.int64)
        ss_i = np.rint(np.asarray(ss, dtype=float)).astype(np.int64)
        n_ss, n_fs = self.panel_map.shape
        inside = (fs_i >= 0) & (fs_i < n_fs) & (ss_i >= 0) & (ss_i < n_ss)
        out = np.full(fs_i.shape, -1, dtype=np.int64)
        out[inside] = self.panel_map[ss_i[inside], fs_i[inside]]
        return out

    def lab_positions_m(self, panel: np.ndarray, fs: np.ndarray, ss: np.ndarray) -> np.ndarray:
        """(n, 3) lab positions of raw slab positions on the given panels."""
        u = np.asarray(fs, dtype=float) - self.min_fs[panel] + 0.5
        v = np.asarray(ss, dtype=float) - self.min_ss[panel] + 0.5
        return self.origin_m[panel] + u[:, None] * self.fs_m[panel] + v[:, None] * self.ss_m[panel]

    def scattering_vectors(
        self, panel: np.ndarray, fs: np.ndarray, ss: np.ndarray, wavelength: float
    ) -> np.ndarray:
        """q = (u - z) / lambda (1/Angstrom when ``wavelength`` is in Angstrom) of each peak."""
        r = self.lab_positions_m(panel, fs, ss)
        u = r / np.linalg.norm(r, axis=1, keepdims=True)
        u[:, 2] -= 1.0
        return u / wavelength

    def project(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where rays along ``direction`` (n, 3) hit: panel (-1 = none), fs, ss (raw, centre at integer).

        Ray-plane intersection t d = O + u F + v S for every panel; the nearest hit wins.
        """
        n = direction.shape[0]
        panel = np.full(n, -1, dtype=np.int64)
        fs = np.full(n, np.nan)
        ss = np.full(n, np.nan)
        best_t = np.full(n, np.inf)
        for i in range(self.origin_m.shape[0]):
            normal = np.cross(self.fs_m[i], self.ss_m[i])
            denom = direction @ normal
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (self.origin_m[i] @ normal) / denom
            hit = np.flatnonzero(np.isfinite(t) & (t > 0))
            if hit.size == 0:
                continue
            rel = t[hit, None] * direction[hit] - self.origin_m[i]
            basis = np.stack([self.fs_m[i], self.ss_m[i]], axis=1)  # (3, 2)
            uv = rel @ np.linalg.pinv(basis).T
            inside = (
                (uv[:, 0] >= 0)
                & (uv[:, 0] < self.width[i])
                & (uv[:, 1] >= 0)
                & (uv[:, 1] < self.height[i])
            )
            idx = hit[inside]
            uv = uv[inside]
            closer = t[idx] < best_t[idx]
            idx, uv = idx[closer], uv[closer]
            best_t[idx] = t[idx]
            panel[idx] = i
            fs[idx] = self.min_fs[i] + uv[:, 0] - 0.5
            ss[idx] = self.min_ss[i] + uv[:, 1] - 0.5
        return panel, fs, ss

    def max_q(self, wavelength: float) -> float:
        """Largest |q| (1/Angstrom) any panel corner reaches."""
        corners = []
        for i in range(self.origin_m.shape[0]):
            for a in (0.0, float(self.width[i])):
                for b in (0.0, float(self.height[i])):
                    corners.append(self.origin_m[i] + a * self.fs_m[i] + b * self.ss_m[i])
        r = np.asarray(corners)
        u = r / np.linalg.norm(r, axis=1, keepdims=True)
        u[:, 2] -= 1.0
        return float(np.linalg.norm(u, axis=1).max() / wavelength)
