"""Still diffraction: Ewald sphere, excitation error, partiality, polarisation, spot positions.

Lab frame as CrystFEL: the beam travels along +z, k_in = (0, 0, 1/lambda); a reciprocal lattice
point q diffracts towards k_out = k_in + q (no 2 pi anywhere). Its excitation error is the
distance from the Ewald sphere, s = |k_in + q| - |k_in|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from braggflow.formats.geometry import Geometry

HC_EV_A = 12398.419843320026  # h c in eV Angstrom
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def wavelength_A(photon_energy_ev: float) -> float:
    return HC_EV_A / photon_energy_ev


def excitation_error(q_lab: np.ndarray, k: float) -> np.ndarray:
    """s = |k_in + q| - k (1/Angstrom); zero on the Ewald sphere."""
    kout = q_lab.copy()
    kout[:, 2] += k
    return np.linalg.norm(kout, axis=1) - k


def profile_sigma(
    q_len: np.ndarray,
    k: float,
    crystal_size_A: float,
    mosaicity_fwhm_rad: float,
    bandwidth_fwhm: float,
) -> np.ndarray:
    """Gaussian width of the reflection along the excitation-error axis (1/Angstrom).

    Three contributions added in quadrature: the reciprocal-lattice-point size of a crystal of
    size L (sinc^2 of FWHM 0.89/L ~ Gaussian sigma 0.38/L), the mosaic spread (an angular spread
    moves the point by |q| dphi), and the bandwidth (ds/dk = cos(2 theta) - 1 = -2 sin^2(theta),
    White et al. 2013, CrystFEL partiality model).
    """
    sigma_size = 0.38 / crystal_size_A
    sigma_mosaic = q_len * mosaicity_fwhm_rad * FWHM_TO_SIGMA
    sin2_theta = (q_len / (2.0 * k)) ** 2
    sigma_bw = 2.0 * sin2_theta * k * bandwidth_fwhm * FWHM_TO_SIGMA
    return np.sqrt(sigma_size**2 + sigma_mosaic**2 + sigma_bw**2)


def partiality(s: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Fraction of the full reflection recorded in a still: Gaussian overlap exp(-s^2 / 2 sigma^2)."""
    return np.exp(-0.5 * (s / sigma) ** 2)


def polarisation_factor(direction: np.ndarray, degree: float = 1.0) -> np.ndarray:
    """Polarisation factor for a beam polarised along x (XFEL undulators; Kahn et al. 1982).

    With the unit scattered direction u = (sin 2theta cos phi, sin 2theta sin phi, cos 2theta):
    P = 1 - degree u_x^2 - (1 - degree) u_y^2 (degree 1: fully linearly polarised).
    """
    u = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    return 1.0 - degree * u[..., 0] ** 2 - (1.0 - degree) * u[..., 1] ** 2


@dataclass(frozen=True)
class PanelPlanes:
    """Every panel as a plane in metres: origin (outer corner of its first pixel), fs/ss steps."""

    origin_m: np.ndarray  # (p, 3)
    fs_m: np.ndarray  # (p, 3) lab step of one fs pixel
    ss_m: np.ndarray  # (p, 3)
    min_fs: np.ndarray  # (p,)
    min_ss: np.ndarray
    width: np.ndarray
    height: np.ndarray

    @classmethod
    def from_geometry(cls, geom: Geometry, clen_m: np.ndarray) -> PanelPlanes:
        """``clen_m`` (p,): each panel's camera length (coffset added here)."""
        origin, fs, ss = [], [], []
        for p, clen in zip(geom.panels, clen_m, strict=True):
            res = p.res_px_per_m
            origin.append([p.corner_x / res, p.corner_y / res, clen + p.coffset_m])
            fs.append(np.asarray(p.fs) / res)
            ss.append(np.asarray(p.ss) / res)
        return cls(
            origin_m=np.asarray(origin, dtype=float),
            fs_m=np.asarray(fs, dtype=float),
            ss_m=np.asarray(ss, dtype=float),
            min_fs=np.array([p.min_fs for p in geom.panels]),
            min_ss=np.array([p.min_ss for p in geom.panels]),
            width=np.array([p.width for p in geom.panels]),
            height=np.array([p.height for p in geom.panels]),
        )

    def pixel_positions_m(self, geom: Geometry) -> np.ndarray:
        """(ss, fs, 3) lab position of every raw pixel centre (NaN where no panel covers it)."""
        out = np.full((*geom.slab_shape, 3), np.nan)
        for i, p in enumerate(geom.panels):
            v, u = np.mgrid[0 : p.height, 0 : p.width] + 0.5
            pos = self.origin_m[i] + u[..., None] * self.fs_m[i] + v[..., None] * self.ss_m[i]
            out[p.min_ss : p.max_ss + 1, p.min_fs : p.max_fs + 1] = pos
        return out

    def project(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where rays from the sample along ``direction`` (n, 3) hit the detector.

        Returns panel index (-1: misses every panel), fs and ss in raw slab coordinates (pixel
        centres at integers). Ray-plane intersection t d = O + u F + v S per panel.
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
            hit = np.isfinite(t) & (t > 0)
            if not hit.any():
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
            idx = np.flatnonzero(hit)[inside]
            closer = t[idx] < best_t[idx]
            idx = idx[closer]
            uv = uv[inside][closer]
            best_t[idx] = t[idx]
            panel[idx] = i
            fs[idx] = self.min_fs[i] + uv[:, 0] - 0.5
            ss[idx] = self.min_ss[i] + uv[:, 1] - 0.5
        return panel, fs, ss
