"""The jobs, their schedule and, with extraction by cluster, the sensors that drive it.

Extraction by day (the default): one job, ``daily_refresh``, the whole graph for one or more
UTC days; its schedule runs it at 02:00 UTC for the previous day.

Extraction by day x cluster: the workload lists, metrics and telemetry of each cluster of a
day are a run of their own (``extract_clusters``), so that many runs fetch in parallel, each
step holding a slot of the ``runai_api`` pool; ``daily_refresh`` is the rest (the day's
commit, with the telemetry no cluster owns, the load, dbt, serving). At 02:00 UTC the
schedule asks for the previous day of every known cluster; the ``runai_clusters`` sensor
adds the clusters the control plane has; the ``cluster_days_complete`` sensor runs
``daily_refresh`` for a day once every known cluster of it is extracted (again when a
cluster of it is extracted again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from workloads_etl.defs.ingest.assets import BY_CLUSTER, extraction_key
from workloads_etl.defs.partitions import CLUSTER, CLUSTERS, CLUSTERS_NAME, DAY
from workloads_etl.defs.resources import RunaiResource
from workloads_etl.ingest.lists import discover_clusters
from workloads_etl.runai import RunaiClient

JOB_NAME = "daily_refresh"
CLUSTER_JOB_NAME = "extract_clusters"
# How often the control plane is asked for its clusters (one request).
DISCOVERY_INTERVAL_SECONDS = 3600
# Materialisations of the extraction assets read by one tick of the completeness sensor.
COMPLETENESS_BATCH = 1000


def build_jobs(
    freshness_checks: Sequence[dg.AssetChecksDefinition],
    by_cluster: dg.MultiPartitionsDefinition | None = None,
) -> tuple[list[Any], list[Any], list[dg.SensorDefinition]]:
    """The jobs, schedules and sensors of the graph (see the module docstring)."""
    everything = dg.AssetSelection.all() - dg.AssetSelection.checks(*freshness_checks)
    if by_cluster is None:
        job = dg.define_asset_job(
            JOB_NAME,
            # Freshness checks are evaluated by their sensor against the wall clock, not runs.
            selection=everything,
            description=(
                "Extract, normalise, load and model one or more UTC days (backfills: any range)."
            ),
        )
        # The schedule of a daily-partitioned job targets the last complete partition: the
        # run at 02:00 UTC on day D+1 processes day D.
        nightly = dg.build_schedule_from_partitioned_job(
            job,
            name="nightly",
            hour_of_day=2,
            minute_of_hour=0,
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
        return [job], [nightly], []
    extracted = dg.AssetSelection.assets(*(extraction_key(ds) for ds in BY_CLUSTER))
    clusters_job = dg.define_asset_job(
        CLUSTER_JOB_NAME,
        selection=extracted,
        partitions_def=by_cluster,
        description="The workload lists, metrics and telemetry of one cluster for one UTC day.",
    )
    job = dg.define_asset_job(
        JOB_NAME,
        selection=everything - extracted,
        description=(
            "Telemetry, the day's commit of every cluster's extraction, the load and the "
            "models of one or more UTC days."
        ),
    )
    return (
        [clusters_job, job],
        [_nightly_by_cluster(clusters_job)],
        [_discovery_sensor(), _completeness_sensor(job, by_cluster)],
    )


def _nightly_by_cluster(clusters_job: Any) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly",
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        job=clusters_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def nightly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        """The previous UTC day of every known cluster, one run each."""
        tick = context.scheduled_execution_time or datetime.now(UTC)
        day = (tick.astimezone(UTC) - timedelta(days=1)).date().isoformat()
        clusters = sorted(context.instance.get_dynamic_partitions(CLUSTERS_NAME))
        if not clusters:
            return dg.SkipReason("no cluster known yet (see the runai_clusters sensor)")
        return [
            dg.RunRequest(
                run_key=f"{day}|{cluster}",
                partition_key=dg.MultiPartitionKey({DAY: day, CLUSTER: cluster}),
            )
            for cluster in clusters
        ]

    return nightly


def _discovery_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="runai_clusters",
        minimum_interval_seconds=DISCOVERY_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds the clusters the control plane counts workloads in as partitions.",
    )
    def runai_clusters(
        context: dg.SensorEvaluationContext, runai: RunaiResource
    ) -> dg.SensorResult | dg.SkipReason:
        async def ask() -> list[str]:
            async with RunaiClient(runai.settings()) as client:
                return await discover_clusters(client)

        found = asyncio.run(ask())
        known = set(context.instance.get_dynamic_partitions(CLUSTERS_NAME))
        new = sorted(set(found) - known)
        if not new:
            return dg.SkipReason(f"no new cluster ({len(known)} known)")
        context.log.info(f"new clusters: {', '.join(new)}")
        return dg.SensorResult(dynamic_partitions_requests=[CLUSTERS.build_add_request(new)])

    return runai_clusters


def _completeness_sensor(job: Any, by_cluster: dg.MultiPartitionsDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="cluster_days_complete",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=("Runs daily_refresh for a day once every known cluster of it is extracted."),
    )
    def cluster_days_complete(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = int(context.cursor or 0)
        touched: dict[date, int] = {}
        full: list[int] = []  # the last record of each batch that may have more after it
        for key in (extraction_key(ds) for ds in BY_CLUSTER):
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor),
                limit=COMPLETENESS_BATCH,
                ascending=True,
            ).records
            if len(records) == COMPLETENESS_BATCH:
                full.append(records[-1].storage_id)
            for record in records:
                if record.partition_key is None:
                    continue
                day = date.fromisoformat(_dimension(by_cluster, record.partition_key, DAY))
                touched[day] = max(touched.get(day, 0), record.storage_id)
        done = _materialised(context.instance)
        clusters = context.instance.get_dynamic_partitions(CLUSTERS_NAME)
        requests = [
            dg.RunRequest(run_key=f"{day}@{last}", partition_key=day.isoformat())
            for day, last in sorted(touched.items())
            if _complete(done, clusters, day)
        ]
        # past every record read, but not past a record of another asset left unread
        newest = min(full) if full else max([cursor, *touched.values()])
        return dg.SensorResult(run_requests=requests, cursor=str(newest))

    return cluster_days_complete


def _dimension(partitions: dg.MultiPartitionsDefinition, key: str, name: str) -> str:
    parsed = partitions.get_partition_key_from_str(key)
    return str(parsed.keys_by_dimension[name])


def _materialised(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """The materialised day x cluster partitions of each extraction asset."""
    return {ds: instance.get_materialized_partitions(extraction_key(ds)) for ds in BY_CLUSTER}


def _complete(done: dict[str, set[str]], clusters: Sequence[str], day: date) -> bool:
    """Every known cluster's extraction of ``day`` is materialised."""
    if not clusters:
        return False
    wanted = {str(dg.MultiPartitionKey({DAY: day.isoformat(), CLUSTER: c})) for c in clusters}
    return all(wanted <= partitions for partitions in done.values())
