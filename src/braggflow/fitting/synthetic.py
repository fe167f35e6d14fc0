"""Synthetic fit windows with known pseudo-Voigt parameters and Poisson noise (tests, benchmarks)."""

from __future__ import annotations

import numpy as np

from braggflow.fitting.model import (
    I_A_SS,
    I_AMP,
    I_B_FS,
    I_C,
    I_ETA,
    I_GX,
    I_GY,
    I_SX,
    I_SY,
    I_X0,
    I_Y0,
    N_PARAMS,
    model,
    window_grid,
)
from braggflow.fitting.windows import Windows


def random_params(
    n: int,
    rng: np.random.Generator,
    amplitude: tuple[float, float] = (5.0, 200.0),
    background: tuple[float, float] = (0.5, 5.0),
    width: tuple[float, float] = (0.6, 1.6),
) -> np.ndarray:
    """True parameters (N, 11) in window coordinates (centre within 0.5 px of the middle)."""
    p = np.zeros((n, N_PARAMS))
    p[:, I_AMP] = np.exp(rng.uniform(np.log(amplitude[0]), np.log(amplitude[1]), n))
    p[:, I_X0] = rng.uniform(-0.5, 0.5, n)
    p[:, I_Y0] = rng.uniform(-0.5, 0.5, n)
    for i in (I_SX, I_SY, I_GX, I_GY):
        p[:, i] = rng.uniform(*width, n)
    p[:, I_ETA] = rng.uniform(0.0, 1.0, n)
    p[:, I_C] = rng.uniform(*background, n)
    p[:, I_A_SS] = rng.normal(0.0, 0.05, n)
    p[:, I_B_FS] = rng.normal(0.0, 0.05, n)
    return p


def make_windows(
    params: np.ndarray, rng: np.random.Generator, size: int = 9, candidate_jitter_px: float = 0.4
) -> tuple[Windows, np.ndarray]:
    """Poisson-noisy windows of the model with ``params``; returns (windows, noiseless mean)."""
    n = params.shape[0]
    y, x = (g.reshape(-1) for g in window_grid(size))
    mean = np.maximum(model(params, y, x), 0.0).reshape(n, size, size)
    data = rng.poisson(mean).astype(float)
    origin = np.full(n, 100, int)
    jitter = rng.uniform(-candidate_jitter_px, candidate_jitter_px, (2, n))
    mask = np.ones_like(data, bool)
    win = Windows(
        data=data,
        fit_mask=mask,
        label_mask=mask.copy(),
        origin_ss=origin.copy(),
        origin_fs=origin.copy(),
        panel=np.zeros(n, int),
        cand_fs=origin + params[:, I_X0] + jitter[0],
        cand_ss=origin + params[:, I_Y0] + jitter[1],
    )
    return win, mean
