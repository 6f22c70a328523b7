"""The dbt project as Dagster assets: staging, intermediate and marts; dbt tests as checks."""

# No `from __future__ import annotations` here: Dagster reads the annotations of the asset
# functions (the context type) at definition time.

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from workloads_etl.defs.partitions import backfill_policy, partition_days
from workloads_etl.defs.transform.project import prepared_manifest
from workloads_etl.defs.warehouse.assets import WRITER_POOL, raw_table_key
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import (
    clear_window,
    dbt_vars_json,
    log_dir,
    samples_by_day,
    split_window,
    usage_window,
    write_window,
)


class WarehouseTranslator(DagsterDbtTranslator):
    """dbt sources are the warehouse's raw tables (``raw/<table>``); models keep their
    schema as the key prefix (``marts/fct_workload_usage_daily``) and their folder as group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return raw_table_key(dbt_resource_props["name"])
        schema = dbt_resource_props.get("config", {}).get("schema") or "main"
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"
        fqn = dbt_resource_props.get("fqn") or []
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"


def failed_nodes(run_results: Mapping[str, Any]) -> list[str]:
    """The nodes of a dbt invocation that failed or errored, by name."""
    # unique_id: <resource type>.<package>.<name>[.<hash of a test>]
    return [
        [*str(r.get("unique_id") or "?").split("."), "?", "?"][2]
        for r in run_results.get("results", [])
        if r.get("status") in ("error", "fail", "runtime error")
    ]


def build_dbt_assets(
    project: DbtProject,
    paths: DataPaths,
    partitions: dg.PartitionsDefinition,
    user_vars: dict[str, Any] | None,
    window_samples: int,
) -> list[dg.AssetsDefinition]:
    """Every dbt model, seed and test of ``project`` as daily-partitioned assets and checks;
    ``user_vars`` are the dbt vars of the user's contract (idle threshold, FOCUS names).
    ``window_samples`` bounds the metric samples one ``dbt build`` reprocesses
    (:attr:`~workloads_etl.settings.PipelineSettings.dbt_window_samples`)."""

    @dbt_assets(
        manifest=prepared_manifest(project, paths, user_vars),
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=WRITER_POOL,
        dagster_dbt_translator=WarehouseTranslator(
            settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
        ),
    )
    def warehouse_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        """One ``dbt build`` for the run's days: the daily models reprocess only those days.
        The days are written to the warehouse's window table before dbt starts (this step
        holds the writer pool) and cleared after it; the vars are the same on every run, so
        dbt keeps its partial parse (its target) from one run to the next.

        Days holding more metric samples than one build may reprocess within DuckDB's memory
        limit (a backfill of a large cluster) are built in consecutive windows, oldest first,
        each its own ``dbt build``; the step stops at the first that fails, and its events are
        those of the last build, which leaves every model and test in their final state."""
        window = usage_window(partition_days(context))
        samples = samples_by_day(paths.warehouse, window) if window else {}
        windows = split_window(window, samples, window_samples)
        # The models and their data tests; the unit tests (a model's logic on fixed inputs,
        # whatever the data) belong to development and CI, where make test runs them.
        args = [
            "build",
            "--exclude-resource-type",
            "unit_test",
            "--vars",
            dbt_vars_json(user_vars),
            "--log-path",
            str(log_dir(paths)),
        ]
        try:
            for n, part in enumerate(windows, 1):
                # the builds before the last create a fresh warehouse's models from their
                # own days only; the later builds add the rest incrementally
                through = part[1] if part is not None and n < len(windows) else None
                write_window(paths.warehouse, part, through)
                invocation = dbt.cli(
                    args, context=context, target_path=project.target_path, raise_on_error=False
                )
                if n == len(windows):
                    yield from invocation.stream()
                    break
                invocation.wait()
                days = f"{part[0]}..{part[1]}" if part else "every day"
                done = invocation.is_successful()
                context.log.info(
                    f"dbt build {n} of {len(windows)} ({days}): {'done' if done else 'failed'}"
                )
                if not done:
                    break
        finally:
            clear_window(paths.warehouse)
        if not invocation.is_successful():
            failed = failed_nodes(invocation.get_artifact("run_results.json"))
            raise dg.Failure(
                description=(
                    f"dbt build: {len(failed)} failed ({', '.join(failed[:5])}"
                    + (", ..." if len(failed) > 5 else "")
                    + "); nothing was published, the serving database is the last good build"
                ),
                allow_retries=False,
            )

    return [warehouse_models]
