"""Recording a dataset-day's answers into its raw run file, and counting them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RawResponse, RunaiClient


@dataclass
class ExtractStats:
    """What one dataset-day's extraction received."""

    dataset: str
    day: date
    run_id: str
    responses: int = 0
    records: int = 0
    extra: dict[str, int | float | str] = field(default_factory=dict)


@contextmanager
def recording(
    client: RunaiClient, landing: RawLanding, stats: ExtractStats
) -> Iterator[RunaiClient]:
    """A view of ``client`` whose answers land in the raw run file of ``stats``' partition.

    The file is published when the block ends without an error; otherwise nothing is left.
    """
    with landing.writer(stats.dataset, stats.day, stats.run_id) as writer:

        def record(resp: RawResponse) -> None:
            stats.responses += 1
            writer.record(resp)

        yield client.recorded(record)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[00:00, 24:00)`` UTC of ``day``."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)
