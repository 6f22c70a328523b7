"""The command line run as an operator runs it, in its own process: the helpers of the tests
that start whole runs, and the reference they compare with, one clean run of a day."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import E2E_DAYS
from workloads_etl.defs.launch import dagster_instance

DAY = E2E_DAYS[0].isoformat()
EXE = str(Path(sys.executable).with_name("workloads-etl"))


@dataclass
class Launched:
    proc: subprocess.Popen[str]
    data: Path
    home: Path

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self, children: bool = True) -> float:
        """CPU time of the run's process so far, with its children's (the ended ones included)
        unless ``children`` is false."""
        total = 0.0
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(self.proc.pid).cpu_times()
            total += times.user + times.system
            if children:
                total += times.children_user + times.children_system
        if not children:
            return total
        for child in self.descendants():
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                total += times.user + times.system
        return total

    def output(self, timeout: float = 600) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out + err


def _environment(data: Path, home: Path, sim: Any, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNAI_", "WORKLOADS_ETL_", "DAGSTER_"))
    }
    return {
        **env,
        "WORKLOADS_ETL_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "RUNAI_BASE_URL": sim.base_url,
        "RUNAI_CLIENT_ID": sim.client_id,
        "RUNAI_CLIENT_SECRET": sim.client_secret,
        "COLUMNS": "120",
        **extra,
    }


def ignore_sigint() -> None:
    """As a shell starts a background job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def launch(
    data: Path,
    home: Path,
    sim: Any,
    *args: str,
    preexec: Callable[[], None] | None = None,
    **env: str,
) -> Launched:
    proc = subprocess.Popen(
        [EXE, *(args or ("run", "--start", DAY, "--end", DAY))],
        env=_environment(data, home, sim, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec,
    )
    return Launched(proc, data, home)


def dbt_child(run: Launched) -> psutil.Process | None:
    for p in run.descendants():
        try:
            if any(part.endswith("dbt") for part in p.cmdline()[:2]) and "build" in p.cmdline():
                return p
        except psutil.Error:
            continue
    return None


def extracting(run: Launched) -> bool:
    """The run has started real work: a raw run file is being written."""
    return any(run.data.glob("raw/*/*/.run=*.tmp")) or any(run.data.glob("raw/*/*/run=*"))


def runs_of(home: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """run id -> (status, tags) from the Dagster instance in ``home``, and under
    ``__slots__`` the runs holding pool slots; the instance is closed again before this
    returns, so nothing here holds its storage open while a run uses it."""
    with dagster_instance(home) as instance:
        runs = {r.run_id: (r.status.value, dict(r.tags)) for r in instance.get_runs()}
        slots = sorted(instance.event_log_storage.get_concurrency_run_ids())
    runs["__slots__"] = ("", {s: "" for s in slots})
    return runs


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    living = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                living.append(p)
        except psutil.NoSuchProcess:
            continue
    return living


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Reference:
    run: Launched
    outcome: tuple[int, str]
    second: tuple[int, str]  # a run started into the same data directory meanwhile


def clean_reference(sim: Any, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The reference: one clean run of DAY. A second run, into the same data directory with
    its own Dagster home (nothing shared but the directory), is started while the first
    holds the directory."""
    first = launch(tmp_path_factory.mktemp("clean"), tmp_path_factory.mktemp("home"), sim)
    wait_for(lambda: (first.data / ".writer.json").exists(), 60, "the first run to start")
    second = launch(
        first.data,
        tmp_path_factory.mktemp("home-second"),
        sim,
        WORKLOADS_ETL_LOCK_WAIT="2",
    ).output(timeout=120)
    return Reference(first, first.output(), second)
