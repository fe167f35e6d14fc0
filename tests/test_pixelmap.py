"""Pixel maps: raw slab <-> assembled image is the identity on every real detector geometry."""

from __future__ import annotations

import numpy as np
import pytest

from braggflow.formats.geometry import Geometry, Panel, read_geom
from braggflow.formats.pixelmap import PixelMap

_BIG = pytest.mark.slow  # > 4 Mpixel slabs take seconds each on 2 cores
GEOMS = [
    "agipd1M_euxfel_p3046.geom",
    "cspad_cxiformat.geom",
    pytest.param("eiger16M_binning2.geom", marks=_BIG),
    "epix10k2M_lcls_mfx.geom",
    pytest.param("jungfrau16M_swissfel.geom", marks=_BIG),
    pytest.param("jungfrau4M_lcls_cxix53120.geom", marks=_BIG),
    pytest.param("pilatus.geom", marks=_BIG),
    pytest.param("rayonix_lcls.geom", marks=_BIG),
]


def _two_panels(fs=(1.0, 0.0, 0.0), ss=(0.0, 1.0, 0.0)) -> Geometry:
    return Geometry(
        panels=[
            Panel("a", 0, 9, 0, 4, corner_x=-12.0, corner_y=-3.0, fs=fs, ss=ss),
            Panel("b", 0, 9, 5, 9, corner_x=2.0, corner_y=-3.0, fs=fs, ss=ss),
        ]
    )


@pytest.fixture(scope="module")
def cspad(shared_fixtures):
    geom = read_geom(shared_fixtures / "geometry" / "cspad_cxiformat.geom")
    return geom, PixelMap.from_geometry(geom)


@pytest.mark.parametrize("name", GEOMS)
def test_real_geometry_round_trip_is_identity(shared_fixtures, cspad, name):
    if name == "cspad_cxiformat.geom":
        geom, pm = cspad
    else:
        geom = read_geom(shared_fixtures / "geometry" / name)
        pm = PixelMap.from_geometry(geom)
    inside = geom.panel_index_map() >= 0
    # every panel pixel lands on its own assembled pixel, and back
    assert int((pm.panel >= 0).sum()) == int(inside.sum())
    ss, fs = np.nonzero(inside)
    assert np.array_equal(pm.ss[pm.raw_y[inside], pm.raw_x[inside]], ss)
    assert np.array_equal(pm.fs[pm.raw_y[inside], pm.raw_x[inside]], fs)
    slab = np.arange(inside.size, dtype=np.float64).reshape(inside.shape)
    back = pm.to_slab(pm.assemble(slab, fill=-1.0), fill=-2.0)
    assert np.array_equal(back[inside], slab[inside])
    assert (back[~inside] == -2.0).all()
    # placement stays near the true lab position (refined geometries overlap by a pixel or two)
    assert pm.max_error_px < 3.5


def test_cspad_sub_pixel_transforms_invert(cspad):
    geom, pm = cspad
    rng = np.random.default_rng(0)
    pidx = geom.panel_index_map()
    ss, fs = np.nonzero(pidx >= 0)
    k = rng.choice(ss.size, 500)
    fsf = fs[k] + rng.uniform(-0.49, 0.49, k.size)
    ssf = ss[k] + rng.uniform(-0.49, 0.49, k.size)
    x, y = pm.raw_to_assembled(fsf, ssf)
    panel, fs2, ss2 = pm.assembled_to_raw(x, y)
    assert np.array_equal(panel, pidx[ss[k], fs[k]])
    np.testing.assert_allclose(fs2, fsf, atol=1e-9)
    np.testing.assert_allclose(ss2, ssf, atol=1e-9)


def test_assembled_positions_follow_lab_coordinates():
    geom = _two_panels()
    pm = PixelMap.from_geometry(geom)
    xs, ys = geom.lab_xy_px()
    x, y = pm.raw_to_assembled(np.array([0.0, 9.0, 3.0]), np.array([0.0, 7.0, 2.0]))
    # assembled (x, y) = lab position minus origin minus half a pixel
    np.testing.assert_allclose(x, [xs[0, 0], xs[7, 9], xs[2, 3]] - np.float64(pm.origin_x) - 0.5)
    np.testing.assert_allclose(y, [ys[0, 0], ys[7, 9], ys[2, 3]] - np.float64(pm.origin_y) - 0.5)
    assert pm.max_error_px == 0.0


def test_gaps_outside_and_invalid_pixels():
    geom = _two_panels()
    mask = np.ones(geom.slab_shape, dtype=bool)
    mask[2, 3] = False
    pm = PixelMap.from_geometry(geom, mask=mask)
    assert (pm.panel == -1).sum() > 0  # the gap between panels and the margin
    x, y = pm.raw_to_assembled(np.array([3.0]), np.array([2.0]))
    assert not pm.valid[int(round(y[0])), int(round(x[0]))]
    assert pm.valid.sum() == 99
    panel, fs, ss = pm.assembled_to_raw(np.array([0.0, np.nan]), np.array([0.0, 1.0]))
    assert (panel == -1).all() and np.isnan(fs).all() and np.isnan(ss).all()
    x, y = pm.raw_to_assembled(np.array([50.0]), np.array([2.0]))
    assert np.isnan(x).all() and np.isnan(y).all()


def test_rotated_and_shrunk_panels_stay_injective():
    # 30 degrees (pointwise placement) and a 0.99 scale (rectangle placement)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    geom = Geometry(
        panels=[
            Panel(
                "r", 0, 39, 0, 39, corner_x=-60.0, corner_y=-20.0, fs=(c, s, 0.0), ss=(-s, c, 0.0)
            ),
            Panel(
                "k",
                0,
                39,
                40,
                79,
                corner_x=10.0,
                corner_y=-20.0,
                fs=(0.99, 0.0, 0.0),
                ss=(0.0, 0.99, 0.0),
            ),
        ]
    )
    pm = PixelMap.from_geometry(geom)
    slab = np.random.default_rng(1).random(geom.slab_shape)
    assert np.array_equal(pm.to_slab(pm.assemble(slab)), slab)
    assert pm.max_error_px < 1.5


def test_batched_frames_and_shape_errors():
    geom = _two_panels()
    pm = PixelMap.from_geometry(geom)
    frames = np.random.default_rng(2).random((3, *geom.slab_shape)).astype(np.float32)
    images = pm.assemble(frames)
    assert images.shape == (3, *pm.shape) and images.dtype == np.float32
    assert np.array_equal(pm.to_slab(images), frames)
    with pytest.raises(ValueError, match="slab shape"):
        pm.assemble(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="image shape"):
        pm.to_slab(np.zeros((4, 4)))
