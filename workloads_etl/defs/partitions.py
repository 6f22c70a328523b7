"""One daily partition per UTC day of usage, from the configured first day; with extraction
by cluster, one partition per day and cluster of the control plane."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from workloads_etl.settings import DAYS_PER_RUN

# A backfill runs in runs of at most DAYS_PER_RUN days, oldest first: within one, extraction
# loops over its days, the warehouse loads each day in its own transaction, and dbt is
# invoked once for them all. Each run publishes what it built, so a long backfill shows its
# first month within minutes, keeps what it finished if stopped, and never plans years of
# events before its first request.
backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN)


def daily_partitions(start: date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC")


def partition_days(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The UTC days a (possibly ranged) partitioned run covers, oldest first."""
    window = context.partition_time_window
    first = window.start.date()
    n = (window.end.date() - first).days
    return [first + timedelta(days=i) for i in range(n)]


# The clusters of the control plane, discovered from it (its workload counts per cluster; the
# API lists no clusters) by the ``runai_clusters`` sensor. A cluster once found stays.
CLUSTERS_NAME = "runai_clusters"
CLUSTERS = dg.DynamicPartitionsDefinition(name=CLUSTERS_NAME)
DAY, CLUSTER = "day", "cluster"


def day_cluster_partitions(start: date) -> dg.MultiPartitionsDefinition:
    """Day x cluster: a partition key ``<cluster>|<day>`` (Dagster orders dimensions by name)."""
    return dg.MultiPartitionsDefinition({DAY: daily_partitions(start), CLUSTER: CLUSTERS})


def day_and_cluster(context: dg.AssetExecutionContext) -> tuple[date, str]:
    """The day and the cluster of a day x cluster partitioned step."""
    key = context.partition_key
    if not isinstance(key, dg.MultiPartitionKey):
        raise TypeError(f"not a day x cluster partition: {key!r}")
    by = key.keys_by_dimension
    return date.fromisoformat(by[DAY]), by[CLUSTER]
