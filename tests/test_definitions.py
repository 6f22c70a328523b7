"""The Dagster definitions: they load and validate, the graph is the expected one, the nightly
schedule asks for the previous day."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from workloads_etl.defs import build_definitions
from workloads_etl.settings import DataPaths, PipelineSettings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def defs(parsed_data_dir: DataPaths) -> dg.Definitions:
    return build_definitions(PipelineSettings.read(data_dir=parsed_data_dir.root))


EXPECTED_ASSET_KEYS = {
    "runai/workload_snapshots",
    "runai/deleted_workloads",
    "runai/workload_metrics",
    "runai/telemetry",
    "raw/workload_snapshots",
    "raw/deleted_workloads",
    "raw/workload_metrics",
    "raw/telemetry",
}


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


def test_asset_graph_contains_extraction_loads_and_marts(defs: dg.Definitions) -> None:
    keys = _keys(defs)
    assert keys >= EXPECTED_ASSET_KEYS
    for mart in (
        "marts/fct_workload_usage_daily",
        "marts/dim_workloads",
        "marts/dim_workloads_history",
        "marts/rpt_chargeback_monthly",
        "marts/rpt_top_idle_workloads",
        "marts/rpt_nodepool_allocation_hourly",
        "marts/rpt_pending_time_by_project",
        "marts/rpt_workload_utilisation_percentiles",
    ):
        assert mart in keys, mart


def test_marts_depend_on_the_warehouse_loads(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    upstream = graph.get(dg.AssetKey(["marts", "fct_workload_usage_daily"])).parent_keys
    ancestors = set(upstream)
    frontier = list(upstream)
    while frontier:
        key = frontier.pop()
        for parent in graph.get(key).parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    assert dg.AssetKey(["raw", "workload_metrics"]) in ancestors
    assert dg.AssetKey(["runai", "workload_metrics"]) in ancestors


def test_dbt_tests_are_asset_checks(defs: dg.Definitions) -> None:
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert any(name.startswith("unique_") for name in checks)
    assert {"completeness", "no_duplicate_keys", "quarantine_share", "metrics_coverage"} <= checks


def test_nightly_schedule_requests_the_previous_day(defs: dg.Definitions) -> None:
    schedule = defs.resolve_schedule_def("nightly")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone in (None, "UTC")
    with dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    ) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert requests is not None
    assert [r.partition_key for r in requests] == ["2026-11-26"]


def test_credentials_are_environment_references_not_values(defs: dg.Definitions) -> None:
    runai = defs.resources["runai"]
    secret_fields = ("token",) if os.environ.get("RUNAI_TOKEN") else ("client_id", "client_secret")
    for name in (*secret_fields, "base_url"):
        value = getattr(runai, name)
        assert isinstance(value, dg.EnvVar), f"{name} must be an EnvVar, not a value"
    assert {getattr(runai, n).env_var_name for n in secret_fields} <= {
        "RUNAI_TOKEN",
        "RUNAI_CLIENT_ID",
        "RUNAI_CLIENT_SECRET",
    }


def test_dagster_definitions_validate(parsed_data_dir: DataPaths) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={**os.environ, "WORKLOADS_ETL_DATA_DIR": str(parsed_data_dir.root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
