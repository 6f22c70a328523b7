"""Ingestion assets: Run:ai API -> raw landing -> normalised Parquet lake, one UTC day each."""

# No `from __future__ import annotations` here: Dagster reads the annotations of the asset
# functions (the context type) at definition time.

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, cast

import dagster as dg
from dagster import AssetExecutionContext

from workloads_etl.children import call_in_child
from workloads_etl.defs.failure import named_failure
from workloads_etl.defs.partitions import (
    CLUSTERS_NAME,
    DAY,
    backfill_policy,
    day_and_cluster,
    partition_days,
)
from workloads_etl.defs.resources import DataDirResource, RunaiResource
from workloads_etl.ingest.day import DayDone, DayResult, DaysJob, MetricsProgress
from workloads_etl.ingest.telemetry import CONTROL_PLANE
from workloads_etl.lake.bounds import Limits
from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.normalise.metrics import DEFAULT_CHUNK_SAMPLES
from workloads_etl.lake.parquet import commit_segments, head_of_partition
from workloads_etl.lake.quality import duplicate_keys
from workloads_etl.settings import DataPaths

GROUP = "runai_extract"
# The datasets extracted cluster by cluster when extraction is partitioned by day x cluster,
# and the daily asset that commits their days.
BY_CLUSTER = ("workload_snapshots", "deleted_workloads", "workload_metrics", "telemetry")
DAY_COMMIT = dg.AssetKey(["runai", "day_commit"])
FETCH_DAYS = "workloads_etl.ingest.day:fetch_days"
KINDS = {"python", "parquet"}
# Every step that calls the Run:ai API takes a slot of this pool: the client's request budget
# (RUNAI_MAX_CONCURRENCY, RUNAI_REQUESTS_PER_SECOND) holds per step, so the pool's limit
# (default_limit in dagster.yaml; `dagster instance concurrency set runai_api N`) bounds how
# many budgets the control plane sees at once, across all runs and backfills.
RUNAI_POOL = "runai_api"
# No step retries: the client retries what retrying can fix, within the run's retry
# budget; a step failure is final and names its cause.
# Quarantined records above this share of a day's records fail the quality check.
MAX_QUARANTINE_SHARE = 0.01
# Share of alive workloads that must have metrics for the coverage check to pass.
MIN_METRICS_COVERAGE = 0.95


def extraction_key(dataset: str) -> dg.AssetKey:
    """The asset of an extracted dataset (``runai/<dataset>``)."""
    return dg.AssetKey(["runai", dataset])


def _checks(name: str, *extra: str) -> list[dg.AssetCheckSpec]:
    base = {
        "no_duplicate_keys": "No primary key repeats in the lake partitions written.",
        "quarantine_share": f"Quarantined records stay under {MAX_QUARANTINE_SHARE:.0%}.",
        "completeness": "Distinct workloads listed equal the count endpoint's answer.",
        "metrics_coverage": f"At least {MIN_METRICS_COVERAGE:.0%} of alive workloads have metrics.",
        "metric_types_complete": "Every requested metric type arrived for every workload.",
    }
    return [
        dg.AssetCheckSpec(check, asset=extraction_key(name), description=base[check])
        for check in ("no_duplicate_keys", "quarantine_share", *extra)
    ]


def _run_days(
    context: AssetExecutionContext,
    runai: RunaiResource,
    dataset: str,
    paths: DataPaths,
    options: dict[str, Any],
) -> list[DayResult]:
    """Fetch ``dataset`` for the run's days (of the run's cluster, for a day x cluster
    partition) in a process of its own (:func:`~workloads_etl.ingest.day.fetch_days`):
    whatever a large day takes, the run's process is as small after the step as before it,
    and its log shows each day."""
    if isinstance(context.assets_def.partitions_def, dg.MultiPartitionsDefinition):
        day, cluster = day_and_cluster(context)
        days: tuple[date, ...] = (day,)
        options = {**options, "cluster": cluster}
    else:
        days = tuple(partition_days(context))
    job = DaysJob(
        dataset,
        runai.settings(),
        paths,
        days,
        context.run.run_id,
        options,
        runai.budget().last_success,
    )

    def on_message(message: object) -> None:
        if isinstance(message, DayDone):
            r = message.result
            context.log.info(
                f"{r.dataset} {r.day} ({message.index}/{message.of}): {r.rows} rows, "
                f"{r.quarantined} quarantined, {r.responses} responses"
            )
        elif isinstance(message, MetricsProgress):
            context.log.info(f"metrics {message.day}: {message.done}/{message.total} workloads")

    with named_failure():
        results, last_success = call_in_child(FETCH_DAYS, (job,), on_message)
    runai.budget().resume(last_success)
    return cast(list[DayResult], results)


def _materialization(
    paths: DataPaths, dataset: str, results: list[DayResult], preview: list[str]
) -> dg.MaterializeResult:
    """Row counts per day and in all, and the first rows of the last day written."""
    last = results[-1]
    sample = head_of_partition(paths.lake, dataset, last.day, preview, 10, last.cluster)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r.rows for r in results),
            "quarantined": sum(r.quarantined for r in results),
            "responses": sum(r.responses for r in results),
            "days": dg.MetadataValue.json({str(r.day): r.metadata() for r in results}),
            "run_id": results[-1].run_id,
            "preview": dg.MetadataValue.md(sample.to_pandas().to_markdown(index=False)),
        }
    )


def _quality(
    name: str, paths: DataPaths, results: list[DayResult]
) -> Iterator[dg.AssetCheckResult]:
    dupes = {str(r.day): duplicate_keys(paths.lake, r.dataset, r.day, r.cluster) for r in results}
    yield dg.AssetCheckResult(
        asset_key=extraction_key(name),
        check_name="no_duplicate_keys",
        passed=not any(dupes.values()),
        metadata={"duplicates_per_day": dg.MetadataValue.json(dupes)},
    )
    shares = {str(r.day): round(r.quarantine_share, 6) for r in results}
    worst = max(shares.values(), default=0.0)
    yield dg.AssetCheckResult(
        asset_key=extraction_key(name),
        check_name="quarantine_share",
        passed=worst <= MAX_QUARANTINE_SHARE,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "worst_share": worst,
            "threshold": MAX_QUARANTINE_SHARE,
            "share_per_day": dg.MetadataValue.json(shares),
            "quarantined": sum(r.quarantined for r in results),
        },
    )


def _policy(partitions: dg.PartitionsDefinition) -> dg.BackfillPolicy | None:
    """Ranged runs of days; a day x cluster partition is a run of its own."""
    return None if isinstance(partitions, dg.MultiPartitionsDefinition) else backfill_policy


def _workload_list_asset(
    name: str, deleted: bool, partitions: dg.PartitionsDefinition, limits: Limits
) -> dg.AssetsDefinition:
    @dg.asset(
        key=extraction_key(name),
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=_policy(partitions),
        pool=RUNAI_POOL,
        kinds=KINDS,
        description=DATASETS[name].description,
        check_specs=_checks(name, "completeness"),
    )
    def _asset(
        context: AssetExecutionContext, runai: RunaiResource, data: DataDirResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        paths = data.paths()
        results = _run_days(context, runai, name, paths, {"limits": limits})
        yield _materialization(
            paths, name, results, ["workload_id", "name", "phase", "project_name"]
        )
        yield from _quality(name, paths, results)
        # Every workload the count endpoint knows must be a row of the partition (repeats
        # from offset paging are dropped, records without a usable id are rejected).
        gaps = {
            str(r.day): {
                "rows": r.rows,
                "count": r.extra.get("count_endpoint"),
                "rejected": r.rejected,
                "duplicates_dropped": r.duplicates_dropped,
            }
            for r in results
        }
        yield dg.AssetCheckResult(
            asset_key=extraction_key(name),
            check_name="completeness",
            passed=all(g["rows"] == g["count"] for g in gaps.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"listed_vs_count": dg.MetadataValue.json(gaps)},
        )

    return _asset


def _metrics_asset(
    partitions: dg.PartitionsDefinition,
    metric_types: Sequence[str],
    limits: Limits,
    chunk_samples: int,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=extraction_key("workload_metrics"),
        group_name=GROUP,
        deps=[extraction_key("workload_snapshots"), extraction_key("deleted_workloads")],
        partitions_def=partitions,
        backfill_policy=_policy(partitions),
        pool=RUNAI_POOL,
        kinds=KINDS,
        description=DATASETS["workload_metrics"].description,
        check_specs=_checks("workload_metrics", "metrics_coverage", "metric_types_complete"),
    )
    def workload_metrics(
        context: AssetExecutionContext, runai: RunaiResource, data: DataDirResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        paths = data.paths()
        options = {
            "step_seconds": runai.metrics_step_seconds,
            "metric_types": list(metric_types),
            "limits": limits,
            "chunk_samples": chunk_samples,
        }
        results = _run_days(context, runai, "workload_metrics", paths, options)
        yield _materialization(
            paths, "workload_metrics", results, ["workload_id", "metric_type", "ts", "value"]
        )
        yield from _quality("workload_metrics", paths, results)
        incomplete = {
            str(r.day): {
                "workloads_missing_types": r.extra.get("workloads_missing_types", 0),
                "missing_types": r.extra.get("missing_types", ""),
                "workloads_gone": r.extra.get("workloads_gone", 0),
            }
            for r in results
        }
        yield dg.AssetCheckResult(
            asset_key=extraction_key("workload_metrics"),
            check_name="metric_types_complete",
            passed=not any(v["workloads_missing_types"] for v in incomplete.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"per_day": dg.MetadataValue.json(incomplete)},
        )
        coverage = {
            str(r.day): {
                "alive": r.extra["alive_workloads"],
                "with_metrics": r.extra["workloads_with_metrics"],
            }
            for r in results
        }
        shares = [
            int(c["with_metrics"]) / int(c["alive"]) if c["alive"] else 1.0
            for c in coverage.values()
        ]
        yield dg.AssetCheckResult(
            asset_key=extraction_key("workload_metrics"),
            check_name="metrics_coverage",
            passed=min(shares, default=1.0) >= MIN_METRICS_COVERAGE,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "min_coverage": round(min(shares, default=1.0), 6),
                "threshold": MIN_METRICS_COVERAGE,
                "per_day": dg.MetadataValue.json(coverage),
            },
        )

    return workload_metrics


def _telemetry_asset(partitions: dg.PartitionsDefinition, limits: Limits) -> dg.AssetsDefinition:
    @dg.asset(
        key=extraction_key("telemetry"),
        group_name=GROUP,
        partitions_def=partitions,
        backfill_policy=_policy(partitions),
        pool=RUNAI_POOL,
        kinds=KINDS,
        description=DATASETS["telemetry"].description,
        check_specs=_checks("telemetry"),
    )
    def telemetry(
        context: AssetExecutionContext, runai: RunaiResource, data: DataDirResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        paths = data.paths()
        results = _run_days(context, runai, "telemetry", paths, {"limits": limits})
        yield _materialization(
            paths, "telemetry", results, ["telemetry_type", "group1_value", "group2_value", "value"]
        )
        yield from _quality("telemetry", paths, results)

    return telemetry


def _day_commit_asset(partitions: dg.PartitionsDefinition, limits: Limits) -> dg.AssetsDefinition:
    """The day's partitions of the datasets extracted cluster by cluster, committed from
    every cluster's segments at once (:func:`~workloads_etl.lake.parquet.commit_segments`),
    with the telemetry no cluster owns, fetched first (:data:`CONTROL_PLANE`)."""
    by_day = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=DAY)

    @dg.asset(
        key=DAY_COMMIT,
        group_name=GROUP,
        deps=[dg.AssetDep(extraction_key(ds), partition_mapping=by_day) for ds in BY_CLUSTER],
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=RUNAI_POOL,
        kinds={"parquet"},
        description=(
            "The day's lake partitions of the datasets extracted cluster by cluster, "
            "committed from the segments every cluster's extraction wrote, with the telemetry "
            "of the whole control plane: readers see all clusters of the day at once, or the "
            "previous commit."
        ),
    )
    def day_commit(
        context: AssetExecutionContext, runai: RunaiResource, data: DataDirResource
    ) -> dg.MaterializeResult:
        paths = data.paths()
        clusters = sorted(context.instance.get_dynamic_partitions(CLUSTERS_NAME))
        if not clusters:
            raise dg.Failure(
                "no cluster is known yet: the runai_clusters sensor discovers them from the "
                "control plane",
                allow_retries=False,
            )
        options = {"limits": limits, "cluster": CONTROL_PLANE}
        _run_days(context, runai, "telemetry", paths, options)
        rows: dict[str, dict[str, int]] = {}
        with named_failure():
            for day in partition_days(context):
                for ds in BY_CLUSTER:
                    segments = [*clusters, CONTROL_PLANE] if ds == "telemetry" else clusters
                    manifest = commit_segments(paths.lake, ds, day, segments, context.run.run_id)
                    rows.setdefault(str(day), {})[ds] = manifest.rows
        return dg.MaterializeResult(
            metadata={
                "clusters": dg.MetadataValue.json(clusters),
                "rows": dg.MetadataValue.json(rows),
            }
        )

    return day_commit


def build_ingest_assets(
    partitions: dg.PartitionsDefinition,
    metric_types: Sequence[str],
    limits: Limits,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    by_cluster: dg.MultiPartitionsDefinition | None = None,
) -> list[dg.AssetsDefinition]:
    """One asset per extracted dataset, each a daily-partitioned step with its checks;
    ``metric_types`` are the types fetched (those that apply to each workload), ``limits``
    the physical bounds values are checked against. With ``by_cluster`` (day x cluster),
    every dataset is extracted by it, and a daily asset commits their days
    (:data:`DAY_COMMIT`)."""
    extracted = by_cluster or partitions
    assets = [
        _workload_list_asset("workload_snapshots", False, extracted, limits),
        _workload_list_asset("deleted_workloads", True, extracted, limits),
        _metrics_asset(extracted, metric_types, limits, chunk_samples),
        _telemetry_asset(extracted, limits),
    ]
    if by_cluster is not None:
        assets.append(_day_commit_asset(partitions, limits))
    return assets
