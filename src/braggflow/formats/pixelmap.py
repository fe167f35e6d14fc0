"""Pixel maps: raw detector slab <-> assembled detector image, both directions.

The assembled image is the detector seen from the sample in lab pixels: image column ``x`` and
row ``y`` are the lab coordinates of CrystFEL's geometry (conventions.md) shifted so the image
starts at 0; assembled pixel centres sit at integers. Each raw pixel centre is placed on the
nearest assembled pixel (nearest-neighbour placement, no interpolation); where two raw pixels
land on the same assembled pixel (slightly rotated or scaled panels, e.g. CSPAD's
``+0.0048x +1y``), the later one moves to the nearest free pixel, so the raw -> assembled map is
injective and ``to_slab(assemble(slab)) == slab`` holds exactly on every panel pixel.

Sub-pixel transforms follow the placement: a raw position ``(fs, ss)`` goes to the assembled
centre of its nearest raw pixel plus the panel's fs/ss vectors times the sub-pixel offset, and
back, so both transforms are exact inverses of each other (within a pixel of the panel affine
map everywhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from braggflow.formats.geometry import Geometry, Panel

_ALIGNED_COS = math.cos(math.radians(11.0))
# Neighbour offsets searched for a free assembled pixel after a collision, nearest first.
_MAX_SHIFT = 3
_OFFSETS = sorted(  # (dy, dx)
    (
        (dy, dx)
        for dy in range(-_MAX_SHIFT, _MAX_SHIFT + 1)
        for dx in range(-_MAX_SHIFT, _MAX_SHIFT + 1)
    ),
    key=lambda o: (o[0] ** 2 + o[1] ** 2, o),
)


@dataclass
class PixelMap:
    """Assembled (H, W) <-> raw slab (n_ss, n_fs) lookup tables built from a :class:`Geometry`.

    Attributes: ``panel``, ``fs``, ``ss`` (H, W) int32, -1 in gaps; ``valid`` (H, W) bool (an
    assembled pixel exists and is not masked); ``raw_x``, ``raw_y`` (n_ss, n_fs) int32, the
    assembled column/row of every raw pixel (-1 outside panels); ``origin_x``, ``origin_y``: lab
    pixel coordinates of assembled pixel (0, 0).
    """

    panel: np.ndarray
    fs: np.ndarray
    ss: np.ndarray
    valid: np.ndarray
    raw_x: np.ndarray
    raw_y: np.ndarray
    raw_panel: np.ndarray
    origin_x: int
    origin_y: int
    fs_vec: np.ndarray  # (n_panels, 2) lab x, y of each panel's fs step
    ss_vec: np.ndarray  # (n_panels, 2)
    max_error_px: float = 0.0  # largest distance between a raw pixel centre and its placement

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.panel.shape)  # type: ignore[return-value]

    @property
    def slab_shape(self) -> tuple[int, int]:
        return tuple(self.raw_x.shape)  # type: ignore[return-value]

    @classmethod
    def from_geometry(
        cls, geom: Geometry, mask: np.ndarray | None = None, pad: int = 0
    ) -> PixelMap:
        """Build the map; ``mask`` (raw slab, True = good) is combined with the geometry's bad regions.

        ``pad`` adds empty assembled pixels on every side.
        """
        xs, ys = geom.lab_xy_px()
        pidx = geom.panel_index_map()
        inside = pidx >= 0
        if not inside.any():
            raise ValueError("the geometry has no panel pixels")
        # assembled pixel k covers lab [origin + k, origin + k + 1): its centre is origin + k + 0.5
        origin_x = int(np.floor(np.nanmin(xs))) - _MAX_SHIFT - pad
        origin_y = int(np.floor(np.nanmin(ys))) - _MAX_SHIFT - pad
        width = int(np.floor(np.nanmax(xs))) - origin_x + 1 + _MAX_SHIFT + pad
        height = int(np.floor(np.nanmax(ys))) - origin_y + 1 + _MAX_SHIFT + pad
        ax = xs - origin_x - 0.5  # continuous assembled coordinates of the raw pixel centres
        ay = ys - origin_y - 0.5
        raw_x = np.full(pidx.shape, -1, dtype=np.int32)
        raw_y = np.full(pidx.shape, -1, dtype=np.int32)
        taken = np.zeros((height, width), dtype=bool)
        for p in geom.panels:
            rect = (slice(p.min_ss, p.max_ss + 1), slice(p.min_fs, p.max_fs + 1))
            ss_idx, fs_idx = (a.ravel() for a in np.mgrid[rect])
            col, row = _place_panel(p, fs_idx, ss_idx, ax[rect].ravel(), ay[rect].ravel(), taken)
            raw_x[rect] = col.reshape(p.height, p.width)
            raw_y[rect] = row.reshape(p.height, p.width)
            taken[row, col] = True

        panel = np.full((height, width), -1, dtype=np.int32)
        fs = np.full((height, width), -1, dtype=np.int32)
        ss = np.full((height, width), -1, dtype=np.int32)
        ss_idx, fs_idx = np.nonzero(inside)
        row, col = raw_y[inside], raw_x[inside]
        panel[row, col] = pidx[inside]
        fs[row, col] = fs_idx
        ss[row, col] = ss_idx

        good = inside & ~geom.bad_pixel_mask()
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != pidx.shape:
                raise ValueError(f"mask shape {mask.shape} does not match the slab {pidx.shape}")
            good &= mask
        valid = np.zeros((height, width), dtype=bool)
        valid[row, col] = good[inside]
        fs_vec = np.array([[p.fs[0], p.fs[1]] for p in geom.panels], dtype=float)
        ss_vec = np.array([[p.ss[0], p.ss[1]] for p in geom.panels], dtype=float)
        err = np.hypot(ax[inside] - col, ay[inside] - row)
        return cls(
            panel,
            fs,
            ss,
            valid,
            raw_x,
            raw_y,
            pidx,
            origin_x,
            origin_y,
            fs_vec,
            ss_vec,
            float(err.max()),
        )

    # -- images -------------------------------------------------------------------------------
    def assemble(self, slab: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Raw slab(s) (..., n_ss, n_fs) -> assembled image(s) (..., H, W); gaps get ``fill``."""
        slab = np.asarray(slab)
        if slab.shape[-2:] != self.slab_shape:
            raise ValueError(
                f"slab shape {slab.shape[-2:]} does not match the geometry's {self.slab_shape}"
            )
        out = np.full(slab.shape[:-2] + self.shape, fill, dtype=slab.dtype)
        inside = self.panel >= 0
        out[..., inside] = slab[..., self.ss[inside], self.fs[inside]]
        return out

    def to_slab(self, image: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Assembled image(s) (..., H, W) -> raw slab(s) (..., n_ss, n_fs); non-panel pixels get ``fill``."""
        image = np.asarray(image)
        if image.shape[-2:] != self.shape:
            raise ValueError(
                f"image shape {image.shape[-2:]} does not match the pixel map's {self.shape}"
            )
        out = np.full(image.shape[:-2] + self.slab_shape, fill, dtype=image.dtype)
        inside = self.raw_panel >= 0
        out[..., inside] = image[..., self.raw_y[inside], self.raw_x[inside]]
        return out

    # -- coordinates --------------------------------------------------------------------------
    def raw_to_assembled(self, fs: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw slab (fs, ss) (centre at integers) -> assembled (x, y); NaN outside panels."""
        fs = np.asarray(fs, dtype=float)
        ss = np.asarray(ss, dtype=float)
        ifs = np.rint(fs).astype(np.int64)
        iss = np.rint(ss).astype(np.int64)
        n_ss, n_fs = self.slab_shape
        ok = (ifs >= 0) & (ifs < n_fs) & (iss >= 0) & (iss < n_ss)
        ifs_c, iss_c = np.where(ok, ifs, 0), np.where(ok, iss, 0)
        p = np.where(ok, self.raw_panel[iss_c, ifs_c], -1)
        ok &= p >= 0
        p_c = np.where(ok, p, 0)
        dfs, dss = fs - ifs, ss - iss
        x = self.raw_x[iss_c, ifs_c] + dfs * self.fs_vec[p_c, 0] + dss * self.ss_vec[p_c, 0]
        y = self.raw_y[iss_c, ifs_c] + dfs * self.fs_vec[p_c, 1] + dss * self.ss_vec[p_c, 1]
        return np.where(ok, x, np.nan), np.where(ok, y, np.nan)

    def assembled_to_raw(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Assembled (x, y) -> (panel, fs, ss) raw slab coordinates; panel -1 and NaN in gaps."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        ix = np.rint(np.where(finite, x, -1)).astype(np.int64)
        iy = np.rint(np.where(finite, y, -1)).astype(np.int64)
        h, w = self.shape
        ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        ix_c, iy_c = np.where(ok, ix, 0), np.where(ok, iy, 0)
        p = np.where(ok, self.panel[iy_c, ix_c], -1)
        ok &= p >= 0
        p_c = np.where(ok, p, 0)
        dx, dy = x - ix, y - iy
        # invert the panel's 2x2 [fs_vec ss_vec] map for the sub-pixel offset
        a, c = self.fs_vec[p_c, 0], self.fs_vec[p_c, 1]
        b, d = self.ss_vec[p_c, 0], self.ss_vec[p_c, 1]
        det = a * d - b * c
        det = np.where(det == 0, 1.0, det)
        dfs = (d * dx - b * dy) / det
        dss = (-c * dx + a * dy) / det
        fs = self.fs[iy_c, ix_c] + dfs
        ss = self.ss[iy_c, ix_c] + dss
        return (
            np.where(ok, p, -1).astype(np.int64),
            np.where(ok, fs, np.nan),
            np.where(ok, ss, np.nan),
        )


def _axis(vec: tuple[float, float, float]) -> tuple[int, int] | None:
    """The lab axis (+-x or +-y, as integer (dx, dy)) a panel vector is nearly parallel to, else None."""
    vx, vy = vec[0], vec[1]
    norm = math.hypot(vx, vy)
    if not 0.8 <= norm <= 1.25:
        return None
    snapped = (int(np.sign(vx)), 0) if abs(vx) >= abs(vy) else (0, int(np.sign(vy)))
    cos = (vx * snapped[0] + vy * snapped[1]) / norm
    return snapped if cos >= _ALIGNED_COS else None


def _place_panel(
    p: Panel, fs: np.ndarray, ss: np.ndarray, ax: np.ndarray, ay: np.ndarray, taken: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Assembled (col, row) of one panel's pixels, avoiding pixels ``taken`` by earlier panels.

    A nearly axis-aligned panel (fs/ss within ~11 degrees of the lab axes, as every real detector
    here) is placed as a rigid rectangle on the nearest integer offset: injective by construction,
    error <= 0.5 px plus half the panel's rotation/scale drift. Other panels: per pixel nearest.
    """
    afs, ass = _axis(p.fs), _axis(p.ss)
    height, width = taken.shape
    if afs is not None and ass is not None and afs[0] * ass[0] + afs[1] * ass[1] == 0:
        di, dj = fs - p.min_fs, ss - p.min_ss
        lin_x = di * afs[0] + dj * ass[0]
        lin_y = di * afs[1] + dj * ass[1]
        c0 = int(np.rint(np.mean(ax - lin_x)))
        r0 = int(np.rint(np.mean(ay - lin_y)))
        best = None
        for dy, dx in _OFFSETS:
            col, row = lin_x + c0 + dx, lin_y + r0 + dy
            if col.min() < 0 or row.min() < 0 or col.max() >= width or row.max() >= height:
                continue
            clash = int(taken[row, col].sum())
            if clash == 0:
                return col, row
            if best is None or clash < best[0]:
                best = (clash, col, row)
        if best is None:
            raise ValueError(f"panel {p.name!r} does not fit the assembled image")
        col, row = best[1].copy(), best[2].copy()
        bad = taken[row, col]
        col[bad], row[bad] = _nearest_free(ax[bad], ay[bad], taken, p.name)
        return col, row
    # arbitrary rotation: optimal matching of all the panel's pixels to free pixels near them
    return _match_free(ax, ay, taken, p.name)


def _match_free(
    ax: np.ndarray, ay: np.ndarray, taken: np.ndarray, name: str, radius: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum total squared displacement matching of pixels to free assembled pixels nearby."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    height, width = taken.shape
    offs = np.array(
        [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    )
    cc = np.floor(ax + 0.5).astype(np.int64)[:, None] + offs[None, :, 1]
    rr = np.floor(ay + 0.5).astype(np.int64)[:, None] + offs[None, :, 0]
    ok = (cc >= 0) & (cc < width) & (rr >= 0) & (rr < height)
    ok[ok] &= ~taken[rr[ok], cc[ok]]
    src = np.nonzero(ok)[0]
    lin = (rr * width + cc)[ok]
    cells, dst = np.unique(lin, return_inverse=True)
    cost = 1.0 + ((cc - ax[:, None]) ** 2 + (rr - ay[:, None]) ** 2)[ok]
    graph = csr_matrix((cost, (src, dst)), shape=(ax.size, cells.size))
    try:
        _, match = min_weight_full_bipartite_matching(graph)
    except ValueError:
        raise ValueError(
            f"panel {name!r}: pixels overlap by more than {radius} px; check the geometry"
        ) from None
    return cells[match] % width, cells[match] // width


def _nearest_free(
    ax: np.ndarray, ay: np.ndarray, taken: np.ndarray, name: str, radius: int = _MAX_SHIFT
) -> tuple[np.ndarray, np.ndarray]:
    """Place pixels one by one on the free assembled pixel nearest their true centre (few pixels)."""
    height, width = taken.shape
    taken = taken.copy()
    cols = np.empty(ax.size, dtype=np.int64)
    rows = np.empty(ax.size, dtype=np.int64)
    offs = np.array(
        [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    )
    for k in range(ax.size):
        cc = int(np.floor(ax[k] + 0.5)) + offs[:, 1]
        rr = int(np.floor(ay[k] + 0.5)) + offs[:, 0]
        ok = (cc >= 0) & (cc < width) & (rr >= 0) & (rr < height)
        ok[ok] &= ~taken[rr[ok], cc[ok]]
        if not ok.any():
            raise ValueError(
                f"panel {name!r} overlaps other panels by more than {radius} px; check the geometry"
            )
        d2 = np.where(ok, (cc - ax[k]) ** 2 + (rr - ay[k]) ** 2, np.inf)
        j = int(np.argmin(d2))
        cols[k], rows[k] = cc[j], rr[j]
        taken[rr[j], cc[j]] = True
    return cols, rows
