"""One daily partition per UTC day of usage, from the configured first day."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

# A backfill of any range runs as one run: extraction loops over its days, the warehouse
# loads each day in its own transaction, and dbt is invoked once for the whole range.
single_run = dg.BackfillPolicy.single_run()


def daily_partitions(start: date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def partition_days(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The UTC days a (possibly ranged) partitioned run covers, oldest first."""
    window = context.partition_time_window
    first = window.start.date()
    n = (window.end.date() - first).days
    return [first + timedelta(days=i) for i in range(n)]
