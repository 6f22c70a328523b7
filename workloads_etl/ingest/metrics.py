"""Metrics of a day: every workload alive at any instant of the day, all metric types of
:mod:`workloads_etl.lake.metric_types` at a fixed step."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.ingest.recording import ExtractStats, day_bounds, recording
from workloads_etl.lake.metric_types import metric_type_names, types_for
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient
from workloads_etl.runai.errors import NotFoundError

log = logging.getLogger(__name__)

# Phases after which a workload holds nothing; `phaseUpdatedAt` bounds its life when
# `completedAt` is not set (stopped or failed workloads).
TERMINAL_PHASES = ("Completed", "Failed", "Stopped")


def alive_workloads(workloads: Sequence[pa.Table], day: date) -> dict[str, str | None]:
    """The workloads alive at any instant of ``day`` (UTC): ``{id: workload type}``, by id.

    A workload is alive on a day when it was created before the day ends and its life
    (completion, or the last phase change of a terminal phase, or deletion) did not end
    before the day began. Snapshot and deleted lists are taken together, so workloads
    deleted since the day are not missed.
    """
    start, end = day_bounds(day)
    alive: dict[str, str | None] = {}
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
        rows = table.filter(pc.fill_null(mask, False))
        alive.update(zip(rows["workload_id"].to_pylist(), rows["type"].to_pylist(), strict=True))
    return dict(sorted(alive.items()))


async def extract_metrics(
    client: RunaiClient,
    landing: RawLanding,
    day: date,
    run_id: str,
    workloads: Mapping[str, str | None],
    *,
    step_seconds: int = 60,
    metric_types: Sequence[str] = metric_type_names(),
    progress: Callable[[int, int], None] | None = None,
) -> ExtractStats:
    """Land the metrics of ``workloads`` (``{id: workload type}``) over ``day`` at
    ``step_seconds``: the selected ``metric_types`` that apply to each workload's type."""
    stats = ExtractStats("workload_metrics", day, run_id)
    start, end = day_bounds(day)
    done = 0
    missing: dict[str, list[str]] = {}
    gone: list[str] = []

    async def one(api: RunaiClient, workload_id: str, workload_type: str | None) -> None:
        nonlocal done
        try:
            result = await api.get_workload_metrics(
                workload_id,
                types_for(workload_type, metric_types),
                start,
                end,
                step_seconds=step_seconds,
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
            progress(done, len(workloads))

    with recording(client, landing, stats) as api:
        await asyncio.gather(*(one(api, w, t) for w, t in workloads.items()))
    stats.extra["workloads"] = len(workloads)
    stats.extra["workloads_gone"] = len(gone)
    # Types still absent after the client's retries of partial (207) answers.
    stats.extra["workloads_missing_types"] = len(missing)
    stats.extra["missing_types"] = ",".join(sorted({t for ts in missing.values() for t in ts}))
    log.info("workload_metrics %s: %d points for %d workloads", day, stats.records, len(workloads))
    return stats
