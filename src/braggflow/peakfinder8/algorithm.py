"""Built-in peakfinder8: Cheetah's Bragg-peak finder, vectorised with numpy.

The algorithm of Barty et al., J. Appl. Cryst. 47 (2014) 1118 ("Cheetah", section 3.3), as in
Cheetah's / OM's ``peakfinder8.cpp``:

1. Radial background: pixels are binned by ``rint(r)`` (distance from the beam in pixels); five
   rounds of per-bin mean/sigma with outlier rejection (only pixels strictly inside
   ``mean +- min_snr * sigma`` of the previous round count). A pixel is "bright" above
   ``max(mean + min_snr * sigma, adc_threshold)`` of its bin.
2. Peaks: 8-connected groups of bright, unmasked pixels inside one panel (never across a panel
   edge) that contain a pixel off the panel's border, with ``min_pix_count..max_pix_count``
   pixels.
3. Local background: mean and sigma of the non-bright unmasked pixels of the panel within
   ``2 * local_bg_radius`` of the group's first centroid. Total intensity = sum(I - local mean);
   SNR = total / local sigma >= ``min_snr``; the brightest pixel must beat the brightest local
   background pixel; the intensity-weighted centroid must lie on the panel.
4. Pixels nearer the beam than ``min_res`` or farther than ``max_res`` (pixels) are masked.

Peak positions are raw slab coordinates with the pixel centre at integers (CXI convention);
centroids are intensity-weighted (raw intensities, as Cheetah).

How it is fast (every step exact, not an approximation):

- Layout, once per detector: the usable pixels sorted by radial bin into columns of 64 pixels of
  one bin, a (64, n_cols) array; per-column thresholds then broadcast along contiguous rows.
  Detectors above ~0.5 Mpixel are laid out tile by tile (256 x 256) and scattered in raster order.
- Radial rounds: every upper threshold is >= ``adc_threshold``, so the pixels below it ("dim")
  are counted by every round unless their bin's lower threshold reaches them (checked per bin
  against the frame minimum, then the bin's own minimum). Their sums are taken once; the rounds
  only compare the few "fringe" pixels >= ``adc_threshold``, and stop at the fixed point.
- Peaks: connected components of the bright pixels only (sorted flat indices, hook-and-compress
  labels), local backgrounds from a precomputed disc of offsets.
- Batches: ``find_many`` searches several frames as one detector of stacked copies (own panels,
  own radial bins), paying numpy's per-call overhead once per batch.

Results match the compiled reference (``om.algorithms._crystallography.peakfinder_8``, see
:mod:`braggflow.peakfinder8.reference`) to float rounding (tests/test_peakfinder8.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from braggflow.formats.cxi import PeakTable
from braggflow.formats.geometry import Geometry

FLT_MAX = float(np.finfo(np.float32).max)
FLT_MIN = float(np.finfo(np.float32).tiny)
_CHUNK = 64  # pixels per column of the bin-sorted layout
_ITERATIONS = 5  # Cheetah's fixed number of outlier-rejection rounds


@dataclass(frozen=True)
class Peakfinder8Params:
    """peakfinder8 parameters (names as CrystFEL's ``--min-snr`` etc.; radii in pixels)."""

    adc_threshold: float = 40.0  # defaults = the config's, tuned on the embedded experiment
    min_snr: float = 4.5
    min_pix_count: int = 3
    max_pix_count: int = 50
    local_bg_radius: int = 3
    min_res: float = 0.0
    max_res: float = 1e9
    max_num_peaks: int = 2048

    def __post_init__(self) -> None:
        if self.min_pix_count < 1 or self.max_pix_count < self.min_pix_count:
            raise ValueError("need 1 <= min_pix_count <= max_pix_count")
        if self.local_bg_radius < 1:
            raise ValueError("local_bg_radius must be >= 1")
        if self.min_snr <= 0:
            raise ValueError("min_snr must be > 0")
        if self.max_res < self.min_res:
            raise ValueError("max_res must be >= min_res")

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> Peakfinder8Params:
        """From the ``find_peaks`` config section (``max_peaks_per_frame`` -> ``max_num_peaks``)."""
        keys = set(cls.__dataclass_fields__)
        values = {k: v for k, v in section.items() if k in keys}
        if "max_peaks_per_frame" in section:
            values["max_num_peaks"] = int(section["max_peaks_per_frame"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FrameStats:
    """What happened to one frame (for the per-run statistics)."""

    n_peaks: int = 0
    n_nonfinite: int = 0
    n_bright: int = 0
    iterations: int = 0
    truncated: bool = False


_TILE = 256  # pixels: a tile of a panel (float32: 256 KiB) stays in cache while it is laid out
_TILED = 1 << 19  # detectors with more usable pixels than this are laid out tile by tile


def _tiles(pidx_flat: np.ndarray, bounds: np.ndarray, n_fs: int) -> np.ndarray:
    """Tile number of every slab pixel: panels in order, each cut into <= _TILE^2 blocks."""
    ss, fs = np.divmod(np.arange(pidx_flat.size), n_fs)
    p = np.clip(pidx_flat, 0, None)
    if bounds.size == 0:
        return np.zeros(pidx_flat.size, dtype=np.int64)
    b = bounds[p]
    n_across = (bounds[:, 1] - bounds[:, 0]) // _TILE + 1
    n_down = (bounds[:, 3] - bounds[:, 2]) // _TILE + 1
    first = np.r_[0, np.cumsum(n_across * n_down)[:-1]]
    return first[p] + ((ss - b[:, 2]) // _TILE) * n_across[p] + (fs - b[:, 0]) // _TILE


def _flat_true(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the True entries of a sparse C-contiguous bool array (8 bytes at a time)."""
    flat = mask.reshape(-1)
    if flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64))
    if words.size == 0:
        return words
    pos = (words[:, None] * 8 + np.arange(8)).ravel()
    return pos[flat[pos]]


def _no_peaks() -> dict[str, np.ndarray]:
    return {k: np.zeros(0) for k in ("fs", "ss", "intensity", "max_intensity", "npix", "snr")}


class Peakfinder8:
    """peakfinder8 for one detector layout: build once, call :meth:`find` per frame.

    ``panel_index`` (ss, fs) int: panel of each slab pixel (-1 outside panels); ``panel_bounds``
    (n_panels, 4): min_fs, max_fs, min_ss, max_ss; ``radius`` (ss, fs): distance from the beam in
    pixels; ``good`` (ss, fs) bool: True where a pixel may be used (mask).
    """

    def __init__(
        self,
        panel_index: np.ndarray,
        panel_bounds: np.ndarray,
        radius: np.ndarray,
        good: np.ndarray | None,
        params: Peakfinder8Params,
        tiled: bool | None = None,
    ) -> None:
        self.params = params
        pidx = np.asarray(panel_index, dtype=np.int32)
        self.shape = pidx.shape
        n_ss, n_fs = self.shape
        self.width = n_fs
        self.bounds = np.asarray(panel_bounds, dtype=np.int64).reshape(-1, 4)
        r = np.asarray(radius, dtype=np.float32)
        if r.shape != self.shape:
            raise ValueError(f"radius map {r.shape} does not match the slab {self.shape}")
        inside = pidx >= 0
        r_safe = np.where(inside & np.isfinite(r), r, 0.0).astype(np.float32)
        valid = inside & np.isfinite(r)
        if good is not None:
            good = np.asarray(good, dtype=bool)
            if good.shape != self.shape:
                raise ValueError(f"mask {good.shape} does not match the slab {self.shape}")
            valid &= good
        valid &= (r_safe >= params.min_res) & (r_safe <= params.max_res)
        self.valid_flat = valid.ravel()
        self.pidx_flat = pidx.ravel()
        rbin = np.rint(r_safe).astype(np.int32)
        self.rbin_flat = rbin.ravel()
        self.n_bins = int(np.ceil(float(r_safe.max()))) + 1 if r_safe.size else 1
        # valid pixels grouped by (tile, radial bin), raster order inside a group; a tile is a
        # <= TILE x TILE block of a panel, so laying a frame out reads it block by block
        flat_valid = np.flatnonzero(self.valid_flat)
        # big detectors: tile by tile, scattered in raster order; small ones fit in cache and are
        # gathered in plain bin order (fewer partial columns)
        self.tiled = bool(flat_valid.size > _TILED) if tiled is None else tiled
        tile = _tiles(self.pidx_flat, self.bounds, n_fs)[flat_valid] if self.tiled else 0
        rb = self.rbin_flat[flat_valid]
        tile = np.broadcast_to(np.asarray(tile, dtype=np.int64), rb.shape)
        order = np.lexsort((rb, tile))  # stable: raster order inside a group
        self.order = flat_valid[order].astype(np.int64)
        self.present, self.bin_count = np.unique(rb, return_counts=True)
        self.bin_count = self.bin_count.astype(np.int64)
        group = np.c_[tile[order], rb[order]]
        if group.shape[0]:
            starts = np.flatnonzero(np.r_[True, np.any(group[1:] != group[:-1], axis=1)])
        else:
            starts = np.zeros(0, dtype=np.int64)
        seg_len = np.diff(np.r_[starts, group.shape[0]]).astype(np.int64)
        seg_bin = np.searchsorted(self.present, rb[order][starts]) if starts.size else starts
        self._build_chunks(starts, seg_len, seg_bin)
        # seeds: pixels not on their panel's border (Cheetah scans 1..size-2 of each ASIC)
        ss_idx, fs_idx = np.divmod(np.arange(pidx.size), n_fs)
        b = (
            self.bounds[np.clip(self.pidx_flat, 0, None)]
            if self.bounds.size
            else np.zeros((pidx.size, 4))
        )
        self.interior_flat = (
            inside.ravel()
            & (fs_idx > b[:, 0])
            & (fs_idx < b[:, 1])
            & (ss_idx > b[:, 2])
            & (ss_idx < b[:, 3])
        )
        # local background disc (Cheetah: offsets -rw..rw-1 with sqrt(dx^2 + dy^2) <= rw)
        rw = 2 * params.local_bg_radius
        dy, dx = np.mgrid[-rw:rw, -rw:rw]
        disc = np.sqrt((dx * dx + dy * dy).astype(np.float32)) <= rw
        self.disc_dx = dx[disc].astype(np.int64)
        self.disc_dy = dy[disc].astype(np.int64)
        self.disc_flat = self.disc_dy * n_fs + self.disc_dx
        self.rbin_valid = np.where(self.valid_flat, self.rbin_flat, self.n_bins).astype(np.int32)
        self._stack_cache: dict[int, Peakfinder8] = {}

    @classmethod
    def from_geometry(
        cls, geom: Geometry, params: Peakfinder8Params, good: np.ndarray | None = None
    ) -> Peakfinder8:
        """Layout from a CrystFEL geometry; ``good`` (slab bool) is combined with its bad regions."""
        xs, ys = geom.lab_xy_px()
        radius = np.hypot(xs, ys)
        ok = ~geom.bad_pixel_mask()
        if good is not None:
            ok &= np.asarray(good, dtype=bool)
        bounds = np.array([[p.min_fs, p.max_fs, p.min_ss, p.max_ss] for p in geom.panels])
        return cls(geom.panel_index_map(), bounds, radius, ok, params)

    def _build_chunks(self, starts: np.ndarray, seg_len: np.ndarray, seg_bin: np.ndarray) -> None:
        """Lay the grouped valid pixels out as columns of CHUNK, each column one radial bin's.

        A (CHUNK, n_cols) array compares against a (1, n_cols) row of per-column thresholds with
        contiguous SIMD loops and no per-pixel threshold gathers; pads read 0 (``_realT`` is False
        there). A frame is scattered into the layout in raster order (``_dst``).
        """
        chunk = _CHUNK
        n_pix = self.valid_flat.size
        cols_per_seg = -(-seg_len // chunk)  # ceil
        n_cols = int(cols_per_seg.sum())
        col_start = np.r_[0, np.cumsum(cols_per_seg)[:-1]].astype(np.int64)
        self.col_bin = np.repeat(seg_bin, cols_per_seg).astype(np.int64)
        idx = np.full((chunk, n_cols), n_pix, dtype=np.int64)  # n_pix = the pad slot
        if n_cols:
            within = np.arange(self.order.size) - np.repeat(starts, seg_len)
            col = np.repeat(col_start, seg_len) + within // chunk
            idx[within % chunk, col] = self.order
        small = n_pix < 2**31 - 1
        self.idxT = idx.astype(np.int32) if small else idx
        self._realT = idx != n_pix
        # where each slab pixel goes in the layout (unused pixels: a dump slot past the end);
        # scattering a frame in raster order reads it sequentially (a gather in bin order
        # walks rings through the frame, and power-of-two rows thrash the cache)
        if self.tiled:
            n_slots = idx.size
            dst = np.full(n_pix, n_slots, dtype=np.int64)
            real = idx.ravel() != n_pix
            dst[idx.ravel()[real]] = np.flatnonzero(real)
            self._dst = dst.astype(np.int32) if n_slots < 2**31 - 1 else dst
            self._layout = np.zeros(n_slots + 1, dtype=np.float32)  # pads stay 0
        else:
            self._buffer = np.zeros(n_pix + 1, dtype=np.float32)  # [-1]: the pad slot, 0

    def _per_bin(self, per_column: np.ndarray) -> np.ndarray:
        """Sum per-column values into the present radial bins."""
        return np.bincount(self.col_bin, weights=per_column, minlength=self.present.size)

    # -- step 1 --------------------------------------------------------------------------------
    def _bounds(self, cnt: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, ...]:
        """Cheetah's per-bin mean, sigma, upper and lower threshold from counts and sums."""
        p = self.params
        n = np.maximum(cnt, 1).astype(np.float64)
        mean = s1 / n
        var = s2 / n
        var -= mean * mean
        sigma = np.sqrt(var, where=var >= 0, out=var.copy())  # Cheetah keeps a negative var
        spread = p.min_snr * sigma
        upper = np.maximum(mean + spread, p.adc_threshold)
        lower = mean - spread
        empty = cnt == 0
        if empty.any():
            mean[empty], upper[empty], lower[empty] = 0.0, FLT_MAX, FLT_MIN
        return mean, sigma, upper, lower

    def _col_sums(
        self, values: np.ndarray, squares: np.ndarray, sel: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Per-bin count, sum and sum of squares of the selected entries (columns, then bins)."""
        m = sel.astype(np.float32)
        s1 = self._per_bin(np.einsum("ij,ij->j", values, m))
        s2 = self._per_bin(np.einsum("ij,ij->j", squares, m))
        cnt = np.rint(self._per_bin(m.sum(axis=0))).astype(np.int64)
        return cnt, s1, s2

    def radial_stats(
        self, values: np.ndarray, first_round_all: bool = True, frame_min: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Offset and threshold per radial bin, rounds done, and the bright pixels (flat indices).

        ``values`` (CHUNK, n_cols) holds the valid pixels bin by bin, NaN where unused (pads, bad
        pixels; NaN never compares True). Cheetah's rounds: a bin with no counted pixel gets offset
        0 and threshold FLT_MAX; a round counts the pixels strictly between the previous round's
        thresholds. ``first_round_all``: every value is finite and inside Cheetah's initial +-1e9,
        so round 1 counts every pixel. ``frame_min``: a lower bound of every value (saves the
        per-bin minima while it is above every lower threshold).

        Exact shortcut: every upper threshold is >= ``adc_threshold``, so a pixel below it is
        counted by every round unless it is at or below the bin's lower threshold. Per bin, if
        the bin's smallest value is above the lower threshold, its "dim" pixels (< adc) count in
        full, once; only the few pixels >= adc (the "fringe") are compared round by round. A bin
        whose smallest value reaches the lower threshold moves wholly to the fringe. Stops early at
        the fixed point (the same counts and sums give the same thresholds).
        """
        n = self.n_bins
        roff = np.zeros(n, dtype=np.float64)
        rthr = np.full(n, FLT_MAX, dtype=np.float64)
        if values.size == 0:
            return roff, rthr, 0, np.zeros(0, dtype=np.int64)
        if not first_round_all:
            return self._radial_stats_full(values)
        k = self.present.size
        cols = self.col_bin
        n_cols = values.shape[1]
        adc = np.float32(self.params.adc_threshold)
        # dim pixels (< adc): counted by every round where the bin's minimum stays above the
        # lower threshold; their per-bin sums are taken once
        dim = values < adc
        dim &= self._realT  # pads read 0
        dimf = dim.astype(np.float32)
        vd = values * dimf
        core_cnt = np.rint(self._per_bin(dimf.sum(axis=0))).astype(np.int64)
        core_s1 = self._per_bin(vd.sum(axis=0))
        core_s2 = self._per_bin(np.einsum("ij,ij->j", vd, vd))
        vmin = np.full(k, -np.inf if frame_min is None else frame_min, dtype=np.float64)
        # the fringe: pixels >= adc (bright candidates and the tail of the background)
        fring = values >= adc
        if adc <= 0:
            fring &= self._realT
        fpos = _flat_true(fring)
        fv = values.ravel()[fpos]
        fb = cols[fpos % n_cols]
        # round 1 counts every pixel: dim + fringe
        w = fv.astype(np.float64)
        stats = (
            core_cnt + np.bincount(fb, minlength=k),
            core_s1 + np.bincount(fb, weights=w, minlength=k),
            core_s2 + np.bincount(fb, weights=w * w, minlength=k),
        )
        mean, _sigma, upper, lower = self._bounds(*stats)
        previous = stats
        exact = np.zeros(k, dtype=bool)
        done = 1
        for _ in range(_ITERATIONS - 1):
            lo32 = lower.astype(np.float32)
            up32 = upper.astype(np.float32)
            need = (core_cnt > 0) & ~exact & ~(vmin > lo32)
            if need.any():
                # the frame minimum does not clear these bins' lower thresholds: their own minima
                ncols = np.flatnonzero(need[cols])
                cmin = np.where(self._realT[:, ncols], values[:, ncols], np.float32(np.inf))
                bmin = np.full(k, np.inf)
                np.minimum.at(bmin, cols[ncols], cmin.min(axis=0))
                vmin[need] = bmin[need]
                exact |= need
            moved = (core_cnt > 0) & ~(vmin > lo32)  # the lower threshold could drop dim pixels
            if moved.any():
                mcols = np.flatnonzero(moved[cols])
                i, j = np.nonzero(dim[:, mcols])
                pos = i * n_cols + mcols[j]
                fpos = np.concatenate([fpos, pos])
                fv = np.concatenate([fv, values.ravel()[pos]])
                fb = np.concatenate([fb, cols[mcols[j]]])
                core_cnt, core_s1, core_s2 = (x.copy() for x in (core_cnt, core_s1, core_s2))
                core_cnt[moved], core_s1[moved], core_s2[moved] = 0, 0.0, 0.0
            sel = (fv > lo32[fb]) & (fv < up32[fb])
            w = fv[sel].astype(np.float64)
            stats = (
                core_cnt + np.bincount(fb[sel], minlength=k),
                core_s1 + np.bincount(fb[sel], weights=w, minlength=k),
                core_s2 + np.bincount(fb[sel], weights=w * w, minlength=k),
            )
            done += 1
            if all(np.array_equal(x, y) for x, y in zip(stats, previous, strict=True)):
                break  # fixed point: every further round gives the same thresholds
            previous = stats
            mean, _sigma, upper, lower = self._bounds(*stats)
        roff[self.present] = mean
        rthr[self.present] = upper
        up32 = upper.astype(np.float32)
        bright = fpos[fv > up32[fb]]  # bright pixels are >= adc: all in the fringe
        return roff, rthr, done, np.sort(self.idxT.ravel()[bright]).astype(np.int64)

    def _radial_stats_full(
        self, values: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Cheetah's rounds compared on every pixel (values with NaN/inf or beyond +-1e9)."""
        values = np.where(self._realT, values, np.float32(np.nan))  # NaN never compares True
        n = self.n_bins
        roff = np.zeros(n, dtype=np.float64)
        rthr = np.full(n, FLT_MAX, dtype=np.float64)
        zeroed = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        squares = zeroed * zeroed
        cols = self.col_bin
        k = self.present.size
        lower = np.full(k, -1e9)
        upper = np.full(k, 1e9)
        previous = None
        done = 0
        for _ in range(_ITERATIONS):
            sel = np.greater(values, lower.astype(np.float32)[cols][None, :])
            sel &= values < upper.astype(np.float32)[cols][None, :]
            stats = self._col_sums(zeroed, squares, sel)
            done += 1
            if previous is not None and all(
                np.array_equal(x, y) for x, y in zip(stats, previous, strict=True)
            ):
                break
            previous = stats
            mean, _sigma, upper, lower = self._bounds(*stats)
        roff[self.present] = mean
        rthr[self.present] = upper
        bright = np.greater(values, upper.astype(np.float32)[cols][None, :])
        return roff, rthr, done, np.sort(self.idxT[bright]).astype(np.int64)

    # -- steps 2-3 -----------------------------------------------------------------------------
    def find(self, frame: np.ndarray, stats: FrameStats | None = None, raw: bool = False) -> Any:
        """Peaks of one raw slab frame (ss, fs); non-finite pixels are ignored (and counted).

        Returns a :class:`PeakTable` (``raw=True``: a dict of its float64 columns).
        """
        frame = np.asarray(frame, dtype=np.float32)
        if frame.shape != self.shape:
            raise ValueError(f"frame shape {frame.shape} does not match the detector {self.shape}")
        flat = frame.ravel()
        lo, hi = float(flat.min()), float(flat.max())  # NaN or inf show up here
        n_bad = 0
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = ~np.isfinite(flat)
            n_bad = int(bad.sum())
            flat = np.where(bad, np.float32(np.nan), flat)
        values = self._gather(flat)
        first_all = n_bad == 0 and -1e9 < lo and hi < 1e9
        columns = self._search(flat, values, first_all, stats, lo if first_all else None)
        if stats is not None:
            stats.n_nonfinite = n_bad
        return columns if raw else PeakTable(**columns)

    def _gather(self, flat: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The valid pixels of one frame in the (CHUNK, n_cols) bin layout (pads 0).

        Tiled layouts return a view of a buffer that the next call overwrites.
        """
        if self.tiled:
            self._layout[self._dst] = flat
            return self._layout[:-1].reshape(self.idxT.shape)
        buf = self._buffer
        buf[:-1] = flat
        return np.take(buf, self.idxT, out=out)

    def _search(
        self,
        flat: np.ndarray,
        values: np.ndarray,
        first_all: bool,
        stats: FrameStats | None,
        frame_min: float | None = None,
    ) -> dict[str, np.ndarray]:
        roff, rthr, iterations, cand = self.radial_stats(values, first_all, frame_min)
        if stats is not None:
            stats.n_bright, stats.iterations = int(cand.size), iterations
        columns = self._peaks(flat, cand, roff, rthr)
        if columns["fs"].size > self.params.max_num_peaks:
            columns = {k: v[: self.params.max_num_peaks] for k, v in columns.items()}
            if stats is not None:
                stats.truncated = True
        if stats is not None:
            stats.n_peaks = int(columns["fs"].size)
        return columns

    def find_many(self, frames: np.ndarray, batch: int = 16) -> list[PeakTable]:
        """Peaks of many frames (n, ss, fs), ``batch`` at a time: same results as :meth:`find`.

        A batch is searched as one detector made of ``batch`` stacked copies, each with its own
        panels and radial bins, so numpy's per-call cost is paid once per batch. Each frame is
        laid out on its own (cache-sized) and a batch holding a NaN/inf frame goes frame by frame.
        """
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 3 or frames.shape[1:] != self.shape:
            raise ValueError(f"frames {frames.shape} do not match the detector (n, {self.shape})")
        out: list[PeakTable] = []
        n_ss = self.shape[0]
        # batching pays for small detectors only: keep a batch near a megapixel
        batch = max(1, min(batch, (1 << 20) // max(self.order.size, 1)))
        for start in range(0, frames.shape[0], batch):
            block = np.ascontiguousarray(frames[start : start + batch])
            n = block.shape[0]
            lo, hi = float(block.min()), float(block.max())
            if n == 1 or not (np.isfinite(lo) and np.isfinite(hi) and -1e9 < lo and hi < 1e9):
                out.extend(self.find(f) for f in block)
                continue
            stacked = self._stacked(n)
            flat = block.reshape(-1)
            if stacked.tiled:
                values = stacked._gather(flat)
            else:  # frame by frame: each fits in cache
                n_cols = self.idxT.shape[1]
                values = np.empty((self.idxT.shape[0], n * n_cols), dtype=np.float32)
                tmp = np.empty(self.idxT.shape, dtype=np.float32)
                for b in range(n):
                    values[:, b * n_cols : (b + 1) * n_cols] = self._gather(
                        block[b].ravel(), out=tmp
                    )
            cols = stacked._search(flat, values, True, None, lo)
            which = np.floor(cols["ss"] / n_ss).astype(np.int64)
            for b in range(n):
                sel = np.flatnonzero(which == b)[: self.params.max_num_peaks]
                part = {k: v[sel] for k, v in cols.items()}
                part["ss"] = part["ss"] - b * n_ss  # float64: exact before float32
                out.append(PeakTable(**part))
        return out

    def _stacked(self, n: int) -> Peakfinder8:
        """This detector ``n`` times along slow scan; copy b has panels + b * n_panels, bins + b * n_bins."""
        if n in self._stack_cache:
            return self._stack_cache[n]
        n_ss = self.shape[0]
        n_panels = self.bounds.shape[0]
        pidx = self.pidx_flat.reshape(self.shape)
        tiles_p, tiles_r, bounds = [], [], []
        for b in range(n):
            tiles_p.append(np.where(pidx >= 0, pidx + b * n_panels, -1))
            tiles_r.append(self.rbin_flat.reshape(self.shape) + b * (self.n_bins + 1))
            bounds.append(self.bounds + np.array([0, 0, b * n_ss, b * n_ss]))
        params = replace(self.params, min_res=0.0, max_res=float("inf"), max_num_peaks=2**62)
        finder = Peakfinder8(
            np.concatenate(tiles_p),
            np.concatenate(bounds),
            np.concatenate(tiles_r).astype(np.float32),
            np.tile(self.valid_flat.reshape(self.shape), (n, 1)),
            params,
            tiled=self.tiled,
        )
        if len(self._stack_cache) >= 2:  # keep the batch size and the last, shorter batch
            self._stack_cache.pop(next(iter(self._stack_cache)))
        self._stack_cache[n] = finder
        return finder

    def _components(self, cand: np.ndarray) -> tuple[np.ndarray, int]:
        """8-connected components of the bright pixels ``cand`` (sorted flat indices), per panel.

        Hook-and-compress label propagation on the candidate pixels only (a few per cent of a frame).
        """
        n = cand.size
        w = self.width
        fs = cand % w
        pan = self.pidx_flat[cand]
        rows, cols = [], []
        for off, dfs in ((1, 1), (w - 1, -1), (w, 0), (w + 1, 1)):
            target = cand + off
            pos = np.searchsorted(cand, target)
            pos_c = np.minimum(pos, n - 1)
            hit = (cand[pos_c] == target) & (fs + dfs == fs[pos_c]) & (pan[pos_c] == pan)
            rows.append(np.flatnonzero(hit))
            cols.append(pos_c[hit])
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        lab = np.arange(n)
        while r.size:
            lr, lc = lab[r], lab[c]
            diff = lr != lc
            if not diff.any():
                break
            low = np.minimum(lr[diff], lc[diff])
            np.minimum.at(lab, lr[diff], low)  # hook the roots onto the smaller label
            np.minimum.at(lab, lc[diff], low)
            while True:  # compress: point every node at its root
                nxt = lab[lab]
                if np.array_equal(nxt, lab):
                    break
                lab = nxt
        is_root = lab == np.arange(n)  # every node now points at its component's root
        root_id = np.cumsum(is_root) - 1
        return root_id[lab], int(root_id[-1]) + 1 if n else 0

    def _peaks(
        self, flat: np.ndarray, cand: np.ndarray, roff: np.ndarray, rthr: np.ndarray
    ) -> dict[str, np.ndarray]:
        p = self.params
        if cand.size == 0:
            return _no_peaks()
        w = self.width
        labels, n_comp = self._components(cand)
        npix = np.bincount(labels, minlength=n_comp)
        seeded = np.bincount(labels, weights=self.interior_flat[cand], minlength=n_comp) > 0
        keep = seeded & (npix >= p.min_pix_count) & (npix <= p.max_pix_count)
        if not keep.any():
            return _no_peaks()
        # restrict to the pixels of kept groups
        sel = keep[labels]
        cand, labels = cand[sel], labels[sel]
        kept = np.flatnonzero(keep)
        relabel = np.full(n_comp, -1, dtype=np.int64)
        relabel[kept] = np.arange(kept.size)
        labels = relabel[labels]
        m = kept.size
        npix = npix[kept]
        vals = flat[cand].astype(np.float64)
        fs = (cand % w).astype(np.float64)
        ss = (cand // w).astype(np.float64)
        # first centroid: weights I - radial offset (Cheetah's peak_search)
        wi = vals - roff[self.rbin_flat[cand]]
        sum_i = np.bincount(labels, weights=wi, minlength=m)
        ok = np.abs(sum_i) >= 1e-10
        denom = np.where(ok, np.abs(sum_i), 1.0)
        c_fs = np.rint(np.bincount(labels, weights=wi * fs, minlength=m) / denom).astype(np.int64)
        c_ss = np.rint(np.bincount(labels, weights=wi * ss, minlength=m) / denom).astype(np.int64)
        first = np.zeros(m, dtype=np.int64)
        first[labels[::-1]] = cand[::-1]  # smallest flat index of each group (cand is sorted)
        panel = self.pidx_flat[first]
        b = self.bounds[panel]
        # local background in the disc around the first centroid, clipped to the panel
        com_idx = c_ss * w + c_fs
        nb = com_idx[:, None] + self.disc_flat[None, :]
        rw = 2 * p.local_bg_radius
        near = (
            (c_fs - b[:, 0] < rw)
            | (b[:, 1] - c_fs < rw)
            | (c_ss - b[:, 2] < rw)
            | (b[:, 3] - c_ss < rw)
        )
        inside = None
        if near.any():  # clip the disc at the panel edges (Cheetah's within-ASIC check)
            bn = b[near]
            nb_fs = c_fs[near, None] + self.disc_dx[None, :]
            nb_ss = c_ss[near, None] + self.disc_dy[None, :]
            inside = np.ones(nb.shape, dtype=bool)
            inside[near] = (
                (nb_fs >= bn[:, 0:1])
                & (nb_fs <= bn[:, 1:2])
                & (nb_ss >= bn[:, 2:3])
                & (nb_ss <= bn[:, 3:4])
            )
            nb = np.where(inside, nb, com_idx[:, None])
        bg_vals = flat[nb]
        # background pixels: usable and below their radial threshold (bin n_bins: unusable)
        thr = np.append(rthr, -np.inf).astype(np.float32)
        bg = bg_vals < thr[self.rbin_valid[nb]]
        if inside is not None:
            bg &= inside
        n_bg = np.count_nonzero(bg, axis=1)
        bgv = np.where(bg, bg_vals, np.float32(0.0))
        s1 = bgv.sum(axis=1, dtype=np.float64)
        s2 = np.einsum("ij,ij->i", bgv, bgv, dtype=np.float64)
        bg_max = np.maximum(bgv.max(axis=1), 0.0).astype(np.float64)  # Cheetah starts the max at 0
        has_bg = n_bg > 0
        local_offset = np.where(has_bg, s1 / np.maximum(n_bg, 1), 0.0)
        var = s2 / np.maximum(n_bg, 1) - local_offset**2
        local_sigma = np.where(var >= 0, np.sqrt(np.abs(var)), 0.01)
        local_offset = np.where(has_bg, local_offset, roff[self.rbin_flat[com_idx]])
        local_sigma = np.where(has_bg, local_sigma, 0.01)
        # re-integrate with the local background; centroid weighted by raw intensity
        raw_sum = np.bincount(labels, weights=vals, minlength=m)
        ok &= np.abs(raw_sum) >= 1e-10
        rden = np.where(np.abs(raw_sum) >= 1e-10, np.abs(raw_sum), 1.0)
        com_fs = np.bincount(labels, weights=vals * fs, minlength=m) / rden
        com_ss = np.bincount(labels, weights=vals * ss, minlength=m) / rden
        tot = raw_sum - npix * local_offset
        vmax = np.full(m, -np.inf)
        np.maximum.at(vmax, labels, vals)
        max_i = np.maximum(vmax - local_offset, 0.0)
        snr = np.where(
            np.abs(local_sigma) > 1e-10, tot / np.where(local_sigma == 0, 1.0, local_sigma), 0.0
        )
        ok &= snr >= p.min_snr
        ok &= max_i >= bg_max - local_offset
        ok &= (com_fs >= b[:, 0]) & (com_fs <= b[:, 1]) & (com_ss >= b[:, 2]) & (com_ss <= b[:, 3])
        # Cheetah's order: panel by panel, groups in raster order of their first pixel
        idx = np.flatnonzero(ok)
        idx = idx[np.lexsort((first[idx], panel[idx]))]
        return {
            "fs": com_fs[idx],
            "ss": com_ss[idx],
            "intensity": tot[idx],
            "max_intensity": max_i[idx],
            "npix": npix[idx].astype(np.float64),
            "snr": snr[idx],
        }


def find_peaks(
    frame: np.ndarray, geom: Geometry, params: Peakfinder8Params, good: np.ndarray | None = None
) -> PeakTable:
    """One-off convenience: build the layout and find the peaks of one frame."""
    return Peakfinder8.from_geometry(geom, params, good).find(frame)


def match_fraction(a: PeakTable, b: PeakTable, tol_px: float = 1.0) -> tuple[int, int, int]:
    """(matched, len(a), len(b)): one-to-one pairs closer than ``tol_px`` (Hungarian matching)."""
    if len(a) == 0 or len(b) == 0:
        return 0, len(a), len(b)
    from scipy.optimize import linear_sum_assignment

    d = np.hypot(a.fs[:, None] - b.fs[None, :], a.ss[:, None] - b.ss[None, :])
    cost = np.where(d <= tol_px, d, 1e6)
    r, c = linear_sum_assignment(cost)
    return int((d[r, c] <= tol_px).sum()), len(a), len(b)
