"""Settings of the inference stage (config section ``infer:``), checked once at start-up."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from braggflow.errors import ConfigError
from braggflow.inference.peaks import PeakParams

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class InferConfig:
    """Every knob of the Ray producer-consumer pipeline (config/README.md, section ``infer``)."""

    batch_size: int = 8
    num_readers: int = 1
    num_workers: int | None = None  # None: one per GPU, else one per CPU but one
    num_writers: int = 1
    device: str = "auto"
    torch_threads: int | None = None  # None: 1 per CPU worker (torch's default on GPU)
    queue_batches: int = 4
    prefetch_batches: int = 2
    compile: bool = False
    precision: str = "fp32"
    chunk_frames: int = 64
    write_masks: bool = False
    num_cpus: int | None = None  # local Ray only; None: every CPU
    pin_cpus: bool = True  # CPU workers: compute threads on cores of their own (affinity.py)
    monitor_interval_s: float = 0.5
    max_restarts: int = 3
    max_passes: int = 3
    progress: bool = True
    match_distance_px: float = 3.0
    peaks: PeakParams = field(default_factory=PeakParams)

    def __post_init__(self) -> None:
        positive = (
            "batch_size",
            "num_readers",
            "num_writers",
            "queue_batches",
            "prefetch_batches",
            "chunk_frames",
            "max_passes",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"infer.{name}: bad value {getattr(self, name)}; allowed: >= 1")
        for name in ("num_workers", "torch_threads", "num_cpus"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ConfigError(
                    f"infer.{name}: bad value {value}; allowed: >= 1 or null (automatic)"
                )
        if self.device not in DEVICES:
            raise ConfigError(
                f"infer.device: bad value {self.device!r}; allowed: one of {', '.join(DEVICES)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"infer.precision: bad value {self.precision!r}; allowed: one of {', '.join(PRECISIONS)}"
            )
        if self.max_restarts < 0:
            raise ConfigError(f"infer.max_restarts: bad value {self.max_restarts}; allowed: >= 0")
        if not self.monitor_interval_s > 0 or not self.match_distance_px > 0:
            raise ConfigError("infer.monitor_interval_s and infer.match_distance_px must be > 0")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> InferConfig:
        """The ``infer`` section (validated or hand-written) -> config; unknown keys are an error."""
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"infer: unknown keys {unknown}; allowed: {sorted(known)}")
        peak_params = dict(params.pop("peaks", None) or {})
        peak_known = {f.name for f in dataclasses.fields(PeakParams)}
        bad = sorted(set(peak_params) - peak_known)
        if bad:
            raise ConfigError(f"infer.peaks: unknown keys {bad}; allowed: {sorted(peak_known)}")
        try:
            peaks = PeakParams(**peak_params)
        except ValueError as exc:
            raise ConfigError(f"infer.peaks: {exc}") from None
        return cls(
            peaks=peaks,
            **{
                k: v
                for k, v in params.items()
                if v is not None or k in ("num_workers", "torch_threads", "num_cpus")
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
