"""Freshness: each day's partition of the extracted and loaded data lands by 06:00 UTC next day."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def build_freshness_checks(
    assets: Sequence[dg.AssetsDefinition],
) -> tuple[Sequence[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """The checks of ``assets`` and the sensor that evaluates them against the wall clock."""
    checks = dg.build_time_partition_freshness_checks(
        assets=list(assets), deadline_cron="0 6 * * *", timezone="UTC"
    )
    return checks, dg.build_sensor_for_freshness_checks(freshness_checks=checks)
