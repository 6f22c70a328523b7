"""Freshness: each day's partition of the extracted and loaded data lands by 06:00 UTC next day."""

from __future__ import annotations

import dagster as dg

from workloads_etl.defs.runai.assets import ASSETS as RUNAI_ASSETS
from workloads_etl.defs.warehouse.assets import ASSETS as WAREHOUSE_ASSETS

freshness_checks = dg.build_time_partition_freshness_checks(
    assets=[*RUNAI_ASSETS, *WAREHOUSE_ASSETS],
    deadline_cron="0 6 * * *",
    timezone="UTC",
)
freshness_sensor = dg.build_sensor_for_freshness_checks(freshness_checks=freshness_checks)
