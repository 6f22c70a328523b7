"""The limits of a metrics call: at most 1000 samples per call, so a range is asked for in
windows of whole steps; at most 10 metric types per call (the control plane's limit, which
Run:ai's own scripts batch by), so the types are asked for in batches."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from workloads_etl.runai.errors import ConfigurationError
from workloads_etl.runai.values import utc

MAX_SAMPLES_PER_CALL = 1000
MAX_TYPES_PER_CALL = 10


def plan_windows(
    start: datetime, end: datetime, step_seconds: int
) -> list[tuple[datetime, datetime, int]]:
    """Split ``[start, end)`` into windows of at most 1000 samples at ``step_seconds``.

    Window ``k`` starts at ``start + k * 1000 * step`` and spans a whole number ``n`` of steps:
    the server places ``n`` samples at ``ws + i * (we - ws) / n``, so only whole-step windows
    keep every sample on the grid ``start + j * step``. The last window therefore covers
    ``ceil((end - ws) / step)`` steps and may reach past ``end`` by less than one step;
    :func:`merge_windows` drops the samples at or after ``end``.
    """
    if step_seconds <= 0:
        raise ConfigurationError("step_seconds must be positive")
    start, end = utc(start), utc(end)
    if end <= start:
        raise ConfigurationError(f"metrics range is empty: start {start} is not before end {end}")
    step = timedelta(seconds=step_seconds)
    span = step * MAX_SAMPLES_PER_CALL
    windows = []
    ws = start
    while ws < end:
        n = min(math.ceil((end - ws) / step), MAX_SAMPLES_PER_CALL)
        windows.append((ws, ws + n * step, n))
        ws = ws + span
    return windows
