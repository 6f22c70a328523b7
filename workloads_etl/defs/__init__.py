"""The Dagster definitions of workloads-etl (loaded by ``workspace.yaml``)."""

from __future__ import annotations

import dagster as dg

from workloads_etl.defs.checks import freshness_checks, freshness_sensor
from workloads_etl.defs.resources import default_resources
from workloads_etl.defs.runai.assets import ASSETS as RUNAI_ASSETS
from workloads_etl.defs.schedules import daily_refresh, nightly
from workloads_etl.defs.transform.assets import ASSETS as DBT_ASSETS
from workloads_etl.defs.warehouse.assets import ASSETS as WAREHOUSE_ASSETS


def build_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[*RUNAI_ASSETS, *WAREHOUSE_ASSETS, *DBT_ASSETS],
        asset_checks=freshness_checks,
        jobs=[daily_refresh],
        schedules=[nightly],
        sensors=[freshness_sensor],
        resources=resources if resources is not None else default_resources(),
    )


defs = build_definitions()
