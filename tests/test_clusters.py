"""A day extracted cluster by cluster: the clusters discovered from the control plane, each
cluster's lists and metrics fetched into its own segments, the day committed from them.
The lake must hold exactly what one extraction of every cluster at once writes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from tests.conftest import E2E_DAYS, marts_content
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
from workloads_etl.settings import DataPaths, PipelineSettings
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


# --- the Dagster graph partitioned by day x cluster --------------------------------------


@dataclass
class ClusterRuns:
    paths: DataPaths
    clusters: list[str]
    requests_before: list[Any]  # the completeness sensor's requests, no cluster extracted
    requests_one: list[Any]  # ... one cluster extracted
    requests_all: list[Any]  # ... every cluster extracted
    extraction: list[Any]  # every extraction run
    # (start, end) of the metrics steps of two runs launched at once
    side_by_side: list[tuple[float, float]]
    daily: Any


def _sensor_requests(defs: Any, name: str, instance: Any, **resources: Any) -> Any:
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(
        instance=instance, resources=resources or None, definitions=defs
    ) as context:
        return sensor.evaluate_tick(context)


def _metrics_steps(instance: Any, results: list[Any]) -> list[tuple[float, float]]:
    spans = []
    for result in results:
        stats = instance.get_run_step_stats(result.run_id)
        step = next(s for s in stats if s.step_key == "runai__workload_metrics")
        spans.append((step.start_time or 0.0, step.end_time or 0.0))
    return spans


@pytest.fixture(scope="module")
def cluster_runs(
    e2e_simulator: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterRuns]:
    """The clusters discovered by the sensor, one cluster's run, then two runs launched at
    once (the other cluster of the day, and a cluster of the next day), then the day's run."""
    from workloads_etl.defs import build_definitions
    from workloads_etl.defs.partitions import CLUSTERS_NAME
    from workloads_etl.defs.resources import RunaiResource

    paths = DataPaths(tmp_path_factory.mktemp("by-cluster")).ensure()
    settings = PipelineSettings.read(data_dir=paths.root, extract_by="day_cluster")
    runai = RunaiResource(
        base_url=e2e_simulator.base_url,
        client_id=e2e_simulator.client_id,
        client_secret=e2e_simulator.client_secret,
    )
    defs = build_definitions(settings, {"runai": runai})
    day = E2E_DAYS[0].isoformat()
    # An instance on disk, as a deployment's: two runs writing at once wait for each other's
    # SQLite commits (an in-memory instance would refuse the second writer outright).
    home = tmp_path_factory.mktemp("dagster-home")
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        found = _sensor_requests(defs, "runai_clusters", instance, runai=runai)
        for request in found.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        clusters = sorted(instance.get_dynamic_partitions(CLUSTERS_NAME))
        before = _sensor_requests(defs, "cluster_days_complete", instance).run_requests
        job = defs.resolve_job_def("extract_clusters")

        def extract(partition: tuple[str, int]) -> Any:
            cluster, n = partition
            key = dg.MultiPartitionKey({"day": E2E_DAYS[n].isoformat(), "cluster": cluster})
            return job.execute_in_process(instance=instance, partition_key=key)

        def two_at_once(*partitions: tuple[str, int]) -> list[Any]:
            with ThreadPoolExecutor(max_workers=2) as pool:
                return list(pool.map(extract, partitions))

        first = extract((clusters[0], 0))
        one = _sensor_requests(defs, "cluster_days_complete", instance).run_requests
        both = two_at_once((clusters[1], 0), (clusters[0], 1))
        every = _sensor_requests(defs, "cluster_days_complete", instance).run_requests
        daily = defs.resolve_job_def("daily_refresh").execute_in_process(
            instance=instance, partition_key=day, raise_on_error=False
        )
        yield ClusterRuns(
            paths,
            clusters,
            before,
            one,
            every,
            [first, *both],
            _metrics_steps(instance, both),
            daily,
        )


def test_clusters_become_partitions_and_their_runs_fetch_side_by_side(
    cluster_runs: ClusterRuns,
) -> None:
    assert len(cluster_runs.clusters) == 2
    assert all(r.success for r in cluster_runs.extraction)
    # two runs launched at once fetched at the same time (an instance without pool limits;
    # a deployed one lets runai_api's limit fetch at once)
    (a_start, a_end), (b_start, b_end) = cluster_runs.side_by_side
    assert a_start < b_end and b_start < a_end


def test_a_day_runs_once_every_cluster_of_it_is_extracted(cluster_runs: ClusterRuns) -> None:
    day = E2E_DAYS[0].isoformat()
    assert cluster_runs.requests_before == []
    assert cluster_runs.requests_one == []
    assert [r.partition_key for r in cluster_runs.requests_all] == [day]
    assert cluster_runs.daily.success


def test_the_marts_of_a_day_by_cluster_equal_those_of_a_whole_day_run(
    cluster_runs: ClusterRuns, clean_run: Any
) -> None:
    assert clean_run.outcome[0] == 0, clean_run.outcome[1]
    got, expected = marts_content(cluster_runs.paths), marts_content(DataPaths(clean_run.run.data))
    assert got.keys() == expected.keys()
    for table in expected:
        if got[table] != expected[table]:
            diff = set(got[table]) ^ set(expected[table])
            print(table, len(got[table]), len(expected[table]), sorted(map(str, diff))[:6])
    assert got == expected


def test_a_day_committed_from_clusters_is_rebuilt_from_each_clusters_raw_run(
    cluster_runs: ClusterRuns,
) -> None:
    from click.testing import CliRunner

    from workloads_etl.cli import main

    day = E2E_DAYS[0]
    before = read_manifest(cluster_runs.paths.lake, "workload_metrics", day)
    assert before is not None and set(before.segments) == set(cluster_runs.clusters)
    env = {"WORKLOADS_ETL_DATA_DIR": str(cluster_runs.paths.root)}
    args = ["renormalise", "--dataset", "workload_metrics", "--day", day.isoformat()]
    refused = CliRunner().invoke(main, [*args, "--run-id", "x"], env=env)
    assert refused.exit_code == 2 and "leave out --run-id" in refused.output
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"workload_metrics {day}: {before.rows} rows" in result.output
    after = read_manifest(cluster_runs.paths.lake, "workload_metrics", day)
    assert after is not None
    assert after.segments == before.segments and after.files == before.files


def test_the_definitions_by_cluster_validate(parsed_data_dir: DataPaths) -> None:
    from workloads_etl.defs import build_definitions

    settings = PipelineSettings.read(data_dir=parsed_data_dir.root, extract_by="day_cluster")
    defs = build_definitions(settings)
    dg.Definitions.validate_loadable(defs)
    assert {j.name for j in defs.jobs} == {"extract_clusters", "daily_refresh"}
    graph = defs.get_repository_def().asset_graph
    for dataset in ("workload_snapshots", "deleted_workloads", "workload_metrics", "telemetry"):
        node = graph.get(dg.AssetKey(["runai", dataset]))
        assert isinstance(node.partitions_def, dg.MultiPartitionsDefinition)
        assert node.pools == {"runai_api"}
