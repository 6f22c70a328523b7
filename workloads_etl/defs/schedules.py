"""The nightly job: at 02:00 UTC, the whole graph for the previous UTC day."""

from __future__ import annotations

import dagster as dg

from workloads_etl.defs.checks import freshness_checks

daily_refresh = dg.define_asset_job(
    "daily_refresh",
    # Freshness checks are evaluated by their sensor against the wall clock, not by the runs.
    selection=dg.AssetSelection.all() - dg.AssetSelection.checks(*freshness_checks),
    description="Extract, normalise, load and model one or more UTC days (backfills: any range).",
)

# The schedule of a daily-partitioned job targets the last complete partition: the run at
# 02:00 UTC on day D+1 processes day D.
nightly = dg.build_schedule_from_partitioned_job(
    daily_refresh,
    name="nightly",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
