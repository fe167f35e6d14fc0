"""The embedded synthetic SFX experiment (stage 0): frames, detector, cell and ground truth.

Modules: :mod:`.crystal` (reflections, Wilson intensities, orientations), :mod:`.diffraction`
(Ewald sphere, partiality, projection onto panels), :mod:`.render` (spots, background, noise),
:mod:`.detector` (the default .geom and the per-pixel model), :mod:`.truth` (the truth file),
:mod:`.experiment` (a whole experiment). :func:`quick_experiment` makes a tiny experiment in a
folder for other stages' tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from braggflow.simulate.truth import Truth, read_truth

__all__ = ["Truth", "default_params", "quick_experiment", "read_truth", "write_detector"]


def default_params(**overrides: Any) -> dict[str, Any]:
    """The ``simulate`` config section with defaults filled, nested ``overrides`` merged and validated."""
    from braggflow.config import deep_update, validate_config

    section: dict[str, Any] = {}
    deep_update(section, overrides)
    return validate_config({"simulate": section})["simulate"]


def write_detector(
    geometry_path: str | Path, cell_path: str | Path, params: Mapping[str, Any], seed: int
) -> None:
    """Write the experiment's CrystFEL geometry (embedded detector or the configured .geom) and cell."""
    from braggflow.atomic import atomic_write_text
    from braggflow.errors import InputError
    from braggflow.formats.cell import UnitCell, write_cell
    from braggflow.provenance import write_sidecar
    from braggflow.simulate.detector import detector_geometry_text, load_geometry

    cell = UnitCell.from_dict(params["cell"])
    problems = cell.problems()
    if problems:
        raise InputError(
            "config simulate.cell", problems[0], "make the cell parameters match the lattice type"
        )
    text = detector_geometry_text(params["detector"], float(params["bandwidth_fwhm"]))
    atomic_write_text(geometry_path, text)
    load_geometry(geometry_path)  # what we wrote must read back (a user .geom may not)
    write_cell(cell, cell_path)
    inputs = [params["detector"]["geometry"]] if params["detector"].get("geometry") else []
    for path in (geometry_path, cell_path):
        write_sidecar(path, {"simulate": dict(params), "seed": seed}, inputs)


def quick_experiment(
    out_dir: str | Path, n_frames: int = 4, seed: int = 0, run: str = "r0000", **overrides: Any
) -> dict[str, Any]:
    """A tiny simulated experiment in ``out_dir`` (about a second): returns its paths and statistics.

    Keys: ``geometry``, ``cell``, ``frames``, ``truth`` (Paths), ``params`` (the section used),
    ``stats``. ``overrides`` are nested ``simulate`` keys, e.g. ``blank_fraction=0.5`` or
    ``detector={"dead_fraction": 0.0}``.
    """
    from braggflow.simulate.experiment import Experiment

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = default_params(**overrides)
    paths = {
        "geometry": out / "detector.geom",
        "cell": out / "crystal.cell",
        "frames": out / f"{run}.cxi",
        "truth": out / f"{run}.truth.h5",
    }
    write_detector(paths["geometry"], paths["cell"], params, seed)
    experiment = Experiment.from_files(paths["geometry"], paths["cell"], params, seed)
    stats = experiment.simulate_run(
        run, n_frames, paths["frames"], paths["truth"], {"simulate": params, "seed": seed}
    )
    return {**paths, "params": params, "stats": stats}
