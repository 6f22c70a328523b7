"""The workload lists of a day: every page of ``GET /api/v1/workloads`` (or of the deleted
list), then the count endpoint's figure for the completeness check."""

from __future__ import annotations

import logging
from datetime import date

from workloads_etl.ingest.recording import ExtractStats, recording
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient

log = logging.getLogger(__name__)


def list_dataset(deleted: bool) -> str:
    return "deleted_workloads" if deleted else "workload_snapshots"


async def extract_workload_list(
    client: RunaiClient, landing: RawLanding, day: date, run_id: str, *, deleted: bool
) -> ExtractStats:
    """Land every page of the workload list (or of the deleted list) for ``day``."""
    stats = ExtractStats(list_dataset(deleted), day, run_id)
    with recording(client, landing, stats) as api:
        async for page in api.iter_workload_pages(deleted=deleted):
            stats.records += len(page)
        # The count endpoint is asked after listing; completeness checks compare the two.
        stats.extra["count_endpoint"] = await api.count_workloads(deleted=deleted)
    log.info("%s %s: %d workloads in %d pages", stats.dataset, day, stats.records, stats.responses)
    return stats
