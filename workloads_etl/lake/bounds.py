"""Physical bounds: values no real cluster can report, declared once per kind of quantity.

Every numeric column of a workload (:class:`~workloads_etl.lake.schemas.Column`) and every
metric type (:mod:`workloads_etl.lake.metric_types`) names its kind; the normalisers check
values against the kind's bounds and quarantine what falls outside, with a reason, instead
of letting a negative GPU count or a GPU allocation of 1e308 reach the bill. The one bound
an installation sets is the GPU ceiling (:class:`Limits`, ``WORKLOADS_ETL_MAX_GPUS``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COUNT = "count"  # pods, requests: >= 0
SECONDS = "seconds"  # durations, latencies: >= 0
GPUS = "gpus"  # GPUs or fractions of them: 0 .. the GPU ceiling
PERCENT = "percent"  # utilisation: 0 .. 100
CORES = "cores"  # CPU cores: >= 0
BYTES = "bytes"  # memory: >= 0
BYTES_PER_SECOND = "bytes_per_second"  # bandwidth: >= 0
KINDS = (COUNT, SECONDS, GPUS, PERCENT, CORES, BYTES, BYTES_PER_SECOND)

DEFAULT_MAX_GPUS = 4096.0


@dataclass(frozen=True)
class Limits:
    """The bounds that depend on the installation."""

    max_gpus: float = DEFAULT_MAX_GPUS  # GPUs one workload can hold, at most

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_gpus) and self.max_gpus > 0):
            raise ValueError(f"the GPU ceiling must be a positive number, not {self.max_gpus}")

    def range(self, kind: str) -> tuple[float, float]:
        """``(low, high)``, both inclusive, of a kind of quantity."""
        if kind not in KINDS:
            raise KeyError(f"unknown kind of quantity {kind!r}")
        if kind == GPUS:
            return 0.0, self.max_gpus
        if kind == PERCENT:
            return 0.0, 100.0
        return 0.0, math.inf

    def problem(self, value: float, kind: str) -> str | None:
        """Why ``value`` cannot be a ``kind``, or None when it can."""
        low, high = self.range(kind)
        if value < low:
            return f"{value:g} is negative" if low == 0 else f"{value:g} is below {low:g}"
        if value > high:
            what = "the GPU ceiling (WORKLOADS_ETL_MAX_GPUS)" if kind == GPUS else f"{high:g}"
            return f"{value:g} is above {what}"
        return None

    def outside(self, values: np.ndarray, kinds: np.ndarray) -> np.ndarray:
        """Per value: whether it lies outside the bounds of its kind (``kinds`` holds one
        name of :data:`KINDS` per value, or an empty string for no bound)."""
        low = np.full(values.shape, -np.inf)
        high = np.full(values.shape, np.inf)
        for kind in KINDS:
            mask = kinds == kind
            if mask.any():
                low[mask], high[mask] = self.range(kind)
        return (values < low) | (values > high)
