"""The built-in still indexer: peaks -> reciprocal vectors -> DPS basis -> checked, refined crystal.

Per frame (what indexamajig does with a target cell, ``--indexing=<method>`` + cell checks):

1. frames with fewer than ``min_peaks`` peaks are not hits and are never indexed;
2. peaks become scattering vectors with the geometry, the frame's camera length and photon energy;
3. candidate bases: the DPS transform at the target cell's axis lengths (:mod:`.search`), or
   cctbx rstbx's full DPS search (:mod:`.dps`) (``search: auto`` tries the targeted search first
   and rstbx DPS on frames with enough spots when it fails);
4. each basis is brought into the target's setting, refined against all peaks (:mod:`.refine`)
   and accepted only if its cell matches the target within indexamajig-like tolerances and it
   indexes at least ``min_indexed_peaks`` and ``min_indexed_fraction`` of the peaks;
5. accepted crystals get predicted reflections (:mod:`.predict`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from braggflow.formats.cell import UnitCell
from braggflow.formats.geometry import Geometry
from braggflow.indexing.cellmatch import (
    Tolerance,
    assemble_bases,
    cell_agrees,
    cell_of,
    to_target_setting,
)
from braggflow.indexing.detector import Detector, wavelength_A
from braggflow.indexing.predict import Prediction, estimate_profile_radius, predict
from braggflow.indexing.refine import Fit, assign, cell_ties, refine, refine_constrained
from braggflow.indexing.search import completed_bases, targeted_candidates

SEARCHES = ("auto", "targeted", "dps")

# reasons a frame ends up without a crystal (counted in the index summary)
NOT_HIT = "too_few_peaks"
NO_CANDIDATES = "no_candidate_basis"
CELL_MISMATCH = "cell_mismatch"
FEW_INDEXED = "too_few_peaks_indexed"
NO_PANEL = "peaks_off_panels"


@dataclass(frozen=True)
class BuiltinParams:
    """Settings of the built-in indexer (config ``index.builtin``)."""

    search: str = "auto"
    min_peaks: int = 10
    max_spots: int = 80
    length_tolerance_pct: float = 5.0
    angle_tolerance_deg: float = 1.5
    hkl_tolerance: float = 0.2
    min_indexed_peaks: int = 10
    min_indexed_fraction: float = 0.5
    grid_step_deg: float = 0.6
    candidates_per_axis: int = 10
    dps_min_spots: int = 40
    max_lattices: int = 2
    profile_radius_quantile: float = 1.0
    min_profile_radius_invA: float = 2e-4
    push_res_invnm: float = 0.5

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, not {self.search!r}")
        if not 0 < self.hkl_tolerance < 0.5:
            raise ValueError("hkl_tolerance must be in (0, 0.5)")
        if not 0 <= self.min_indexed_fraction <= 1:
            raise ValueError("min_indexed_fraction must be in [0, 1]")
        if self.max_lattices < 1 or self.min_peaks < 1:
            raise ValueError("max_lattices and min_peaks must be >= 1")

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> BuiltinParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (cfg or {}).items() if k in names})

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.length_tolerance_pct / 100.0, self.angle_tolerance_deg)


@dataclass
class Crystal:
    """An accepted lattice of one frame."""

    reciprocal: np.ndarray  # rows a*, b*, c* (1/Angstrom, lab frame)
    peak_indexed: np.ndarray  # (n_peaks,) bool over the frame's peaks
    rms_hkl: float
    profile_radius: float  # 1/Angstrom
    resolution_limit: float  # 1/Angstrom (highest-resolution indexed peak)
    prediction: Prediction

    @property
    def cell(self) -> tuple[float, float, float, float, float, float]:
        return cell_of(np.linalg.inv(self.reciprocal).T)


@dataclass
class FrameResult:
    n_peaks: int
    crystals: list[Crystal] = field(default_factory=list)
    reason: str | None = None  # why no crystal (None when indexed)
    seconds: float = 0.0
    search_used: str | None = None

    @property
    def indexed(self) -> bool:
        return bool(self.crystals)


class BuiltinIndexer:
    """Index frames of one detector against one target cell."""

    def __init__(
        self, geom: Geometry, target: UnitCell, params: BuiltinParams | None = None
    ) -> None:
        self.geom = geom
        self.target = target
        self.params = params or BuiltinParams()
        self._detectors: dict[float | None, Detector] = {}

    def detector(self, clen_m: float | None) -> Detector:
        key = None if clen_m is None else round(float(clen_m), 9)
        if key not in self._detectors:
            if len(self._detectors) > 64:
                self._detectors.clear()
            self._detectors[key] = Detector.from_geometry(self.geom, clen_m)
        return self._detectors[key]

    def index_frame(
        self,
        fs: np.ndarray,
        ss: np.ndarray,
        intensity: np.ndarray,
        photon_energy_ev: float,
        clen_m: float | None = None,
    ) -> FrameResult:
        t0 = time.perf_counter()
        result = self._index(
            np.asarray(fs, float),
            np.asarray(ss, float),
            np.asarray(intensity, float),
            photon_energy_ev,
            clen_m,
        )
        result.seconds = time.perf_counter() - t0
        return result

    def _index(
        self,
        fs: np.ndarray,
        ss: np.ndarray,
        intensity: np.ndarray,
        photon_energy_ev: float,
        clen_m: float | None,
    ) -> FrameResult:
        p = self.params
        n = len(fs)
        if n < p.min_peaks:
            return FrameResult(n, reason=NOT_HIT)
        det = self.detector(clen_m)
        wavelength = wavelength_A(photon_energy_ev)
        panel = det.panel_of(fs, ss)
        on_panel = panel >= 0
        if on_panel.sum() < p.min_peaks:
            return FrameResult(n, reason=NO_PANEL)
        q = np.zeros((n, 3))
        q[on_panel] = det.scattering_vectors(
            panel[on_panel], fs[on_panel], ss[on_panel], wavelength
        )
        remaining = on_panel.copy()
        result = FrameResult(n)
        for _ in range(p.max_lattices):
            if remaining.sum() < p.min_peaks:
                break
            fit, reason, search = self._find_lattice(q, intensity, remaining, wavelength)
            result.search_used = result.search_used or search
            if fit is None:
                if not result.crystals:
                    result.reason = reason
                break
            idx = np.flatnonzero(remaining)
            peak_indexed = np.zeros(n, dtype=bool)
            peak_indexed[idx[fit.indexed]] = True
            result.crystals.append(self._crystal(fit, q[idx], peak_indexed, det, wavelength))
            remaining &= ~peak_indexed
        return result

    def _find_lattice(
        self, q_all: np.ndarray, intensity: np.ndarray, use: np.ndarray, wavelength: float
    ) -> tuple[Fit | None, str, str]:
        p = self.params
        q = q_all[use]
        order = np.argsort(-intensity[use], kind="stable")[: p.max_spots]
        q_search = q[order]
        best: Fit | None = None
        reason = NO_CANDIDATES
        searches = ["targeted", "dps"] if p.search == "auto" else [p.search]
        used = searches[0]
        for search in searches:
            if search == "dps" and p.search == "auto" and len(q_search) < p.dps_min_spots:
                break
            used = search
            for bases in self._candidate_bases(q_search, search):
                fit, why = self._best_fit(q, bases, wavelength)
                if fit is not None:
                    return fit, reason, used
                if why is not None and (reason == NO_CANDIDATES or why == CELL_MISMATCH):
                    reason = why
        return best, reason, used

    def _candidate_bases(self, q: np.ndarray, search: str) -> Iterator[list[np.ndarray]]:
        """Batches of candidate bases, cheapest first (later batches only when earlier ones fail)."""
        p = self.params
        # looser angles at this stage: refinement tightens them, the strict check comes after
        loose = Tolerance(p.tolerance.length_frac, max(5.0, 2.0 * p.angle_tolerance_deg))
        if search == "targeted":
            cands = targeted_candidates(
                q,
                self.target,
                step_deg=p.grid_step_deg,
                n_per_axis=p.candidates_per_axis,
                length_tol=p.tolerance.length_frac,
            )
            yield assemble_bases(cands, self.target, loose.angle_deg, max_bases=96)
            yield completed_bases(
                q, cands, self.target, p.grid_step_deg, p.tolerance.length_frac, loose.angle_deg
            )
            return
        from braggflow.indexing.dps import dps_basis

        t = self.target
        direct = dps_basis(q, max_cell_A=1.5 * max(t.a_A, t.b_A, t.c_A))
        basis = None if direct is None else to_target_setting(direct, t, loose, max_index=3)
        yield [] if basis is None else [basis]

    def _best_fit(
        self, q: np.ndarray, bases: list[np.ndarray], wavelength: float
    ) -> tuple[Fit | None, str | None]:
        """The best basis after refinement that passes the checks, or why none did."""
        p = self.params
        target = self.target.parameters
        ties = cell_ties(self.target.lattice_type, self.target.unique_axis)
        # cheap linear refinement of every basis first; symmetry-equivalent bases rank together
        fits = sorted(
            (refine(q, b, p.hkl_tolerance) for b in bases), key=lambda f: (-f.n_indexed, f.rms_hkl)
        )
        why: str | None = None
        tried: list[np.ndarray] = []
        for fit in fits:
            if not self._enough(fit, len(q)):
                why = why or FEW_INDEXED
                break  # sorted: the rest index fewer peaks
            if any(np.array_equal(fit.indexed, t) for t in tried):
                continue
            if len(tried) >= 3:
                break
            tried.append(fit.indexed)
            # orientation + the lattice's free cell parameters, refined on all indexed peaks
            for _ in range(2):
                direct = refine_constrained(
                    q[fit.indexed], fit.hkl[fit.indexed], fit.direct, target, ties, wavelength
                )
                hkl, indexed, rms = assign(q, direct, p.hkl_tolerance)
                fit = Fit(direct=direct, indexed=indexed, hkl=hkl, rms_hkl=rms)
                if not self._enough(fit, len(q)):
                    break
            if not self._enough(fit, len(q)):
                why = FEW_INDEXED
                continue
            if not cell_agrees(cell_of(fit.direct), target, p.tolerance):
                why = CELL_MISMATCH
                continue
            return fit, None
        return None, why

    def _enough(self, fit: Fit, n: int) -> bool:
        p = self.params
        return fit.n_indexed >= p.min_indexed_peaks and fit.n_indexed >= p.min_indexed_fraction * n

    def _crystal(
        self, fit: Fit, q: np.ndarray, peak_indexed: np.ndarray, det: Detector, wavelength: float
    ) -> Crystal:
        p = self.params
        rstar = fit.reciprocal
        # the profile radius from the well-indexed peaks only: a peak of another lattice (or a
        # false peak) that falls within the index tolerance by chance sits far off the sphere
        dev = np.abs(q @ fit.direct.T - fit.hkl).max(axis=1)
        well = fit.indexed & (dev <= 0.5 * p.hkl_tolerance)
        hkl = fit.hkl[well if well.sum() >= 3 else fit.indexed]
        radius = estimate_profile_radius(
            rstar, hkl, wavelength, p.profile_radius_quantile, p.min_profile_radius_invA
        )
        res_limit = float(np.linalg.norm(q[fit.indexed], axis=1).max())
        q_max = min(det.max_q(wavelength) * 1.001, res_limit + p.push_res_invnm / 10.0)
        pred = predict(rstar, det, wavelength, radius, q_max)
        return Crystal(
            reciprocal=rstar,
            peak_indexed=peak_indexed,
            rms_hkl=fit.rms_hkl,
            profile_radius=radius,
            resolution_limit=res_limit,
            prediction=pred,
        )
