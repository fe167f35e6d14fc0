"""The 2-D pseudo-Voigt peak model of the paper (section 2.1.2) and its Jacobian.

    I(y, x) = A [eta L(y, x) + (1 - eta) G(y, x)] + a y + b x + c

with a 2-D Gaussian and a 2-D Lorentzian with separate widths along fast scan (x) and slow
scan (y), both normalised to 1 at the peak centre (x0, y0):

    G = exp(-(x - x0)^2 / (2 sigma_x^2) - (y - y0)^2 / (2 sigma_y^2))
    L = 1 / (1 + (x - x0)^2 / gamma_x^2 + (y - y0)^2 / gamma_y^2)

so A is the peak height above background in photons. Window coordinates x, y are pixel offsets
from the window's centre pixel; the background (a, b, c) is the plane ``slope_ss * y + slope_fs
* x + offset`` (``offset`` = background at the window's centre pixel).

Parameter vectors are ordered as :data:`PARAM_NAMES` along their last axis; every function works
on batches (leading axis = peak).
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES: tuple[str, ...] = (
    "amplitude",
    "centre_fs",
    "centre_ss",
    "sigma_fs",
    "sigma_ss",
    "gamma_fs",
    "gamma_ss",
    "eta",
    "slope_ss",
    "slope_fs",
    "offset",
)
N_PARAMS = len(PARAM_NAMES)
(
    I_AMP,
    I_X0,
    I_Y0,
    I_SX,
    I_SY,
    I_GX,
    I_GY,
    I_ETA,
    I_A_SS,
    I_B_FS,
    I_C,
) = range(N_PARAMS)


def window_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) offsets of a ``size`` x ``size`` window's pixels from its centre pixel, (size, size)."""
    half = size // 2
    r = np.arange(-half, size - half, dtype=float)
    return np.meshgrid(r, r, indexing="ij")


def shape_terms(
    p: np.ndarray, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dx, dy, G, L for parameters ``p`` (N, 11) on flattened pixel offsets ``y, x`` (P,) or (N, P)."""
    dx = x - p[:, I_X0, None]
    dy = y - p[:, I_Y0, None]
    gauss = np.exp(-0.5 * ((dx / p[:, I_SX, None]) ** 2 + (dy / p[:, I_SY, None]) ** 2))
    lorentz = 1.0 / (1.0 + (dx / p[:, I_GX, None]) ** 2 + (dy / p[:, I_GY, None]) ** 2)
    return dx, dy, gauss, lorentz


def profile(p: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The normalised peak shape eta L + (1 - eta) G (1 at the centre), shape (N, P)."""
    _, _, gauss, lorentz = shape_terms(p, y, x)
    eta = p[:, I_ETA, None]
    return eta * lorentz + (1.0 - eta) * gauss


def model(p: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """I(y, x) of section 2.1.2 for a batch of parameter vectors, shape (N, P)."""
    return (
        p[:, I_AMP, None] * profile(p, y, x)
        + p[:, I_A_SS, None] * y
        + p[:, I_B_FS, None] * x
        + p[:, I_C, None]
    )


def model_and_jacobian(
    p: np.ndarray, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Model (N, P) and its analytic derivatives d model / d p, shape (N, P, 11)."""
    n = p.shape[0]
    npix = np.broadcast_shapes(np.shape(y), (n, 1))[-1]
    dx, dy, gauss, lorentz = shape_terms(p, y, x)
    amp = p[:, I_AMP, None]
    eta = p[:, I_ETA, None]
    sx, sy = p[:, I_SX, None], p[:, I_SY, None]
    gx, gy = p[:, I_GX, None], p[:, I_GY, None]
    shape = eta * lorentz + (1.0 - eta) * gauss
    ag = amp * (1.0 - eta) * gauss  # A (1-eta) G
    al2 = amp * eta * lorentz * lorentz  # A eta L^2
    jac = np.empty((n, npix, N_PARAMS))
    jac[:, :, I_AMP] = shape
    jac[:, :, I_X0] = ag * dx / sx**2 + al2 * 2.0 * dx / gx**2
    jac[:, :, I_Y0] = ag * dy / sy**2 + al2 * 2.0 * dy / gy**2
    jac[:, :, I_SX] = ag * dx**2 / sx**3
    jac[:, :, I_SY] = ag * dy**2 / sy**3
    jac[:, :, I_GX] = al2 * 2.0 * dx**2 / gx**3
    jac[:, :, I_GY] = al2 * 2.0 * dy**2 / gy**3
    jac[:, :, I_ETA] = amp * (lorentz - gauss)
    jac[:, :, I_A_SS] = y
    jac[:, :, I_B_FS] = x
    jac[:, :, I_C] = 1.0
    value = amp * shape + p[:, I_A_SS, None] * y + p[:, I_B_FS, None] * x + p[:, I_C, None]
    return value, jac


def weights(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Residual weights 1/sqrt(I + 1) on photon-scale intensities, 0 on unusable pixels (2.1.2)."""
    w = 1.0 / np.sqrt(np.maximum(np.where(valid, data, 0.0), 0.0) + 1.0)
    return np.where(valid, w, 0.0)
