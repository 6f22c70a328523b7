"""The workload lists of a day: every page of ``GET /api/v1/workloads`` (or of the deleted
list), then the count endpoint's figure for the completeness check."""

from __future__ import annotations

import logging
from datetime import date

from workloads_etl.ingest.recording import ExtractStats, recording
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient
from workloads_etl.runai.filters import FilterBy

log = logging.getLogger(__name__)


def list_dataset(deleted: bool) -> str:
    return "deleted_workloads" if deleted else "workload_snapshots"


def cluster_filter(cluster: str | None) -> FilterBy | None:
    """The ``filterBy`` of one cluster's workloads (None: every cluster)."""
    return None if cluster is None else FilterBy().eq("clusterId", cluster)


async def extract_workload_list(
    client: RunaiClient,
    landing: RawLanding,
    day: date,
    run_id: str,
    *,
    deleted: bool,
    cluster: str | None = None,
) -> ExtractStats:
    """Land every page of the workload list (or of the deleted list) for ``day``: of every
    cluster, or of ``cluster`` only."""
    stats = ExtractStats(list_dataset(deleted), day, run_id)
    only = cluster_filter(cluster)
    with recording(client, landing, stats) as api:
        async for page in api.iter_workload_pages(deleted=deleted, filter_by=only):
            stats.records += len(page)
        # The count endpoint is asked after listing; completeness checks compare the two.
        stats.extra["count_endpoint"] = await api.count_workloads(deleted=deleted, filter_by=only)
    where = "" if cluster is None else f" of cluster {cluster}"
    log.info(
        "%s %s%s: %d workloads in %d pages",
        stats.dataset,
        day,
        where,
        stats.records,
        stats.responses,
    )
    return stats


async def discover_clusters(client: RunaiClient) -> list[str]:
    """The ids of the clusters the control plane counts workloads in (the workload count
    telemetry grouped by cluster: one request), sorted. The API has no list of clusters;
    a cluster without any workload is not found (nor needed) until it has one."""
    body = await client.get_telemetry("WORKLOADS_COUNT", group_by=("ClusterId",))
    found = set()
    for value in body.get("values") or []:
        for group in value.get("groups") or []:
            if group.get("key") == "ClusterId" and group.get("value"):
                found.add(str(group["value"]))
    return sorted(found)
