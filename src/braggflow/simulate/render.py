"""Rendering: sub-pixel spots, background (radial fall-off + water ring), detector response.

Spots are a sum of two concentric 2-D Gaussians (a core and a weaker, wider tail, which gives
the pseudo-Voigt-like wings of real Bragg spots); each is integrated exactly over every pixel as
a product of erf differences, so a spot's pixel values sum to its photons for any sub-pixel
centre. Everything is vectorised over spots (no Python loop per spot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SQRT2 = np.sqrt(2.0)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), numpy only.

    (scipy.special is avoided on purpose: importing it before cctbx crashes the process.)
    """
    x = np.asarray(x, dtype=np.float64)
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _pixel_fractions(
    centre: np.ndarray, origin: np.ndarray, width: int, sigma: np.ndarray
) -> np.ndarray:
    """(n, width) fraction of a 1-D Gaussian falling in pixels origin..origin+width-1 (centres at integers)."""
    edges = origin[:, None] + np.arange(width + 1) - 0.5
    cdf = erf((edges - centre[:, None]) / (_SQRT2 * sigma[:, None]))
    return 0.5 * np.diff(cdf, axis=1)


@dataclass
class RenderedSpots:
    """Noiseless spot image plus per-spot bookkeeping."""

    image: np.ndarray  # (ss, fs) expected photons from all spots
    on_panel_fraction: np.ndarray  # (n,) fraction of each spot landing on its panel's pixels
    weights: np.ndarray  # (n, w, w) pixel fractions (0 outside the spot's panel)
    flat_index: np.ndarray  # (n, w, w) raw-slab flat index of each window pixel
    peak_index: np.ndarray  # (n,) flat index of each spot's brightest pixel


def render_spots(
    slab_shape: tuple[int, int],
    panel_bounds: np.ndarray,
    panel: np.ndarray,
    fs: np.ndarray,
    ss: np.ndarray,
    photons: np.ndarray,
    sigma_px: np.ndarray,
    tail_fraction: float,
    tail_sigma_px: np.ndarray,
) -> RenderedSpots:
    """Render spots (panel index, raw fs/ss, expected photons, core and tail sigma in pixels).

    ``panel_bounds`` (p, 4): min_fs, max_fs, min_ss, max_ss per panel; light falling outside a
    spot's own panel is lost (it lands in a gap), never on a neighbouring slab panel.
    """
    n_ss, n_fs = slab_shape
    n = fs.shape[0]
    half = int(
        np.ceil(
            3.5
            * max(float(np.max(tail_sigma_px, initial=0.0)), float(np.max(sigma_px, initial=0.0)))
        )
    )
    w = 2 * half + 1
    if n == 0:
        empty = np.zeros((0, w, w))
        return RenderedSpots(
            np.zeros(slab_shape), np.zeros(0), empty, empty.astype(np.int64), np.zeros(0, np.int64)
        )
    ofs = np.rint(fs).astype(np.int64) - half
    oss = np.rint(ss).astype(np.int64) - half
    core = (1.0 - tail_fraction) * (
        _pixel_fractions(ss, oss, w, sigma_px)[:, :, None]
        * _pixel_fractions(fs, ofs, w, sigma_px)[:, None, :]
    )
    tail = tail_fraction * (
        _pixel_fractions(ss, oss, w, tail_sigma_px)[:, :, None]
        * _pixel_fractions(fs, ofs, w, tail_sigma_px)[:, None, :]
    )
    weights = core + tail
    fs_idx = ofs[:, None] + np.arange(w)
    ss_idx = oss[:, None] + np.arange(w)
    b = panel_bounds[panel]
    ok_fs = (fs_idx >= b[:, 0:1]) & (fs_idx <= b[:, 1:2])
    ok_ss = (ss_idx >= b[:, 2:3]) & (ss_idx <= b[:, 3:4])
    inside = ok_ss[:, :, None] & ok_fs[:, None, :]
    weights = np.where(inside, weights, 0.0)
    flat = (
        np.clip(ss_idx, 0, n_ss - 1)[:, :, None] * n_fs + np.clip(fs_idx, 0, n_fs - 1)[:, None, :]
    )
    image = np.bincount(
        flat.ravel(), weights=(weights * photons[:, None, None]).ravel(), minlength=n_ss * n_fs
    )
    peak = flat.reshape(n, -1)[np.arange(n), np.argmax(weights.reshape(n, -1), axis=1)]
    return RenderedSpots(
        image=image.reshape(slab_shape),
        on_panel_fraction=weights.sum(axis=(1, 2)),
        weights=weights,
        flat_index=flat,
        peak_index=peak,
    )


def footprint_and_snr(
    spots: RenderedSpots,
    photons: np.ndarray,
    background: np.ndarray,
    read_noise_photons: float,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per spot: its footprint (window pixels >= ``fraction`` of its own peak) and recorded SNR.

    SNR = S / sqrt(S + B + n sigma_read^2) over the footprint: S the spot photons there, B the
    expected background photons there (the local background), n the footprint's pixel count.
    """
    n = photons.shape[0]
    if n == 0:
        return np.zeros_like(spots.weights, dtype=bool), np.zeros(0)
    peak_w = spots.weights.reshape(n, -1).max(axis=1)
    fp = (spots.weights >= fraction * peak_w[:, None, None]) & (spots.weights > 0)
    signal = photons * np.where(fp, spots.weights, 0.0).sum(axis=(1, 2))
    bg = np.where(fp, background.ravel()[spots.flat_index], 0.0).sum(axis=(1, 2))
    npix = fp.sum(axis=(1, 2))
    noise = np.sqrt(signal + bg + npix * read_noise_photons**2)
    snr = np.divide(signal, noise, out=np.zeros(n), where=noise > 0)
    return fp, snr


def background_photons(
    q_inv_A: np.ndarray,
    geometric: np.ndarray,
    level: float,
    falloff_inv_A: float,
    ring_q_inv_A: float,
    ring_sigma_inv_A: float,
    ring_level: float,
) -> np.ndarray:
    """Expected background photons per pixel: smooth radial fall-off plus a water ring.

    level * exp(-q / q0) (air, jet and sample scatter falling off with angle) plus a Gaussian ring
    of liquid water around 3.2 A (Hura et al. 2000); ``geometric`` carries the polarisation and
    each pixel's relative solid angle.
    """
    ring = ring_level * np.exp(-0.5 * ((q_inv_A - ring_q_inv_A) / ring_sigma_inv_A) ** 2)
    out = (level * np.exp(-q_inv_A / falloff_inv_A) + ring) * geometric
    return np.nan_to_num(out, nan=0.0)


def detector_response(
    expected_photons: np.ndarray,
    rng: np.random.Generator,
    adu_per_photon: float,
    read_noise_adu: float,
    max_adu: float,
    dead: np.ndarray,
    hot_adu: np.ndarray,
    no_panel: np.ndarray,
) -> np.ndarray:
    """Counting statistics and electronics: Poisson photons, gain, Gaussian read noise, saturation.

    Dead pixels read 0, hot pixels their own stuck level (plus read noise), pixels outside any
    panel 0. Returns float32 ADU.
    """
    counts = rng.poisson(expected_photons).astype(np.float32)
    adu = counts * np.float32(adu_per_photon)
    adu += rng.normal(0.0, read_noise_adu, size=adu.shape).astype(np.float32)
    hot = hot_adu > 0
    adu[hot] = hot_adu[hot] + rng.normal(0.0, read_noise_adu, size=int(hot.sum())).astype(
        np.float32
    )
    np.minimum(adu, np.float32(max_adu), out=adu)
    adu[dead | no_panel] = 0.0
    return adu
