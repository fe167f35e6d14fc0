"""Pseudo-Voigt fitting of candidate peaks into pixel labels (paper section 2.1.2).

Modules: :mod:`.model` (the model and its Jacobian), :mod:`.windows` (fit windows, bounds,
initial guesses, :class:`FitSettings`), :mod:`.batched` (vectorised Levenberg-Marquardt, the
default solver), :mod:`.lmfit_solver` (the lmfit reference), :mod:`.fit` (one interface over
both: accept/reject and the label rule), :mod:`.stage` (a batch of frames in one call),
:mod:`.distributed` (Ray scheduling), :mod:`.trainset` (the training set file),
:mod:`.truthcheck` (labels vs simulated ground truth), :mod:`.synthetic` (test windows).
"""

from braggflow.fitting.fit import STATUS_NAMES, fit_windows, label_windows, paint_labels
from braggflow.fitting.model import PARAM_NAMES
from braggflow.fitting.windows import FitSettings, Windows, extract_windows

__all__ = [
    "PARAM_NAMES",
    "STATUS_NAMES",
    "FitSettings",
    "Windows",
    "extract_windows",
    "fit_windows",
    "label_windows",
    "paint_labels",
]
