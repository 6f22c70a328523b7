"""Extraction: from the Run:ai API into the raw landing zone, one dataset and day at a time.

Plain Python over the async client. Every response the client receives for a dataset/day is
recorded, as received, into that partition's raw run file; normalisation then reads those
files, so a partition can always be rebuilt from raw without calling the API again.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RawResponse, RunaiClient
from workloads_etl.runai.errors import NotFoundError

log = logging.getLogger(__name__)

# The metric types the warehouse models use; one call per window asks for all of them.
METRIC_TYPES: tuple[str, ...] = (
    "GPU_ALLOCATION",
    "GPU_UTILIZATION",
    "GPU_MEMORY_USAGE_BYTES",
    "GPU_MEMORY_REQUEST_BYTES",
    "CPU_REQUEST_CORES",
    "CPU_USAGE_CORES",
    "CPU_MEMORY_REQUEST_BYTES",
    "CPU_MEMORY_USAGE_BYTES",
)

# Telemetry snapshots taken with every run: (telemetryType, groupBy).
TELEMETRY_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GPU_ALLOCATION", ("ClusterId", "CurrentNodepools")),
    ("WORKLOADS_COUNT", ("DepartmentId", "Phase")),
    ("PENDING_TIME_DISTRIBUTION", ("ProjectId",)),
)

# Phases after which a workload holds nothing; `phaseUpdatedAt` bounds its life when
# `completedAt` is not set (stopped or failed workloads).
TERMINAL_PHASES = ("Completed", "Failed", "Stopped")

_sink: contextvars.ContextVar[Callable[[RawResponse], None] | None] = contextvars.ContextVar(
    "workloads_etl_raw_sink", default=None
)


def route_raw_response(resp: RawResponse) -> None:
    """The client's recorder: hands each response to the partition being extracted.

    A context variable routes it, so concurrent tasks of one extraction (which inherit the
    context) all land in the same raw file.
    """
    sink = _sink.get()
    if sink is not None:
        sink(resp)


@contextmanager
def recording_to(sink: Callable[[RawResponse], None]) -> Iterator[None]:
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


@dataclass
class ExtractStats:
    dataset: str
    day: date
    run_id: str
    responses: int = 0
    records: int = 0
    extra: dict[str, int | float | str] = field(default_factory=dict)


def _counting(
    sink: Callable[[RawResponse], None], stats: ExtractStats
) -> Callable[[RawResponse], None]:
    def record(resp: RawResponse) -> None:
        stats.responses += 1
        sink(resp)

    return record


async def extract_workload_list(
    client: RunaiClient, landing: RawLanding, day: date, run_id: str, *, deleted: bool
) -> ExtractStats:
    """Land every page of the workload list (or of the deleted list) for ``day``."""
    dataset = "deleted_workloads" if deleted else "workload_snapshots"
    stats = ExtractStats(dataset, day, run_id)
    with (
        landing.writer(dataset, day, run_id) as writer,
        recording_to(_counting(writer.record, stats)),
    ):
        async for page in client.iter_workload_pages(deleted=deleted):
            stats.records += len(page)
        # The count endpoint is asked after listing; completeness checks compare the two.
        stats.extra["count_endpoint"] = await client.count_workloads(deleted=deleted)
    log.info("%s %s: %d workloads in %d pages", dataset, day, stats.records, stats.responses)
    return stats


def alive_workload_ids(workloads: Sequence[pa.Table], day: date) -> list[str]:
    """Ids of the workloads alive at any instant of ``day`` (UTC).

    A workload is alive on a day when it was created before the day ends and its life
    (completion, or the last phase change of a terminal phase, or deletion) did not end
    before the day began. Snapshot and deleted lists are taken together, so workloads
    deleted since the day are not missed.
    """
    start, end = day_bounds(day)
    ids: set[str] = set()
    for table in workloads:
        if table.num_rows == 0:
            continue
        terminal = pc.is_in(table["phase"], value_set=pa.array(TERMINAL_PHASES))
        ended_at = pc.coalesce(
            table["completed_at"],
            pc.if_else(
                terminal, table["phase_updated_at"], pa.scalar(None, table["phase_updated_at"].type)
            ),
            table["deleted_at"],
        )
        created_before_end = pc.less(table["created_at"], pa.scalar(end, table["created_at"].type))
        not_ended_before_start = pc.or_kleene(
            pc.is_null(ended_at), pc.greater_equal(ended_at, pa.scalar(start, ended_at.type))
        )
        mask = pc.and_kleene(created_before_end, not_ended_before_start)
        ids.update(table.filter(pc.fill_null(mask, False))["workload_id"].to_pylist())
    return sorted(ids)


async def extract_metrics(
    client: RunaiClient,
    landing: RawLanding,
    day: date,
    run_id: str,
    workload_ids: Sequence[str],
    *,
    step_seconds: int = 60,
    metric_types: Sequence[str] = METRIC_TYPES,
    progress: Callable[[int, int], None] | None = None,
) -> ExtractStats:
    """Land the metrics of ``workload_ids`` over ``day`` at ``step_seconds``."""
    stats = ExtractStats("workload_metrics", day, run_id)
    start, end = day_bounds(day)
    done = 0
    missing: dict[str, list[str]] = {}
    gone: list[str] = []

    async def one(workload_id: str) -> None:
        nonlocal done
        try:
            result = await client.get_workload_metrics(
                workload_id, metric_types, start, end, step_seconds=step_seconds
            )
        except NotFoundError:
            # Purged between listing and fetching: nothing to charge, the day goes on.
            log.warning("workload %s is gone (404); no metrics for %s", workload_id, day)
            gone.append(workload_id)
        else:
            stats.records += result.table.num_rows
            if result.missing_types:
                missing[workload_id] = sorted(result.missing_types)
        done += 1
        if progress is not None:
            progress(done, len(workload_ids))

    with (
        landing.writer("workload_metrics", day, run_id) as writer,
        recording_to(_counting(writer.record, stats)),
    ):
        await asyncio.gather(*(one(w) for w in workload_ids))
    stats.extra["workloads"] = len(workload_ids)
    stats.extra["workloads_gone"] = len(gone)
    # Types still absent after the client's retries of partial (207) answers.
    stats.extra["workloads_missing_types"] = len(missing)
    stats.extra["missing_types"] = ",".join(sorted({t for ts in missing.values() for t in ts}))
    log.info(
        "workload_metrics %s: %d points for %d workloads", day, stats.records, len(workload_ids)
    )
    return stats


async def extract_telemetry(
    client: RunaiClient, landing: RawLanding, day: date, run_id: str
) -> ExtractStats:
    """Land one snapshot of each telemetry query."""
    stats = ExtractStats("telemetry", day, run_id)
    with (
        landing.writer("telemetry", day, run_id) as writer,
        recording_to(_counting(writer.record, stats)),
    ):
        for telemetry_type, group_by in TELEMETRY_QUERIES:
            body = await client.get_telemetry(telemetry_type, group_by=group_by)
            stats.records += len(body.get("values") or [])
    return stats
