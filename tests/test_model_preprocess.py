"""Pad-and-crop, z-scores and their inverse (section 2.2.2): numpy only, fast."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.model.preprocess import (
    IGNORE,
    pad_crop,
    prepare_labels,
    preprocess,
    restore_logits,
    restore_shape,
    square_window,
    zscore,
)


@pytest.mark.parametrize("shape", [(60, 64), (64, 64), (70, 50), (100, 30)])
def test_pad_crop_then_restore_is_identity_on_kept_pixels(shape):
    rng = np.random.default_rng(0)
    img = rng.normal(size=shape).astype(np.float32)
    sq = pad_crop(img, 64)
    assert sq.shape == (64, 64)
    back = restore_shape(sq, shape, fill=np.nan)
    win = square_window(shape, 64)
    np.testing.assert_array_equal(back[win.src], img[win.src])
    # centred: padding differs by at most one pixel between the two sides
    if shape[0] <= 64:
        top, bottom = win.dst[0].start, 64 - win.dst[0].stop
        assert abs(top - bottom) <= 1
    # pixels cropped away come back as the fill value
    assert np.isnan(back).sum() == img.size - back[win.src].size


def test_zscore_uses_valid_pixels_only_and_zeroes_the_rest():
    img = np.full((8, 8), 10.0, np.float32)
    img[0, 0] = 1e6  # a hot pixel, masked
    img[1:, :] += np.arange(8)  # some variation
    valid = np.ones((8, 8), bool)
    valid[0, 0] = False
    z = zscore(img, valid)
    assert z[0, 0] == 0.0
    assert abs(z[valid].mean()) < 1e-5 and abs(z[valid].std() - 1) < 1e-3


def test_zscore_is_per_image_in_a_batch():
    rng = np.random.default_rng(1)
    batch = np.stack([rng.normal(5, 2, (16, 16)), rng.normal(100, 30, (16, 16))]).astype(np.float32)
    z = zscore(batch)
    np.testing.assert_allclose(z.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 2)), 1, atol=1e-3)


def test_preprocess_masks_padding_gaps_and_nonfinite_pixels():
    img = np.ones((2, 30, 40), np.float32)
    img[0, 3, 3] = np.nan
    valid = np.ones((30, 40), bool)
    valid[:, 20] = False
    x, ok = preprocess(img, valid, 64)
    assert x.shape == ok.shape == (2, 64, 64) and x.dtype == np.float32
    assert ok.sum(axis=(1, 2)).tolist() == [30 * 39 - 1, 30 * 39]
    assert np.all(x[~ok] == 0) and np.isfinite(x).all()
    labels = np.zeros((2, 30, 40), np.uint8)
    labels[:, 5, 5] = 1
    lab = prepare_labels(labels, ok, 64)
    assert (lab == 1).sum() == 2 and np.all(lab[~ok] == IGNORE)


def test_restore_logits_marks_cropped_pixels_as_background():
    logits = np.zeros((2, 32, 32), np.float32)
    logits[1] = 5.0  # "peak" everywhere inside the square
    out = restore_logits(logits, (40, 32))
    assert out.shape == (2, 40, 32)
    pred = out.argmax(0)
    assert pred[4:36].all() and not pred[:4].any() and not pred[36:].any()
