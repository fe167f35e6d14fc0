"""Peaks from segmentation masks (paper section 2.2.3.2, done properly).

The model segments the assembled image; peaks are measured on the raw detector data. The mask
goes back to the raw slab through the pixel map, each panel is labelled on its own (a spot never
spans two panels: the connected components of one panel's pixels), and every component gives one
peak, measured on the raw frame against a local background:

- background ``b`` and noise ``sigma``: median and standard deviation of the good pixels of the
  same panel within ``background_radius_px`` of the component, away from every segmented pixel
  (the panel's own statistics when too few such pixels exist);
- total intensity ``sum(I - b)``, max intensity ``max(I) - b``, pixel count;
- centroid weighted by ``max(I - b, 0)`` in raw slab coordinates, pixel centre at an integer
  (docs/conventions.md); an all-zero weight falls back to the pixel centre of mass;
- SNR = total intensity / sigma, as Cheetah's peakfinder8 defines it (``peak_tot_i / local_sigma``,
  0 when sigma vanishes).

The public Wang et al. writer stored zero intensities and unweighted centroids; these are the
quantities CrystFEL's ``--peaks=cxi`` expects from Cheetah.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from braggflow.formats.cxi import MAX_PEAKS, PeakTable


@dataclass(frozen=True)
class PeakParams:
    """Which components count as peaks and how their background is estimated."""

    min_pixels: int = 2
    max_pixels: int = 400
    min_snr: float = 0.0
    background_radius_px: int = 4
    min_background_pixels: int = 8
    connectivity: int = 8
    max_peaks: int = MAX_PEAKS

    def __post_init__(self) -> None:
        if self.min_pixels < 1 or self.max_pixels < self.min_pixels:
            raise ValueError(
                f"need 1 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}"
            )
        if self.connectivity not in (4, 8):
            raise ValueError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if self.background_radius_px < 1 or self.min_background_pixels < 1:
            raise ValueError("background_radius_px and min_background_pixels must be >= 1")
        if self.max_peaks < 1:
            raise ValueError(f"max_peaks must be >= 1, got {self.max_peaks}")


@dataclass(frozen=True)
class PanelLayout:
    """Which raw slab pixels belong to which panel, with each panel's bounding rectangle."""

    raw_panel: np.ndarray  # (n_ss, n_fs) int, -1 outside panels
    boxes: tuple[tuple[int, slice, slice], ...]

    @classmethod
    def from_raw_panel(cls, raw_panel: np.ndarray) -> PanelLayout:
        raw_panel = np.asarray(raw_panel)
        boxes = []
        for p in np.unique(raw_panel[raw_panel >= 0]):
            ss, fs = np.nonzero(raw_panel == p)
            boxes.append((int(p), slice(ss.min(), ss.max() + 1), slice(fs.min(), fs.max() + 1)))
        return cls(raw_panel, tuple(boxes))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.raw_panel.shape)  # type: ignore[return-value]


def _structure(connectivity: int) -> np.ndarray:
    return np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)


def label_per_panel(
    mask: np.ndarray, layout: PanelLayout, connectivity: int = 8
) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` (raw slab, bool) within each panel; labels 1..n, 0 = none.

    The slab is labelled once; the rare components that touch two panels (panels adjacent in
    the slab) are labelled again panel by panel, so no component ever spans two panels.
    """
    structure = _structure(connectivity)
    labels, n = ndimage.label(mask, structure)
    if n == 0:
        return labels, 0
    ss_i, fs_i = np.nonzero(labels)
    lab = labels[ss_i, fs_i]
    pan = layout.raw_panel[ss_i, fs_i]
    lo = np.full(n + 1, np.iinfo(np.int64).max)
    hi = np.full(n + 1, -1)
    np.minimum.at(lo, lab, pan)
    np.maximum.at(hi, lab, pan)
    crossing = np.flatnonzero(lo[1:] != hi[1:]) + 1
    if crossing.size == 0:
        return labels, n
    redo = np.isin(labels, crossing)
    labels[redo] = 0
    for p, rows, cols in layout.boxes:
        sub = redo[rows, cols] & (layout.raw_panel[rows, cols] == p)
        if sub.any():
            part, k = ndimage.label(sub, structure)
            labels[rows, cols][sub] = part[sub] + n
            n += k
    used = np.unique(labels[labels > 0])  # consecutive labels again
    remap = np.zeros(n + 1, np.int32)
    remap[used] = np.arange(1, used.size + 1, dtype=np.int32)
    return remap[labels], int(used.size)


def grouped_median(groups: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group 1..n (NaN for an empty group), by one argsort."""
    out = np.full(n, np.nan)
    if groups.size == 0:
        return out
    values = np.asarray(values, dtype=np.float64)
    low = values.min()
    span = values.max() - low + 1.0
    order = np.argsort(groups * span + (values - low))  # group-major, then value
    v = values[order]
    counts = np.bincount(groups, minlength=n + 1)[1:]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out[has] = 0.5 * (v[lo] + v[hi])
    return out


def peaks_from_mask(
    frame: np.ndarray,
    mask: np.ndarray,
    layout: PanelLayout,
    bad: np.ndarray | None = None,
    params: PeakParams | None = None,
) -> tuple[PeakTable, np.ndarray]:
    """One frame's peaks from its raw-slab segmentation ``mask``; returns (table, panel index per peak).

    ``frame`` (n_ss, n_fs) raw data; ``bad`` (n_ss, n_fs) True where a pixel must be ignored.
    """
    params = params or PeakParams()
    frame = np.asarray(frame, dtype=np.float32)
    if frame.shape != layout.shape or mask.shape != layout.shape:
        raise ValueError(
            f"frame {frame.shape} / mask {mask.shape} do not match the slab {layout.shape}"
        )
    good = layout.raw_panel >= 0
    good &= np.isfinite(frame)
    if bad is not None:
        good &= ~np.asarray(bad, bool)
    seg = np.asarray(mask, bool) & good
    labels, n = label_per_panel(seg, layout, params.connectivity)
    if n == 0:
        return PeakTable(), np.zeros(0, np.int32)

    ss_i, fs_i = np.nonzero(labels)
    lab = labels[ss_i, fs_i]
    npix = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    keep = (npix >= params.min_pixels) & (npix <= params.max_pixels)
    if not keep.any():
        return PeakTable(), np.zeros(0, np.int32)
    if not keep.all():  # drop rejected components before the background pass
        remap = np.zeros(n + 1, np.int32)
        remap[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = remap[labels]
        lab = remap[lab]
        inside = lab > 0
        ss_i, fs_i, lab = ss_i[inside], fs_i[inside], lab[inside]
        n = int(keep.sum())
        npix = npix[keep]
    panel = np.zeros(n, np.int64)
    panel[lab - 1] = layout.raw_panel[ss_i, fs_i]  # one panel per component by construction

    background, sigma = _local_background(frame, seg, labels, n, panel, good, layout, params)

    value = frame[ss_i, fs_i].astype(np.float64)
    signal = value - background[lab - 1]
    total = np.bincount(lab, weights=signal, minlength=n + 1)[1:]
    peak_max = np.full(n, -np.inf)
    np.maximum.at(peak_max, lab - 1, value)
    peak_max -= background
    weight = np.clip(signal, 0.0, None)
    wsum = np.bincount(lab, weights=weight, minlength=n + 1)[1:]
    positive = wsum > 0
    denom = np.where(positive, wsum, 1.0)
    cfs_w = np.bincount(lab, weights=weight * fs_i, minlength=n + 1)[1:] / denom
    css_w = np.bincount(lab, weights=weight * ss_i, minlength=n + 1)[1:] / denom
    cfs = np.where(positive, cfs_w, np.bincount(lab, weights=fs_i, minlength=n + 1)[1:] / npix)
    css = np.where(positive, css_w, np.bincount(lab, weights=ss_i, minlength=n + 1)[1:] / npix)
    # SNR as in Cheetah's peakfinder8: background-subtracted total over the local sigma
    snr = np.where(sigma > 1e-10, total / np.where(sigma > 1e-10, sigma, 1.0), 0.0)

    sel = snr >= params.min_snr
    table = PeakTable(
        fs=cfs[sel],
        ss=css[sel],
        intensity=total[sel],
        max_intensity=peak_max[sel],
        npix=npix[sel],
        snr=snr[sel],
    )
    panel = panel[sel].astype(np.int32)
    if len(table) > params.max_peaks:
        order = np.sort(np.argsort(-table.intensity, kind="stable")[: params.max_peaks])
        table, panel = table.take(order), panel[order]
    return table, panel


def _local_background(
    frame: np.ndarray,
    seg: np.ndarray,
    labels: np.ndarray,
    n: int,
    panel: np.ndarray,
    good: np.ndarray,
    layout: PanelLayout,
    params: PeakParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Median and standard deviation of each component's surroundings (see module docstring)."""
    size = 2 * params.background_radius_px + 1
    near = ndimage.maximum_filter(labels, size=size, mode="constant", cval=0)
    clear = ndimage.maximum_filter(seg.view(np.uint8), size=3, mode="constant", cval=0) == 0
    ring_ss, ring_fs = np.nonzero((near > 0) & clear & good)
    group = near[ring_ss, ring_fs]
    same = layout.raw_panel[ring_ss, ring_fs] == panel[group - 1]
    ring_ss, ring_fs, group = ring_ss[same], ring_fs[same], group[same]
    values = frame[ring_ss, ring_fs].astype(np.float64)
    counts = np.bincount(group, minlength=n + 1)[1:]
    background = grouped_median(group, values, n)
    safe = np.maximum(counts, 1)
    mean = np.bincount(group, weights=values, minlength=n + 1)[1:] / safe
    mean_sq = np.bincount(group, weights=values * values, minlength=n + 1)[1:] / safe
    sigma = np.sqrt(np.clip(mean_sq - mean * mean, 0.0, None))
    few = counts < params.min_background_pixels
    if few.any():  # crowded or cornered spots: the statistics of their whole panel
        panel_bg = np.where(clear & good, layout.raw_panel + 1, 0)
        for p in np.unique(panel[few]):
            values = frame[panel_bg == p + 1]
            sel = few & (panel == p)
            background[sel] = float(np.median(values)) if values.size else 0.0
            sigma[sel] = float(np.std(values)) if values.size > 1 else 0.0
    return background, sigma
