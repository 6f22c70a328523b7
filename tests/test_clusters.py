"""A day extracted cluster by cluster: the clusters discovered from the control plane, each
cluster's lists and metrics fetched into its own segments, the day committed from them.
The lake must hold exactly what one extraction of every cluster at once writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pyarrow as pa
import pytest

from workloads_etl.ingest import day as ingest_day
from workloads_etl.ingest.lists import discover_clusters
from workloads_etl.lake.datasets import DATASETS, WORKLOAD_LISTS
from workloads_etl.lake.parquet import (
    SegmentMissingError,
    commit_segments,
    list_segments,
    read_manifest,
    read_partition,
)
from workloads_etl.runai import RunaiClient, RunaiSettings
from workloads_etl.settings import DataPaths
from workloads_etl.simulator import SimulatorConfig, SimulatorServer

NOW = datetime(2026, 11, 20, tzinfo=UTC)
DAY = date(2026, 11, 19)
BY_CLUSTER = (*WORKLOAD_LISTS, "workload_metrics")


def _settings(sim: SimulatorServer) -> RunaiSettings:
    return RunaiSettings(
        base_url=sim.base_url, client_id=sim.client_id, client_secret=sim.client_secret
    )


def _lake(paths: DataPaths, dataset: str) -> pa.Table:
    """The day's rows in primary-key order, without the run id (each run has its own)."""
    table = read_partition(paths.lake, dataset, DAY).drop_columns(["run_id"])
    keys = [(k, "ascending") for k in DATASETS[dataset].primary_key]
    return table.sort_by(keys)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[DataPaths, DataPaths, list[str]]:
    config = SimulatorConfig(seed=3, workloads=70, days=4, now=NOW)
    whole = DataPaths(tmp_path_factory.mktemp("whole")).ensure()
    split = DataPaths(tmp_path_factory.mktemp("split")).ensure()

    async def run(sim: SimulatorServer) -> list[str]:
        async with RunaiClient(_settings(sim)) as client:
            for deleted in (False, True):
                await ingest_day.workload_list_day(client, whole, DAY, "all", deleted=deleted)
            await ingest_day.metrics_day(client, whole, DAY, "all")
            clusters = await discover_clusters(client)
            for cluster in clusters:  # one run of its own per cluster
                run_id = f"run-{cluster[:8]}"
                for deleted in (False, True):
                    await ingest_day.workload_list_day(
                        client, split, DAY, run_id, deleted=deleted, cluster=cluster
                    )
                await ingest_day.metrics_day(client, split, DAY, run_id, cluster=cluster)
            return clusters

    with SimulatorServer(config) as sim:
        clusters = asyncio.run(run(sim))
    return whole, split, clusters


def test_clusters_are_discovered_from_the_control_plane(
    extracted: tuple[DataPaths, DataPaths, list[str]],
) -> None:
    whole, _, clusters = extracted
    listed = read_partition(whole.lake, "workload_snapshots", DAY, columns=["cluster_id"])
    assert len(clusters) == 2
    assert set(listed["cluster_id"].to_pylist()) == set(clusters)


def test_a_day_committed_from_its_clusters_equals_one_extraction_of_all(
    extracted: tuple[DataPaths, DataPaths, list[str]],
) -> None:
    whole, split, clusters = extracted
    for dataset in BY_CLUSTER:
        assert list_segments(split.lake, dataset, DAY) == clusters
        assert read_manifest(split.lake, dataset, DAY) is None  # nothing visible yet
        with pytest.raises(SegmentMissingError):
            commit_segments(split.lake, dataset, DAY, [*clusters, "not-a-cluster"], "day")
        manifest = commit_segments(split.lake, dataset, DAY, clusters, "day")
        assert set(manifest.segments) == set(clusters)
        expected, got = _lake(whole, dataset), _lake(split, dataset)
        assert got.num_rows > 0, dataset
        assert got.equals(expected), f"{dataset}: the clusters' segments differ from the day"
