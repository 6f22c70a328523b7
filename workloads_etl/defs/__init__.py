"""The Dagster definitions of workloads-etl (loaded by ``workspace.yaml``).

One folder per area, in the order the data flows: :mod:`.ingest` (API -> raw -> lake),
:mod:`.warehouse` (lake -> DuckDB ``raw``), :mod:`.transform` (dbt models and tests),
:mod:`.serving` (the read-only serving database and the report); the
shared :mod:`.resources`, :mod:`.partitions`, :mod:`.checks`, :mod:`.schedules` and
:mod:`.executor` (how a launched run executes its steps), and :mod:`.launch`, which runs the
job in-process for the command line.
"""

from __future__ import annotations

import dagster as dg

from workloads_etl.defs.checks import build_freshness_checks
from workloads_etl.defs.executor import run_executor
from workloads_etl.defs.ingest.assets import BY_CLUSTER, DAY_COMMIT, build_ingest_assets
from workloads_etl.defs.partitions import daily_partitions, day_cluster_partitions
from workloads_etl.defs.resources import DataDirResource, runai_resource_from_env
from workloads_etl.defs.schedules import build_jobs
from workloads_etl.defs.serving.assets import build_serving_assets
from workloads_etl.defs.transform.assets import build_dbt_assets
from workloads_etl.defs.transform.project import WarehouseDbtResource, dbt_project
from workloads_etl.defs.warehouse.assets import build_warehouse_assets
from workloads_etl.settings import PipelineSettings, RunaiEnvironment
from workloads_etl.warehouse.dbt import dbt_launcher


def build_definitions(
    settings: PipelineSettings | None = None, resources: dict[str, object] | None = None
) -> dg.Definitions:
    """The whole graph for ``settings`` (default: read from the environment); ``resources``
    replace the defaults wired to the environment (``RUNAI_*`` as ``EnvVar``)."""
    settings = settings if settings is not None else PipelineSettings.read()
    executor = run_executor(settings)
    paths = settings.paths
    partitions = daily_partitions(settings.start_date)
    by_cluster = (
        day_cluster_partitions(settings.start_date)
        if settings.extract_by == "day_cluster"
        else None
    )
    project = dbt_project(paths)
    extracted = build_ingest_assets(
        partitions, settings.metric_types, settings.limits, settings.chunk_samples, by_cluster
    )
    upstream = {ds: DAY_COMMIT for ds in BY_CLUSTER} if by_cluster else None
    loaded = build_warehouse_assets(
        partitions, settings.lock_wait, settings.duckdb_memory_limit, upstream
    )
    # freshness of the days: a day x cluster asset's days are its commit's
    daily = [a for a in extracted if not isinstance(a.partitions_def, dg.MultiPartitionsDefinition)]
    checks, sensor = build_freshness_checks([*daily, *loaded])
    jobs, schedules, sensors = build_jobs(checks, by_cluster)
    models = build_dbt_assets(
        project, paths, partitions, settings.dbt_vars, settings.window_samples
    )
    served = build_serving_assets(partitions, [k for a in models for k in a.keys])
    defaults: dict[str, object] = {
        "runai": runai_resource_from_env(RunaiEnvironment.read()),
        "data": DataDirResource(data_dir=str(paths.root), lake_url=paths.lake_url),
        # DbtCliResource takes a DbtProject (its __init__); the subclass hides that from mypy.
        "dbt": WarehouseDbtResource(project_dir=project, dbt_executable=dbt_launcher()),  # type: ignore[arg-type]
    }
    return dg.Definitions(
        assets=[*extracted, *loaded, *models, *served],
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[sensor, *sensors],
        resources={**defaults, **(resources or {})},
        executor=executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
