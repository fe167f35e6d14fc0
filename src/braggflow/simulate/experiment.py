"""One simulated experiment: detector + crystal + beam, frames and their ground truth.

Randomness is seeded hierarchically (numpy SeedSequence): the experiment seed fixes the
reflection intensities and the detector's dead/hot pixels; (seed, run name) fixes which frames
are blank or multi-lattice; (seed, run name, frame index) fixes everything in one frame. Same
config and seed, same bytes; frames can be generated in any order or in parallel.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from braggflow.formats.cell import UnitCell, read_cell
from braggflow.formats.geometry import Geometry
from braggflow.simulate.crystal import oriented_reciprocal_basis, random_rotation, reflection_table
from braggflow.simulate.detector import DetectorModel, load_geometry
from braggflow.simulate.diffraction import (
    FWHM_TO_SIGMA,
    HC_EV_A,
    excitation_error,
    partiality,
    polarisation_factor,
    profile_sigma,
)
from braggflow.simulate.render import (
    background_photons,
    detector_response,
    footprint_and_snr,
    render_spots,
)

log = logging.getLogger(__name__)

TAG_PLAN = 0x91A
UM_TO_A = 1e4
A_INV_TO_NM_INV = 10.0


@dataclass
class FrameResult:
    """Everything simulated for one frame (arrays on the raw slab)."""

    data: np.ndarray  # (ss, fs) float32 ADU, what the CXI file holds
    expected_photons: np.ndarray  # (ss, fs) noiseless photons: background + spots
    background: np.ndarray  # (ss, fs) expected background photons
    spots: np.ndarray  # (ss, fs) expected spot photons
    footprint: np.ndarray  # (ss, fs) uint8
    photon_energy_ev: float
    clen_m: float
    lattices: list[dict[str, Any]]
    reflections: dict[str, np.ndarray]


def run_key(run: str) -> int:
    """A stable integer for a run name (seeds its random streams)."""
    return zlib.crc32(run.encode())


class Experiment:
    """A configured simulated experiment (``params``: the validated ``simulate`` config section)."""

    def __init__(
        self, geometry: Geometry, cell: UnitCell, params: Mapping[str, Any], seed: int
    ) -> None:
        self.params = params
        self.seed = int(seed)
        self.cell = cell
        self.geometry = geometry
        self.detector = DetectorModel.build(
            geometry,
            params["detector"],
            clen_m=float(params["clen_m"]),
            photon_energy_ev=float(params["photon_energy_ev"]),
            seed=self.seed,
            polarisation=float(params["polarisation"]),
        )
        e_max = float(params["photon_energy_ev"]) * (
            1.0 + 4.0 * float(params["photon_energy_jitter_fwhm"]) * FWHM_TO_SIGMA
        )
        q_max = self.detector.max_q_inv_A(e_max) * 1.01
        crystal = params["crystal"]
        self.table = reflection_table(cell, q_max, self.seed, float(crystal["b_factor_A2"]))
        self.q_crystal = self.table.hkl @ cell.reciprocal_matrix()  # (n, 3) 1/A, crystal frame
        self.q_len = np.linalg.norm(self.q_crystal, axis=1)
        valid = self.detector.panel_index >= 0
        self._sin_half_tt = np.where(
            valid, np.sin(np.nan_to_num(self.detector.two_theta) / 2.0), 0.0
        )
        log.info(
            "experiment: %d panels, slab %s, %d reflections to 1/d = %.3f 1/A (d = %.2f A)",
            len(geometry.panels),
            geometry.slab_shape,
            len(self.table),
            q_max,
            1.0 / q_max,
        )

    @classmethod
    def from_files(
        cls, geometry_path: str | Path, cell_path: str | Path, params: Mapping[str, Any], seed: int
    ) -> Experiment:
        return cls(load_geometry(geometry_path), read_cell(cell_path), params, seed)

    # ---- per run -------------------------------------------------------------------------
    def run_plan(self, run: str, n_frames: int) -> np.ndarray:
        """Number of lattices per frame: exact blank / multi-lattice counts, shuffled per run."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, run_key(run), TAG_PLAN]))
        n_blank = int(round(float(self.params["blank_fraction"]) * n_frames))
        n_hits = n_frames - n_blank
        n_multi = int(round(float(self.params["multi_lattice_fraction"]) * n_hits))
        plan = np.array([0] * n_blank + [2] * n_multi + [1] * (n_hits - n_multi), dtype=np.int32)
        return rng.permutation(plan)

    def frame_rng(self, run: str, index: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, run_key(run), int(index)]))

    # ---- per frame -----------------------------------------------------------------------
    def simulate_frame(self, run: str, index: int, n_lattices: int) -> FrameResult:
        p = self.params
        det = self.detector
        rng = self.frame_rng(run, index)
        energy = float(p["photon_energy_ev"]) * (
            1.0 + float(p["photon_energy_jitter_fwhm"]) * FWHM_TO_SIGMA * rng.normal()
        )
        k = energy / HC_EV_A  # |k| = 1/lambda (1/A)
        bg_p = p["background"]
        q_pix = 2.0 * k * self._sin_half_tt
        level = float(np.exp(float(bg_p["shot_log_sigma"]) * rng.normal()))
        background = background_photons(
            q_pix,
            det.geometric,
            level=level * float(bg_p["photons"]),
            falloff_inv_A=float(bg_p["falloff_inv_A"]),
            ring_q_inv_A=1.0 / float(bg_p["water_ring_d_A"]),
            ring_sigma_inv_A=float(bg_p["water_ring_fwhm_inv_A"]) * FWHM_TO_SIGMA,
            ring_level=level * float(bg_p["water_ring_photons"]),
        )
        lattices: list[dict[str, Any]] = []
        parts: list[dict[str, np.ndarray]] = []
        for j in range(n_lattices):
            lattice, refl = self._lattice(rng, k, j)
            lattices.append(lattice)
            parts.append(refl)
        refl = (
            {key: np.concatenate([r[key] for r in parts]) for key in parts[0]}
            if parts
            else _empty_reflections()
        )
        spot_p = p["spot"]
        n = refl["h"].shape[0]
        sigma = np.full(n, float(spot_p["sigma_px"]))
        rendered = render_spots(
            det.slab_shape,
            det.panel_bounds,
            refl["panel"],
            refl["fs"],
            refl["ss"],
            refl["photons_full"],
            sigma,
            float(spot_p["tail_fraction"]),
            np.full(n, float(spot_p["tail_sigma_px"])),
        )
        read_noise_photons = det.read_noise_adu / det.adu_per_photon
        fp, snr = footprint_and_snr(
            rendered,
            refl["photons_full"],
            background,
            read_noise_photons,
            float(spot_p["footprint_fraction"]),
        )
        centre = np.rint(refl["ss"]).astype(np.int64) * det.slab_shape[1] + np.rint(
            refl["fs"]
        ).astype(np.int64)
        centre_ok = det.mask.ravel()[centre] == 0 if n else np.zeros(0, dtype=bool)
        visible = (snr >= float(spot_p["visible_snr"])) & centre_ok
        footprint = np.zeros(det.slab_shape[0] * det.slab_shape[1], dtype=np.uint8)
        footprint[rendered.flat_index[fp & visible[:, None, None]]] = 1
        expected = background + rendered.image
        data = detector_response(
            expected,
            rng,
            det.adu_per_photon,
            det.read_noise_adu,
            det.max_adu,
            det.dead,
            det.hot_adu,
            det.no_panel,
        )
        reflections = {
            "lattice": refl["lattice"],
            "h": refl["h"],
            "k": refl["k"],
            "l": refl["l"],
            "panel": refl["panel"],
            "fs": refl["fs"],
            "ss": refl["ss"],
            "photons": refl["photons_full"] * rendered.on_panel_fraction,
            "snr": snr,
            "visible": visible,
            "partiality": refl["partiality"],
        }
        return FrameResult(
            data=data,
            expected_photons=expected,
            background=background,
            spots=rendered.image,
            footprint=footprint.reshape(det.slab_shape),
            photon_energy_ev=energy,
            clen_m=det.clen_m,
            lattices=lattices,
            reflections=reflections,
        )

    def _lattice(
        self, rng: np.random.Generator, k: float, index: int
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """One crystal: orientation, size, and its reflections that land on a panel."""
        p, c = self.params, self.params["crystal"]
        rotation = random_rotation(rng)
        size_um = float(
            np.clip(
                float(c["size_um_median"]) * np.exp(float(c["size_log_sigma"]) * rng.normal()),
                float(c["size_um_min"]),
                float(c["size_um_max"]),
            )
        )
        q_lab = self.q_crystal @ rotation.T
        s = excitation_error(q_lab, k)
        sigma = profile_sigma(
            self.q_len,
            k,
            size_um * UM_TO_A,
            np.radians(float(c["mosaicity_deg"])),
            float(p["bandwidth_fwhm"]),
        )
        part = partiality(s, sigma)
        near = np.flatnonzero(part >= float(p["spot"]["min_partiality"]))
        direction = q_lab[near].copy()
        direction[:, 2] += k
        panel, fs, ss = self.detector.planes.project(direction)
        on = panel >= 0
        near, direction, panel, fs, ss = near[on], direction[on], panel[on], fs[on], ss[on]
        # kinematic: photons ~ crystal volume x |F|^2 (Wilson) x partiality x polarisation
        photons = (
            float(c["photons_per_um3"])
            * size_um**3
            * self.table.intensity[near]
            * part[near]
            * polarisation_factor(direction, float(p["polarisation"]))
        )
        basis = oriented_reciprocal_basis(self.cell, rotation) * A_INV_TO_NM_INV
        lattice = {"astar": basis[0], "bstar": basis[1], "cstar": basis[2], "size_um": size_um}
        hkl = self.table.hkl[near]
        refl = {
            "lattice": np.full(near.size, index, dtype=np.int32),
            "h": hkl[:, 0],
            "k": hkl[:, 1],
            "l": hkl[:, 2],
            "panel": panel,
            "fs": fs,
            "ss": ss,
            "photons_full": photons,
            "partiality": part[near],
        }
        return lattice, refl

    # ---- whole run -----------------------------------------------------------------------
    def simulate_run(
        self,
        run: str,
        n_frames: int,
        frames_path: str | Path,
        truth_path: str | Path,
        config: Mapping[str, Any] | None = None,
        inputs: Iterable[str | Path] = (),
    ) -> dict[str, Any]:
        """Simulate ``n_frames`` frames into a CXI file and its truth file; return run statistics."""
        from braggflow.formats.frames import FrameWriter
        from braggflow.simulate.truth import TruthWriter

        start = time.perf_counter()
        plan = self.run_plan(run, n_frames)
        n_visible = np.zeros(n_frames, dtype=np.int64)
        inputs = list(inputs)
        attrs = {"run": run, "seed": self.seed}
        with (
            FrameWriter(
                frames_path, n_frames, self.detector.slab_shape, self.detector.mask, config, inputs
            ) as frames,
            TruthWriter(
                truth_path, n_frames, self.detector.slab_shape, config, inputs, attrs
            ) as truth,
        ):
            for i in range(n_frames):
                result = self.simulate_frame(run, i, int(plan[i]))
                frames.write(i, result.data, result.photon_energy_ev, result.clen_m)
                truth.add_frame(
                    i,
                    result.photon_energy_ev,
                    result.lattices,
                    result.reflections,
                    result.footprint,
                )
                n_visible[i] = int(np.count_nonzero(result.reflections["visible"]))
        return run_statistics(plan, n_visible, time.perf_counter() - start)


def run_statistics(plan: np.ndarray, n_visible: np.ndarray, seconds: float) -> dict[str, Any]:
    hits = plan > 0
    nv = n_visible[hits]
    return {
        "frames": int(plan.size),
        "hits": int(hits.sum()),
        "blank": int((~hits).sum()),
        "multi_lattice": int((plan > 1).sum()),
        "mean_visible_per_hit": float(nv.mean()) if nv.size else 0.0,
        "hits_ge_20_visible": int((nv >= 20).sum()),
        "hits_5_to_19_visible": int(((nv >= 5) & (nv < 20)).sum()),
        "hits_lt_5_visible": int((nv < 5).sum()),
        "seconds": round(float(seconds), 3),
    }


def _empty_reflections() -> dict[str, np.ndarray]:
    ints = {key: np.zeros(0, dtype=np.int64) for key in ("lattice", "h", "k", "l", "panel")}
    floats = {key: np.zeros(0) for key in ("fs", "ss", "photons_full", "partiality")}
    return {**ints, **floats}
