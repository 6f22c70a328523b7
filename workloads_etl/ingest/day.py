"""One dataset-day end to end: extract (API -> raw landing), then normalise the raw run into
its lake partition. Every step replaces exactly one partition, so re-running a day is safe."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from workloads_etl.ingest.lists import extract_workload_list
from workloads_etl.ingest.metrics import ALIVE_COLUMNS, alive_workloads, extract_metrics
from workloads_etl.ingest.recording import ExtractStats
from workloads_etl.ingest.telemetry import extract_telemetry
from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.datasets import WORKLOAD_LISTS
from workloads_etl.lake.metric_types import metric_type_names
from workloads_etl.lake.normalise.metrics import DEFAULT_CHUNK_SAMPLES, MetricsChunks
from workloads_etl.lake.normalise.partition import (
    NormaliseResult,
    committed,
    normalise_partition,
)
from workloads_etl.lake.parquet import PartitionWriter, read_partition
from workloads_etl.lake.quality import workloads_with_metrics
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient
from workloads_etl.runai.retry import RetryBudget
from workloads_etl.runai.settings import RunaiSettings
from workloads_etl.settings import DataPaths

DEFAULT_LIMITS = Limits()


def release_memory() -> None:
    """Give the memory a large day used back to the system: the steps after it (the load,
    dbt in its own process) would otherwise run beside a process still holding its peak."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass
class DayResult:
    """What one dataset-day produced: the raw responses, the normalised rows, the quarantine."""

    dataset: str
    day: date
    run_id: str
    responses: int
    rows: int
    quarantined: int  # quarantine rows: rejected records plus rows kept with nulled fields
    rejected: int = 0  # records that could not become a row
    duplicates_dropped: int = 0  # identical repeats of a record (offset paging)
    extra: dict[str, int | float | str] = field(default_factory=dict)
    cluster: str | None = None  # the cluster whose segment this is (None: the whole day)

    @property
    def quarantine_share(self) -> float:
        """Share of the distinct records received that broke the contract somehow."""
        total = self.rows + self.rejected
        return self.quarantined / total if total else 0.0

    def metadata(self) -> dict[str, int | float | str]:
        return {
            "responses": self.responses,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "rejected": self.rejected,
            "duplicates_dropped": self.duplicates_dropped,
            "quarantine_share": round(self.quarantine_share, 6),
            **self.extra,
        }


def _result(stats: ExtractStats, norm: NormaliseResult, cluster: str | None = None) -> DayResult:
    return DayResult(
        dataset=stats.dataset,
        day=stats.day,
        run_id=stats.run_id,
        responses=stats.responses,
        rows=norm.rows,
        quarantined=norm.quarantined,
        rejected=norm.rejected,
        duplicates_dropped=norm.duplicates_dropped,
        extra=dict(stats.extra),
        cluster=cluster,
    )


async def workload_list_day(
    client: RunaiClient,
    paths: DataPaths,
    day: date,
    run_id: str,
    *,
    deleted: bool,
    limits: Limits = DEFAULT_LIMITS,
    cluster: str | None = None,
) -> DayResult:
    """One day's workload list (or deleted list) into its lake partition; with ``cluster``,
    that cluster's list into its segment of the partition."""
    landing = RawLanding(paths.raw)
    stats = await extract_workload_list(
        client, landing, day, run_id, deleted=deleted, cluster=cluster
    )
    try:
        norm = normalise_partition(
            paths, stats.dataset, day, run_id, limits=limits, cluster=cluster
        )
        return _result(stats, norm, cluster)
    finally:
        release_memory()


def metrics_targets(
    paths: DataPaths, day: date, cluster: str | None = None
) -> dict[str, str | None]:
    """Workloads alive on ``day`` with their types, from that day's snapshot and deleted
    partitions (with ``cluster``: that cluster's segments of them)."""
    tables = [
        read_partition(paths.lake, ds, day, columns=ALIVE_COLUMNS, cluster=cluster)
        for ds in WORKLOAD_LISTS
    ]
    return alive_workloads(tables, day)


async def metrics_day(
    client: RunaiClient,
    paths: DataPaths,
    day: date,
    run_id: str,
    *,
    step_seconds: int = 60,
    metric_types: Sequence[str] = metric_type_names(),
    progress: Callable[[int, int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    cluster: str | None = None,
) -> DayResult:
    """Fetch, land and normalise a day's metrics in one pass: each workload's answers are
    normalised once they are all in (each body decoded once), in chunks of about
    ``chunk_samples`` samples, each chunk a file of the partition; the partition is committed
    once the raw run is.
    With ``cluster``: the workloads of that cluster's list segments, into its segment."""
    targets = metrics_targets(paths, day, cluster)
    dataset = "workload_metrics"
    writer = PartitionWriter(paths.lake, dataset, day, run_id, cluster)
    chunks = MetricsChunks(
        dataset,
        day,
        run_id,
        writer.write,
        chunk_samples=chunk_samples,
        limits=limits,
        background=True,
    )
    try:
        stats = await extract_metrics(
            client,
            RawLanding(paths.raw),
            day,
            run_id,
            targets,
            step_seconds=step_seconds,
            metric_types=metric_types,
            progress=progress,
            gather=chunks.gather,
            on_workload=chunks.add,
        )
        chunks.finish()
    finally:
        chunks.close()
        release_memory()
    stats.records = chunks.records
    norm = committed(writer, chunks)
    result = _result(stats, norm, cluster)
    result.extra["alive_workloads"] = len(targets)
    result.extra["workloads_with_metrics"] = workloads_with_metrics(paths.lake, day, cluster)
    result.extra["files"] = len(norm.manifest.data_files) if norm.manifest else 0
    return result


async def telemetry_day(
    client: RunaiClient,
    paths: DataPaths,
    day: date,
    run_id: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    cluster: str | None = None,
) -> DayResult:
    """One day's telemetry into its lake partition; with ``cluster`` (or
    :data:`~workloads_etl.ingest.telemetry.CONTROL_PLANE`), into that segment of it."""
    stats = await extract_telemetry(client, RawLanding(paths.raw), day, run_id, cluster)
    norm = normalise_partition(paths, "telemetry", day, run_id, limits=limits, cluster=cluster)
    return _result(stats, norm, cluster)


@dataclass(frozen=True)
class DaysJob:
    """One extraction step over a run's days: which dataset, against which control plane,
    into which data directory, with which options (the keyword arguments of its day
    function), continuing the run's retry budget (:attr:`RetryBudget.last_success`)."""

    dataset: str
    settings: RunaiSettings
    paths: DataPaths
    days: tuple[date, ...]
    run_id: str
    options: dict[str, Any]
    last_success: float


@dataclass(frozen=True)
class DayDone:
    """Sent by :func:`fetch_days` when a day is done."""

    result: DayResult
    index: int
    of: int


@dataclass(frozen=True)
class MetricsProgress:
    """Sent by :func:`fetch_days` every tenth of a day's workloads (and at 50 at least)."""

    day: date
    done: int
    total: int


def fetch_days(job: DaysJob, send: Callable[[object], None]) -> tuple[list[DayResult], float]:
    """Run ``job`` day after day with one client: the day results and the retry budget's
    :attr:`~RetryBudget.last_success` at the end. ``send`` gets a :class:`DayDone` per day
    and, for metrics, :class:`MetricsProgress`. Meant for its own process
    (:func:`workloads_etl.children.call_in_child`), so that a large day's memory is given
    back whole when the step ends."""
    budget = RetryBudget(job.settings.retry_budget)
    budget.resume(job.last_success)

    async def one(client: RunaiClient, day: date) -> DayResult:
        if job.dataset in WORKLOAD_LISTS:
            return await workload_list_day(
                client,
                job.paths,
                day,
                job.run_id,
                deleted=job.dataset == "deleted_workloads",
                **job.options,
            )
        if job.dataset == "telemetry":
            return await telemetry_day(client, job.paths, day, job.run_id, **job.options)

        def progress(done: int, total: int) -> None:
            if done == total or done % max(50, total // 10) == 0:
                send(MetricsProgress(day, done, total))

        return await metrics_day(
            client, job.paths, day, job.run_id, progress=progress, **job.options
        )

    async def run() -> list[DayResult]:
        results = []
        async with RunaiClient(job.settings, budget=budget) as client:
            for i, day in enumerate(job.days, 1):
                results.append(await one(client, day))
                send(DayDone(results[-1], i, len(job.days)))
        return results

    return asyncio.run(run()), budget.last_success
