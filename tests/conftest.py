"""Shared, expensive fixtures: one simulated control plane and one pipeline run per session.

The end-to-end tests (Dagster materialisations, dbt marts, ground truth) all read the same
run, so the suite pays for the simulator start-up and the dbt build once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from workloads_etl.settings import DataPaths, PipelineSettings

# A frozen clock: the run is reproducible, and the three days before it are complete.
E2E_NOW = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
E2E_DAYS = [date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19)]
E2E_CHUNK_SAMPLES = 20_000
# The backfill's metric samples per day are about 384,000, 550,000 and 661,000: one build may
# take the first two days, the third is a window of its own.
E2E_DBT_WINDOW_SAMPLES = 1_000_000


# The expensive session fixtures, each made once: with `pytest -n 2 --dist loadgroup` (make
# test), every test that uses one runs in the same worker, and so does every test of its
# module that shares a module fixture with it; every other test runs in the worker of the
# rest of its module (module fixtures are made once too).
SHARED_FIXTURE_GROUPS = {"pipeline_run": "pipeline", "clean_run": "clean-run"}


def _module_fixtures(item: pytest.Item) -> set[str]:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    return {name for name, fixtures in defs.items() if fixtures[-1].scope == "module"}


def xdist_groups(items: list[pytest.Item]) -> dict[str, str]:
    """Each test's group (by node id): the group of the shared fixture it uses, or of a test
    of its module it shares a module fixture with, else its module's."""
    groups: dict[str, str] = {}
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        names = getattr(item, "fixturenames", ())
        group = next((g for f, g in SHARED_FIXTURE_GROUPS.items() if f in names), None)
        if group is not None:
            groups[item.nodeid] = group
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    for module, members in by_module.items():
        fixtures = {m.nodeid: _module_fixtures(m) for m in members}
        changed = True
        while changed:  # a module fixture's tests all join the group of any of them
            changed = False
            for a in members:
                for b in members:
                    if (
                        a.nodeid in groups
                        and b.nodeid not in groups
                        and fixtures[a.nodeid] & fixtures[b.nodeid]
                    ):
                        groups[b.nodeid] = groups[a.nodeid]
                        changed = True
        for m in members:
            groups.setdefault(m.nodeid, module)
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist's hook, which reads the group markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    groups = xdist_groups(items)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))


@dataclass
class PipelineRun:
    paths: DataPaths
    simulator: Any  # SimulatorServer
    defs: Any  # the Definitions the run was built from
    job: Any  # the daily_refresh JobDefinition, bound to this run's resources
    instance: Any  # DagsterInstance
    result: Any  # ExecuteInProcessResult of the 3-day backfill
    days: list[date]
    nightly: list[Any]  # the nightly run of each day, each at its day's end
    dbt_results: dict[str, Any]  # run_results.json of the last nightly's dbt build


@pytest.fixture(scope="session")
def e2e_simulator() -> Iterator[Any]:
    from workloads_etl.simulator import SimulatorConfig, SimulatorServer

    config = SimulatorConfig(seed=11, workloads=160, days=6, now=E2E_NOW, admin=True)
    with SimulatorServer(config, in_process=False) as sim:
        yield sim


@pytest.fixture(scope="session")
def pipeline_run(
    tmp_path_factory: pytest.TempPathFactory, e2e_simulator: Any
) -> Iterator[PipelineRun]:
    """The whole graph, materialised in-process for three days as one backfill run, then
    run again day by day as the nightly schedule would have run them: each just after its
    day ended (the simulator's clock set there), so each day is attributed to the state it
    ended in (a backfill can only know the state at its own fetch time)."""
    import dagster as dg

    from workloads_etl.defs import build_definitions
    from workloads_etl.defs.launch import RANGE_END_TAG, RANGE_START_TAG
    from workloads_etl.defs.resources import RunaiResource
    from workloads_etl.warehouse.dbt import target_dir

    paths = DataPaths(tmp_path_factory.mktemp("pipeline")).ensure()
    # Small chunks: every metrics partition is several files, as a large day's would be.
    # And the backfill's dbt builds in two windows, as a long backfill of a large cluster is
    # built (its days hold more samples than one build may take).
    settings = PipelineSettings.read(
        data_dir=paths.root,
        chunk_samples=E2E_CHUNK_SAMPLES,
        dbt_window_samples=E2E_DBT_WINDOW_SAMPLES,
    )
    resources = {
        "runai": RunaiResource(
            base_url=e2e_simulator.base_url,
            client_id=e2e_simulator.client_id,
            client_secret=e2e_simulator.client_secret,
        ),
    }
    defs = build_definitions(settings, resources)
    job = defs.resolve_job_def("daily_refresh")
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                RANGE_START_TAG: E2E_DAYS[0].isoformat(),
                RANGE_END_TAG: E2E_DAYS[-1].isoformat(),
            },
            raise_on_error=False,
        )
        nightly = []
        try:
            for day in E2E_DAYS:
                e2e_simulator.set_clock(datetime.combine(day + timedelta(days=1), time(), UTC))
                nightly.append(
                    job.execute_in_process(
                        instance=instance, partition_key=day.isoformat(), raise_on_error=False
                    )
                )
        finally:
            e2e_simulator.set_clock(E2E_NOW)
        dbt_results = json.loads((target_dir(paths) / "run_results.json").read_text())
        yield PipelineRun(
            paths, e2e_simulator, defs, job, instance, result, E2E_DAYS, nightly, dbt_results
        )


@pytest.fixture(scope="session")
def parsed_data_dir(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    """A data directory for the tests that only build the definitions: the first of them has
    dbt parse the project there (the manifest the asset graph is built from), the others
    find the manifest, so dbt parses the project once per worker instead of once for each."""
    return DataPaths(tmp_path_factory.mktemp("parsed")).ensure()


@pytest.fixture(scope="session")
def clean_run(e2e_simulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One clean command-line run of ``E2E_DAYS[0]`` into a fresh data directory
    (:func:`tests.cli_runs.clean_reference`): the reference that runs killed and re-run
    (tests/test_operations.py) and a run with its lake on S3 (tests/test_lake_s3.py) are
    compared with."""
    from tests.cli_runs import clean_reference

    return clean_reference(e2e_simulator, tmp_path_factory)


def lake_fingerprint(paths: DataPaths, day: date) -> dict[str, Any]:
    """Each extracted dataset's lake partition of ``day``, without what a re-run changes by
    definition (run ids, fetch times)."""
    from workloads_etl.lake.datasets import EXTRACTED
    from workloads_etl.lake.parquet import read_partition

    out = {}
    for ds in EXTRACTED:
        table = read_partition(paths.lake, ds, day)
        keep = [c for c in table.column_names if c not in ("run_id", "fetched_at")]
        out[ds] = table.select(keep)
    return out


def assert_same_content(
    before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]
) -> None:
    """Equal row for row, to the bit (sums are exact, so their order does not matter)."""
    assert before.keys() == after.keys()
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            same = [
                a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
                for a, b in zip(old, new, strict=True)
            ]
            differ = [i for i, ok in enumerate(same) if not ok]
            assert not differ, (table, [(old[i], new[i]) for i in differ], old[:2])


def read_only(paths: DataPaths) -> Any:
    import duckdb

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def marts_content(paths: DataPaths) -> dict[str, list[tuple[Any, ...]]]:
    """Every mart table's rows in a canonical order, without run ids (lineage, which a re-run
    changes by definition)."""
    with read_only(paths) as con:
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' order by table_name, ordinal_position"
        ).fetchall():
            if column != "run_id":
                columns.setdefault(table, []).append(column)
        return {
            t: con.execute(
                f"select {', '.join(cols)} from marts.{t} order by all"  # noqa: S608
            ).fetchall()
            for t, cols in columns.items()
        }
