"""Indexing of still diffraction frames (stage 2/9).

- :mod:`.builtin`: the built-in indexer (DPS with the target cell; cctbx rstbx dps_core),
  checked against the target cell like indexamajig, with prediction of reflections;
- :mod:`.crystfel`: CrystFEL's ``indexamajig --peaks=cxi``;
- :mod:`.run`: a whole run in parallel, results as CrystFEL stream chunks.

cctbx must be imported before torch/scipy.special in a process: see :func:`.dps.import_cctbx`.
"""

from braggflow.indexing.builtin import BuiltinIndexer, BuiltinParams, FrameResult

__all__ = ["BuiltinIndexer", "BuiltinParams", "FrameResult"]
