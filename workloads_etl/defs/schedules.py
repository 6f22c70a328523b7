"""The nightly job: at 02:00 UTC, the whole graph for the previous UTC day."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

JOB_NAME = "daily_refresh"


def build_job_and_schedule(
    freshness_checks: Sequence[dg.AssetChecksDefinition],
) -> tuple[dg.UnresolvedAssetJobDefinition, Any]:
    job = dg.define_asset_job(
        JOB_NAME,
        # Freshness checks are evaluated by their sensor against the wall clock, not by runs.
        selection=dg.AssetSelection.all() - dg.AssetSelection.checks(*freshness_checks),
        description=(
            "Extract, normalise, load and model one or more UTC days (backfills: any range)."
        ),
    )
    # The schedule of a daily-partitioned job targets the last complete partition: the run at
    # 02:00 UTC on day D+1 processes day D.
    nightly = dg.build_schedule_from_partitioned_job(
        job,
        name="nightly",
        hour_of_day=2,
        minute_of_hour=0,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return job, nightly
