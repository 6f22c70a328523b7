"""One daily partition per UTC day of usage."""

from __future__ import annotations

import os
from datetime import date, timedelta

import dagster as dg

START_DATE_ENV = "WORKLOADS_ETL_START_DATE"
DEFAULT_START_DATE = "2025-01-01"

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(START_DATE_ENV, DEFAULT_START_DATE), timezone="UTC"
)

# A backfill of any range runs as one run: extraction loops over its days, the warehouse
# loads each day in its own transaction, and dbt is invoked once for the whole range.
single_run = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The UTC days a (possibly ranged) partitioned run covers, oldest first."""
    window = context.partition_time_window
    first = window.start.date()
    n = (window.end.date() - first).days
    return [first + timedelta(days=i) for i in range(n)]
