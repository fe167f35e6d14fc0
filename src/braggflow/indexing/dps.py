"""cctbx rstbx DPS (Steller, Bolotovsky & Rossmann 1997): the full 1-D FFT basis search.

rstbx's ``dps_core`` samples the hemisphere of directions, Fourier-transforms the spots'
projections on each, keeps the strongest periodicities and picks the basis combination with the
lowest rms deviation from integer indices (``SelectBasisMetaprocedure``), Niggli-reduced.

cctbx bundles its own libstdc++: :func:`import_cctbx` must run before torch, numba or
scipy.special are imported in the process, or Python segfaults (HPC-NOTES.md).
"""

from __future__ import annotations

import contextlib
import io
import sys

import numpy as np

from braggflow.errors import BraggflowError

_CONFLICTING = ("torch", "scipy.special", "numba")


def import_cctbx() -> None:
    """Import cctbx and rstbx now (call first in any process that also imports torch/scipy.special).

    Refuses (instead of letting the process segfault) when a conflicting library came first.
    """
    if "rstbx_ext" not in sys.modules:
        early = [m for m in _CONFLICTING if m in sys.modules]
        if early:
            raise BraggflowError(
                f"cctbx (rstbx DPS) must be imported before {', '.join(early)} in one process; "
                "call braggflow.indexing.dps.import_cctbx() first, or use index.builtin.search: targeted"
            )
    import cctbx  # noqa: F401
    import rstbx.dps_core  # noqa: F401


def dps_basis(q: np.ndarray, max_cell_A: float, step_rad: float = 0.029) -> np.ndarray | None:
    """Direct basis (rows a, b, c in Angstrom, Niggli-reduced) found by rstbx DPS, or None."""
    import_cctbx()
    from cctbx.array_family import flex
    from rstbx.dps_core import dps_core
    from rstbx.dps_core.basis_choice import SelectBasisMetaprocedure
    from rstbx.dps_core.sampling import HemisphereSamplerBase

    if len(q) < 10:
        return None
    engine = dps_core()
    engine.setMaxcell(float(max_cell_A))
    engine.setXyzData(flex.vec3_double([tuple(map(float, v)) for v in q]))
    sampler = HemisphereSamplerBase(characteristic_grid=step_rad, max_cell=float(max_cell_A))
    # rstbx prints diagnostics (e.g. systematic absences) to stdout: keep stdout clean
    with contextlib.redirect_stdout(io.StringIO()):
        # cutoff_divisor 4: a direction needs a periodicity peak of N/4 (macromolecular setting)
        sampler.hemisphere(engine, size=30, cutoff_divisor=4.0, verbose=False)
        if engine.n_candidates() < 3:
            return None
        try:
            SelectBasisMetaprocedure(engine)
        except Exception:  # rstbx raises a bare Exception when no basis fits
            return None
    direct = np.array(engine.getOrientation().direct_matrix(), dtype=float).reshape(3, 3)
    return direct
