"""Telemetry snapshots taken with every run.

A run of a whole day asks every query of :data:`TELEMETRY_QUERIES`. Extracted cluster by
cluster, each cluster's run asks the queries grouped by cluster, filtered to its cluster (its
snapshot and its telemetry are then taken by the same run, as the allocation reports pair
them), and the day's commit asks the others once for the whole control plane
(:data:`CONTROL_PLANE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from workloads_etl.ingest.recording import ExtractStats, recording
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient

# The segment of a day's telemetry that no single cluster owns (see the module docstring).
CONTROL_PLANE = "control-plane"


@dataclass(frozen=True)
class TelemetryQuery:
    telemetry_type: str
    group_by: tuple[str, ...]

    @property
    def per_cluster(self) -> bool:
        """Grouped by cluster first: each cluster's rows are its own."""
        return self.group_by[:1] == ("ClusterId",)


TELEMETRY_QUERIES: tuple[TelemetryQuery, ...] = (
    TelemetryQuery("GPU_ALLOCATION", ("ClusterId", "CurrentNodepools")),
    TelemetryQuery("WORKLOADS_COUNT", ("DepartmentId", "Phase")),
    TelemetryQuery("PENDING_TIME_DISTRIBUTION", ("ProjectId",)),
)


def queries_of(cluster: str | None) -> tuple[TelemetryQuery, ...]:
    """The queries a run asks: all (a whole day), the per-cluster ones (a cluster), or the
    others (:data:`CONTROL_PLANE`)."""
    if cluster is None:
        return TELEMETRY_QUERIES
    if cluster == CONTROL_PLANE:
        return tuple(q for q in TELEMETRY_QUERIES if not q.per_cluster)
    return tuple(q for q in TELEMETRY_QUERIES if q.per_cluster)


async def extract_telemetry(
    client: RunaiClient, landing: RawLanding, day: date, run_id: str, cluster: str | None = None
) -> ExtractStats:
    """Land one snapshot of each telemetry query of ``cluster`` (see :func:`queries_of`)."""
    stats = ExtractStats("telemetry", day, run_id)
    only = None if cluster in (None, CONTROL_PLANE) else cluster
    with recording(client, landing, stats) as api:
        for query in queries_of(cluster):
            body = await api.get_telemetry(
                query.telemetry_type, group_by=query.group_by, cluster_id=only
            )
            stats.records += len(body.get("values") or [])
    return stats
