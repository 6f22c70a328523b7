"""Metrics of a day: every workload alive at any instant of the day, all metric types of
:mod:`workloads_etl.lake.metric_types` at a fixed step."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from workloads_etl.ingest.recording import ExtractStats, day_bounds
from workloads_etl.lake.metric_types import metric_type_names, types_for
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RawResponse, RunaiClient
from workloads_etl.runai.errors import NotFoundError

log = logging.getLogger(__name__)

# Phases after which a workload holds nothing; `phaseUpdatedAt` bounds its life when
# `completedAt` is not set (stopped or failed workloads).
TERMINAL_PHASES = ("Completed", "Failed", "Stopped")
# Answers of workloads done early that may wait for the workloads before them (bytes of
# text); beyond it no new workload starts until the earlier ones are done.
MAX_WAITING_BYTES = 64 * 2**20
# The columns of the workload lists :func:`alive_workloads` reads.
ALIVE_COLUMNS = (
    "workload_id",
    "type",
    "phase",
    "created_at",
    "completed_at",
    "phase_updated_at",
    "deleted_at",
)


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
    gather: Callable[[list[RawResponse]], Any] | None = None,
    on_workload: Callable[[Any], None] | None = None,
) -> ExtractStats:
    """Land the metrics of ``workloads`` (``{id: workload type}``) over ``day`` at
    ``step_seconds``: the selected ``metric_types`` that apply to each workload's type.

    The answers of one workload (its windows and metric batches) land together in the raw run
    once the workload is done. Once its answers are all in, they go to ``gather`` with the
    client's decoding of their bodies (the normaliser gathers their samples; the decoded
    bodies are let go before the workload waits its turn), and what it gives goes to
    ``on_workload`` (the normaliser) in the workloads' order; without ``gather``, the answers
    themselves. A fixed pool of workers, twice the client's
    concurrency, walks the workloads, so memory does not grow with their number.

    Workloads are handed on (landed, normalised) in the order of ``workloads``, whatever
    order their answers come back in: the same answers give the same raw run and the same
    partition files. A workload done early waits for those before it; while more than
    ``MAX_WAITING_BYTES`` of answers wait, no worker starts another workload.
    """
    stats = ExtractStats("workload_metrics", day, run_id)
    start, end = day_bounds(day)
    missing: dict[str, list[str]] = {}
    gone: list[str] = []
    queue = iter(enumerate(workloads.items()))
    waiting: dict[int, tuple[list[RawResponse], Any]] = {}
    waiting_bytes = 0
    handed = 0  # workloads handed on, in order
    room = asyncio.Condition()

    with landing.writer(stats.dataset, stats.day, stats.run_id) as writer:

        def hand_on(answers: list[RawResponse], gathered: Any) -> None:
            for answer in answers:  # what arrived before a 404 is kept too
                writer.record(answer)
            stats.responses += len(answers)
            if on_workload is not None and answers:
                on_workload(gathered if gather is not None else answers)

        async def one(index: int, workload_id: str, workload_type: str | None) -> None:
            nonlocal waiting_bytes, handed
            decoded: list[RawResponse] = []  # with the client's decoding of each body

            try:
                result = await client.recorded(decoded.append).get_workload_metrics(
                    workload_id,
                    types_for(workload_type, metric_types),
                    start,
                    end,
                    step_seconds=step_seconds,
                    samples=False,
                )
            except NotFoundError:
                # Purged between listing and fetching: nothing to charge, the day goes on.
                log.warning("workload %s is gone (404); no metrics for %s", workload_id, day)
                gone.append(workload_id)
            else:
                if result.missing_types:
                    missing[workload_id] = sorted(result.missing_types)
            gathered = gather(decoded) if gather is not None and decoded else None
            answers = [a.without_body() for a in decoded]
            del decoded
            waiting[index] = (answers, gathered)
            waiting_bytes += sum(len(a.text) for a in answers)
            while handed in waiting:
                done_answers, done_gathered = waiting.pop(handed)
                waiting_bytes -= sum(len(a.text) for a in done_answers)
                hand_on(done_answers, done_gathered)
                handed += 1
                if progress is not None:
                    progress(handed, len(workloads))
            async with room:
                room.notify_all()

        async def worker() -> None:
            while True:
                async with room:
                    await room.wait_for(lambda: waiting_bytes <= MAX_WAITING_BYTES)
                item = next(queue, None)
                if item is None:
                    return
                index, (workload_id, workload_type) = item
                await one(index, workload_id, workload_type)

        workers = max(1, min(len(workloads), 2 * client.settings.max_concurrency))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    stats.extra["workloads"] = len(workloads)
    stats.extra["workloads_gone"] = len(gone)
    # Types still absent after the client's retries of partial (207) answers.
    stats.extra["workloads_missing_types"] = len(missing)
    stats.extra["missing_types"] = ",".join(sorted({t for ts in missing.values() for t in ts}))
    log.info(
        "workload_metrics %s: %d answers for %d workloads", day, stats.responses, len(workloads)
    )
    return stats
