"""Operating the pipeline as a nightly job: clean stops, no stuck runs or pool slots, one
writer per data directory, long ranges, days outside the partitions.

Every test runs the real command line in its own process, with ``DAGSTER_HOME`` set as in
production, against the shared simulator. One clean run of a day is the reference that runs
killed and run again are compared with (here, and in tests/test_lake_s3.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.cli_runs import (
    DAY,
    EXE,
    Launched,
    Reference,
    alive,
    dbt_child,
    extracting,
    ignore_sigint,
    launch,
    runs_of,
    wait_for,
)
from tests.conftest import E2E_DAYS

pytestmark = pytest.mark.slow


def test_the_clean_run_succeeds(clean_run: Reference) -> None:
    code, text = clean_run.outcome
    assert code == 0, text
    assert "Traceback" not in text and "Could not set lock" not in text


def test_a_second_run_on_the_same_data_directory_waits_then_names_the_first(
    clean_run: Reference,
) -> None:
    code, text = clean_run.second
    flat = " ".join(text.split())
    first_run = next(
        run_id for run_id, (status, _) in runs_of(clean_run.run.home).items() if status == "SUCCESS"
    )
    assert code == 1, text
    assert f"another run: the data directory {clean_run.run.data} is being written by" in flat, text
    assert f"run {first_run} (PID {clean_run.run.proc.pid}, days {DAY}..{DAY}" in flat, text
    assert "waited 2 s" in flat
    assert "Traceback" not in text and len(text.splitlines()) <= 20, text


def test_sigterm_stops_a_long_backfill_soon_and_leaves_no_stuck_run(
    e2e_simulator: Any, tmp_path: Path
) -> None:
    """(A run killed with SIGKILL while dbt builds, then run again: tests/test_lake_s3.py.)"""
    data, home = tmp_path / "data", tmp_path / "home"

    # A ten-year backfill starts real work after less than 60 s of its own process's CPU time
    # (planning years of events first would take minutes; CPU time, not wall time, so that a
    # machine loaded by other work cannot fail it; its own, as the fresh data directory's
    # dbt parse runs beside it in a process of its own, whatever the range); SIGTERM stops it
    # within 10 s, and the run is cancelled with its pool slots freed.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    start = yesterday - timedelta(days=3652)
    launched = time.monotonic()
    run = launch(
        data,
        home,
        e2e_simulator,
        "run",
        "--start",
        start.isoformat(),
        "--end",
        yesterday.isoformat(),
        WORKLOADS_ETL_START_DATE=start.isoformat(),
    )
    wait_for(lambda: extracting(run), 300, "the first request of a 10-year backfill")
    cpu, everything = run.cpu_seconds(children=False), run.cpu_seconds()
    print(
        f"10-year backfill: first raw file {time.monotonic() - launched:.1f} s after launch,"
        f" {cpu:.1f} s of the run's CPU ({everything:.1f} s with its children's)"
    )
    assert cpu < 60
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code, text = run.output(timeout=30)
    assert time.monotonic() - sent < 10, text
    assert code == 130 and "cancelled: run" in text and "Traceback" not in text, text
    runs = runs_of(home)
    assert [status for k, (status, _) in runs.items() if k != "__slots__"] == ["CANCELED"]
    assert runs["__slots__"][1] == {}


def test_sigint_stops_a_background_demo_its_dbt_and_its_simulator(tmp_path: Path) -> None:
    data, home = tmp_path / "data", tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKLOADS_ETL_", "DAGSTER_"))}
    run = Launched(
        subprocess.Popen(
            [EXE, "demo", "--days", "1", "--workloads", "20"],
            env={**env, "WORKLOADS_ETL_DATA_DIR": str(data), "DAGSTER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=ignore_sigint,
        ),
        data,
        home,
    )
    dbt = wait_for(lambda: dbt_child(run), 180, "the demo's dbt build")
    tree = [dbt, *run.descendants()]
    assert len(tree) >= 3, "the simulator and dbt run in child processes"
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    code, text = run.output(timeout=30)
    assert time.monotonic() - sent < 10, text
    assert code == 130 and "cancelled" in text and "Traceback" not in text, text
    # Dagster's compute-log watchers notice their parent is gone within a second.
    wait_for(lambda: not alive(tree), max(0.5, sent + 10 - time.monotonic()), "every child")
    runs = runs_of(home)
    assert [s for k, (s, _) in runs.items() if k != "__slots__"] == ["CANCELED"]
    assert runs["__slots__"][1] == {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (local test server)
            return bool(resp.status == 200)
    except OSError:
        return False


def _code_server(proc: subprocess.Popen[bytes]) -> bool:
    for p in psutil.Process(proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "code-server" in p.cmdline():
                return True
    return False


def test_dev_and_every_process_it_started_stop_on_sigterm(tmp_path: Path) -> None:
    """Once dev has started its simulator, dagster dev and the code server loading the
    definitions (with its dbt parse), SIGTERM ends every one of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKLOADS_ETL_", "DAGSTER_"))}
    data, port = str(tmp_path / "data"), str(_free_port())
    proc = subprocess.Popen(
        [EXE, "--data-dir", data, "dev", "--port", port, "--workloads", "20"],
        env={**env, "DAGSTER_HOME": str(tmp_path / "home")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=ignore_sigint,
    )
    try:
        wait_for(lambda: _code_server(proc), 120, "the code server")
        time.sleep(2)
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert len(tree) >= 3  # the simulator, dagster dev, the code server
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - sent < 10
        wait_for(lambda: not alive(tree), 2, "every child to end")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_simulate_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [EXE, "simulate", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=ignore_sigint,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60, "simulator")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            proc.kill()


def test_days_before_the_first_partition_are_refused_before_any_work(
    e2e_simulator: Any, tmp_path: Path
) -> None:
    code, text = launch(
        tmp_path / "data",
        tmp_path / "home",
        e2e_simulator,
        WORKLOADS_ETL_START_DATE=E2E_DAYS[-1].isoformat(),
    ).output(timeout=60)
    assert code == 2, text
    assert f"{DAY} is before the first daily partition, {E2E_DAYS[-1]}" in " ".join(text.split())
    assert not (tmp_path / "data").exists()


def test_progress_reads_only_new_events_whatever_the_history() -> None:
    import dagster as dg

    from workloads_etl.defs.launch import Progress, _Follower

    @dg.op
    def chatty(context) -> None:  # type: ignore[no-untyped-def]
        for i in range(300):
            context.log.info(f"event {i}")

    @dg.job
    def history() -> None:
        chatty()

    with dg.DagsterInstance.ephemeral() as instance:
        run_id = history.execute_in_process(instance=instance).run_id
        read: list[int] = []
        original = instance.get_records_for_run

        def counting(*args: Any, **kwargs: Any) -> Any:
            page = original(*args, **kwargs)
            read.append(len(page.records))
            return page

        instance.get_records_for_run = counting  # type: ignore[method-assign]
        follower = _Follower(instance, run_id, Progress(total_steps=1), None)
        follower.poll()
        history_size = sum(read)
        read.clear()
        for _ in range(5):
            follower.poll()
    assert history_size > 300
    assert sum(read) == 0  # later polls read nothing already seen
    assert follower.progress.done_steps == {"chatty"}
