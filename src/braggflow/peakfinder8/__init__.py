"""peakfinder8 (Cheetah's Bragg-peak finder): built-in algorithm, reference, engines and the run.

- :mod:`.algorithm`: the built-in numpy implementation (:class:`Peakfinder8`).
- :mod:`.reference`: Cheetah's compiled peakfinder8 from ondamonitor, for cross-validation.
- :mod:`.engines`: CrystFEL (``indexamajig --peaks=peakfinder8``) and Cheetah command engines.
- :mod:`.run`: a whole run (frames file -> CXI peak list + statistics), MPI-parallel.
"""

from braggflow.peakfinder8.algorithm import (
    FrameStats,
    Peakfinder8,
    Peakfinder8Params,
    find_peaks,
    match_fraction,
)

__all__ = ["FrameStats", "Peakfinder8", "Peakfinder8Params", "find_peaks", "match_fraction"]
