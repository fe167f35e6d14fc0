"""PeakNet (section 2.2.1): timm backbone -> BiFPN (LayerNorm, 3x3 depthwise-separable convs,
fast normalised fusion) -> dual-pathway head giving 2-class logits at input resolution.

``braggflow.model.arch`` and ``braggflow.model.preprocess`` are light (no torch); the rest imports
torch (and timm when a model is built), so import them inside functions.

API: ``ModelArch``, ``PRESETS``, ``get_preset``, ``arch_from_params`` (arch);
``build_model(arch, device)``, ``count_parameters`` (peaknet); ``export_model``,
``load_exported(path, device) -> (model, arch)`` (export); ``preprocess``, ``prepare_labels``,
``restore_logits``, ``pad_crop``, ``zscore`` (preprocess).
"""

from braggflow.model.arch import PRESETS, ModelArch, arch_from_params, get_preset, register_preset

__all__ = [
    "PRESETS",
    "ModelArch",
    "arch_from_params",
    "build_model",
    "count_parameters",
    "export_model",
    "get_preset",
    "load_exported",
    "register_preset",
]


def __getattr__(name: str):
    """Torch-heavy names load on first use, so ``import braggflow.model`` stays cheap."""
    if name in ("build_model", "count_parameters", "PeakNet"):
        from braggflow.model import peaknet

        return getattr(peaknet, name)
    if name in ("export_model", "load_exported"):
        from braggflow.model import export

        return getattr(export, name)
    raise AttributeError(name)
