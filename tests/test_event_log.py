"""The instance's event log (workloads_etl/defs/event_log.py): Dagster's SQLite files, read
and written through engines kept open, bounded in number, and safe across a fork."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.test_utils import create_run_for_test

from workloads_etl.defs.event_log import OPEN_DATABASES, PooledSqliteEventLogStorage
from workloads_etl.defs.launch import dagster_instance


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    # the home the instance is made for wins over the environment's
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    with dagster_instance(tmp_path / "home") as inst:
        yield inst


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id) if e.message.startswith("m")]


def test_the_instance_keeps_its_events_where_dagster_does(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    run = create_run_for_test(instance, job_name="nightly")
    for i in range(20):
        instance.report_engine_event(f"m{i}", run)
    assert _messages(instance, run.run_id) == [f"m{i}" for i in range(20)]
    # Dagster's own storage reads the same files
    runs_dir = Path(instance.root_directory) / "history" / "runs"
    assert (runs_dir / f"{run.run_id}.db").is_file()
    plain = SqliteEventLogStorage(str(runs_dir))
    assert [e.message for e in plain.get_logs_for_run(run.run_id)][-20:] == [
        f"m{i}" for i in range(20)
    ]


def test_open_databases_stay_bounded_and_every_run_stays_readable(
    instance: dg.DagsterInstance,
) -> None:
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    runs = [create_run_for_test(instance, job_name="nightly") for _ in range(OPEN_DATABASES + 4)]
    for k, run in enumerate(runs):
        instance.report_engine_event(f"m{k}", run)
        assert len(storage._engines) <= OPEN_DATABASES
    for k, run in enumerate(runs):  # the closed ones open again
        assert _messages(instance, run.run_id) == [f"m{k}"]
    storage.wipe()  # deletes the run files: their connections are closed first
    assert list(storage._engines) == ["index"]
    assert _messages(instance, runs[0].run_id) == []
    instance.report_engine_event("m-again", runs[0])  # into a new file, not the deleted one
    assert _messages(instance, runs[0].run_id) == ["m-again"]


def test_a_forked_child_writes_through_connections_of_its_own(
    instance: dg.DagsterInstance,
) -> None:
    run = create_run_for_test(instance, job_name="nightly")
    instance.report_engine_event("m-parent-1", run)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            instance.report_engine_event("m-child", run)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    instance.report_engine_event("m-parent-2", run)
    assert _messages(instance, run.run_id) == ["m-parent-1", "m-child", "m-parent-2"]
