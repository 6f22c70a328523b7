"""Telemetry snapshots taken with every run."""

from __future__ import annotations

from datetime import date

from workloads_etl.ingest.recording import ExtractStats, recording
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai import RunaiClient

# (telemetryType, groupBy) of each snapshot.
TELEMETRY_QUERIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GPU_ALLOCATION", ("ClusterId", "CurrentNodepools")),
    ("WORKLOADS_COUNT", ("DepartmentId", "Phase")),
    ("PENDING_TIME_DISTRIBUTION", ("ProjectId",)),
)


async def extract_telemetry(
    client: RunaiClient, landing: RawLanding, day: date, run_id: str
) -> ExtractStats:
    """Land one snapshot of each telemetry query."""
    stats = ExtractStats("telemetry", day, run_id)
    with recording(client, landing, stats) as api:
        for telemetry_type, group_by in TELEMETRY_QUERIES:
            body = await api.get_telemetry(telemetry_type, group_by=group_by)
            stats.records += len(body.get("values") or [])
    return stats
