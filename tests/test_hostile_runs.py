"""Whole runs of the command line against a hostile control plane (the proxy of
:mod:`tests.hostile` in front of the shared simulator).

One day is first run with every record-level corruption at once, each aimed at its own
workload: the run goes through, every bad record is a quarantine row with a reason, and the
victims are still charged. Then, on the same data directory, runs that must fail: each fails
with exit code 1, one line per failed step naming the cause, no traceback, at most 20
lines on the terminal, and the serving database still the one the good run published.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from tests.conftest import E2E_DAYS
from tests.hostile import MARKUP_DEPARTMENT, MARKUP_PROJECT, HostileControlPlane
from workloads_etl.cli import main

pytestmark = pytest.mark.slow

DAY = E2E_DAYS[-1].isoformat()
EXE = str(Path(sys.executable).with_name("workloads-etl"))
RECORD_FAULTS = {
    # fault: (dataset, what the reason says)
    "negative_gpu": ("workload_snapshots", "allocatedResources.gpu: -1 is negative"),
    "negative_runtime": ("workload_snapshots", "totalRunningTimeSeconds: -1 is negative"),
    "huge_gpu": ("workload_snapshots", "1e+308 is above the GPU ceiling"),
    "deep": ("workload_snapshots", "hostileField: nested deeper than 32 levels"),
    "surrogate": ("workload_snapshots", "name: invalid Unicode (a lone surrogate)"),
    "dup_content": ("workload_snapshots", "duplicate workload id"),
}
METRIC_FAULTS = {
    "metric_nan": "value is not finite",
    "metric_negative": "value -1 is negative",
    "metric_huge": "value 1e+308 is above the GPU ceiling",
}
POISON = {*RECORD_FAULTS, *METRIC_FAULTS, "markup", "telemetry_negative"}


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> int:
        return len((self.stdout + self.stderr).splitlines())


def _environment(data: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNAI_", "WORKLOADS_ETL_", "DAGSTER_"))
    }
    return {**env, "WORKLOADS_ETL_DATA_DIR": str(data), "COLUMNS": "120", **extra}


def cli(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> Outcome:
    started = time.monotonic()
    proc = subprocess.run(
        [EXE, *(args or ("run", "--start", DAY, "--end", DAY))],
        env=_environment(data, **(env or {})),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=preexec,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


@dataclass
class Poisoned:
    proxy: HostileControlPlane
    url: str
    credentials: dict[str, str]
    data: Path
    outcome: Outcome
    record_victims: dict[str, str]
    metric_victims: dict[str, str]

    def run(self, faults: set[str], **env: str) -> Outcome:
        self.proxy.faults = set(faults)
        return cli(self.data, env={**self.credentials, "RUNAI_BASE_URL": self.url, **env})


@pytest.fixture(scope="module")
def poisoned(e2e_simulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Poisoned]:
    proxy = HostileControlPlane(e2e_simulator.base_url)
    credentials = {
        "RUNAI_CLIENT_ID": e2e_simulator.client_id,
        "RUNAI_CLIENT_SECRET": e2e_simulator.client_secret,
    }
    data = tmp_path_factory.mktemp("hostile")
    with proxy.running() as url:
        state = Poisoned(proxy, url, credentials, data, Outcome(0, "", "", 0), {}, {})
        state.outcome = state.run(POISON)
        state.record_victims = {
            f: proxy.victim(f) for f in (*RECORD_FAULTS, "markup") if f != "dup_content"
        }
        state.record_victims["dup_content"] = proxy.victim("negative_gpu")
        state.metric_victims = dict(proxy.metric_victims)
        proxy.faults = set()
        yield state


def _quarantine(data: Path) -> list[tuple[str, str, str]]:
    with duckdb.connect() as con:
        return con.execute(
            "select dataset, reason, raw_record from read_parquet(?, hive_partitioning=true)",
            [str(data / "lake" / "quarantine" / "**" / "*.parquet")],
        ).fetchall()


def _serving(data: Path) -> tuple[str, str]:
    """The serving database's publishing run and its file digest."""
    path = data / "serving" / "warehouse.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute("select run_id from meta.publication").fetchone()
    assert row is not None
    return str(row[0]), hashlib.sha256(path.read_bytes()).hexdigest()


# --- one day of poison: the run goes through --------------------------------------------


def test_a_day_of_corrupt_records_runs_through(poisoned: Poisoned) -> None:
    out = poisoned.outcome
    assert out.code == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    run_id = out.stdout.split("run: ")[-1].split()[0]
    assert _serving(poisoned.data)[0] == run_id  # the run published


@pytest.mark.parametrize("fault", sorted(RECORD_FAULTS))
def test_each_corrupt_record_is_quarantined_with_its_reason(poisoned: Poisoned, fault: str) -> None:
    dataset, reason = RECORD_FAULTS[fault]
    victim = poisoned.record_victims[fault]
    found = [
        r
        for d, r, raw in _quarantine(poisoned.data)
        if d == dataset and victim in raw and reason in r
    ]
    assert len(found) == 1, (fault, victim)


@pytest.mark.parametrize("fault", sorted(METRIC_FAULTS))
def test_each_corrupt_sample_is_quarantined_with_its_reason(poisoned: Poisoned, fault: str) -> None:
    victim = poisoned.metric_victims[fault]
    found = [
        r
        for d, r, _ in _quarantine(poisoned.data)
        if d == "workload_metrics" and victim in r and METRIC_FAULTS[fault] in r
    ]
    assert found, (fault, victim)


def test_a_negative_telemetry_value_is_quarantined(poisoned: Poisoned) -> None:
    assert any(
        d == "telemetry" and r == "value -5 is negative" for d, r, _ in _quarantine(poisoned.data)
    )


def test_the_victims_are_still_charged(poisoned: Poisoned) -> None:
    victims = [*poisoned.record_victims.values(), *poisoned.metric_victims.values()]
    with duckdb.connect(str(poisoned.data / "serving" / "warehouse.duckdb"), read_only=True) as con:
        charged = dict(
            con.execute(
                "select workload_id, sum(total_cost) from marts.fct_workload_usage_daily "
                "where workload_id in (select unnest(?)) group by 1",
                [victims],
            ).fetchall()
        )
        totals = con.execute(
            "select (select sum(total_cost) from marts.fct_workload_usage_daily), "
            "(select sum(total_cost) from marts.rpt_chargeback_monthly)"
        ).fetchone()
    assert set(charged) == set(victims) and all(v > 0 for v in charged.values())
    assert totals is not None and totals[0] == pytest.approx(totals[1])  # marts agree


def test_names_from_the_api_are_printed_as_text(poisoned: Poisoned) -> None:
    """A department named ``[/]`` (rich markup) and a project name with an escape sequence:
    the summary shows them as text, and so does ``sql``."""
    assert MARKUP_DEPARTMENT in poisoned.outcome.stdout
    query = "select distinct project_name from marts.fct_workload_usage_daily where "
    out = cli(poisoned.data, "sql", query + f"department_name = '{MARKUP_DEPARTMENT}'")
    assert out.code == 0, out.stderr
    assert "\x1b" not in out.stdout + poisoned.outcome.stdout
    assert MARKUP_PROJECT.replace("\x1b", "\\x1b") in out.stdout


# --- runs that must fail, and never leave the published marts mixed ------------------------

# Every other cause (incomplete lists, permission, wrong URL, sizes, TLS, DNS) is named by
# the same code path; tests/test_hostile_api.py shows each against the client.
FAILING = [
    # (faults, environment, the cause named by each failed step, seconds at most)
    (
        # the list pages wrongly, the list of deleted workloads never answers: two causes
        {"stuck_next", "hang_deleted"},
        {"RUNAI_REQUEST_DEADLINE": "2", "RUNAI_RETRY_BUDGET": "6"},
        [
            "runai__workload_snapshots: broken paging: GET /api/v1/workloads: 'next'=20 does not"
            " advance",
            "runai__deleted_workloads: timeout: GET /api/v1/workloads: no complete answer within"
            " 2 s",
        ],
        60,
    ),
    (
        {"token_401"},
        {},
        ["credentials: the control plane refused the credentials (HTTP 401)"],
        60,
    ),
    (
        {"overallocate"},
        {},
        ["dbt build: 1 failed (assert_nodepool_allocation_within_capacity)"],
        300,
    ),
]


@pytest.mark.parametrize(
    ("faults", "env", "causes", "seconds"), FAILING, ids=[sorted(f)[-1] for f, *_ in FAILING]
)
def test_a_failing_run_names_its_cause_and_publishes_nothing(
    poisoned: Poisoned, faults: set[str], env: dict[str, str], causes: list[str], seconds: float
) -> None:
    before = _serving(poisoned.data)
    out = poisoned.run(faults, **env)
    text = out.stdout + out.stderr
    flat = " ".join(text.split())
    assert out.code == 1, text[-3000:]
    for cause in causes:
        assert cause in flat, text[-3000:]
    assert "Traceback" not in text and out.lines <= 20, text
    assert out.seconds < seconds
    assert _serving(poisoned.data) == before  # the last good build, untouched


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_down_control_plane_fails_the_run_within_two_minutes(poisoned: Poisoned) -> None:
    before = _serving(poisoned.data)
    out = cli(
        poisoned.data,
        env={**poisoned.credentials, "RUNAI_BASE_URL": f"http://127.0.0.1:{_closed_port()}"},
    )
    text = out.stdout + out.stderr
    assert out.code == 1 and out.seconds < 120 and out.lines <= 20, text
    assert "connection refused: nothing accepts connections" in text
    assert "retries: up to" in text  # the retry budget, said once
    assert text.count("retries: up to") == 1
    assert _serving(poisoned.data) == before
    log = Path(text.split("run log: ")[1].split()[0]).read_text(encoding="utf-8")
    assert "httpx.ConnectError" in log  # the whole chain, in the run's log only


def _file_size_limit(limit: int) -> Callable[[], None]:
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write(), not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_files


def test_a_full_disk_is_named_and_not_retried(poisoned: Poisoned) -> None:
    """Files may not grow beyond 3 MB: the kernel fails the write (EFBIG) as it fails
    writes to a full disk."""
    before = _serving(poisoned.data)
    poisoned.proxy.faults = set()  # a healthy control plane: the disk is what fails
    out = cli(
        poisoned.data,
        env={**poisoned.credentials, "RUNAI_BASE_URL": poisoned.url},
        preexec=_file_size_limit(3_000_000),
    )
    text = out.stdout + out.stderr
    assert out.code == 1 and "disk error: a file grew beyond the size allowed" in text, text
    assert "Traceback" not in text and out.lines <= 20
    assert _serving(poisoned.data) == before


def test_a_reader_holding_the_warehouse_is_named_as_a_reader(poisoned: Poisoned) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
            " time.sleep(300)",
            str(poisoned.data / "warehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    poisoned.proxy.faults = set()  # a healthy control plane: the reader is what fails
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        out = cli(
            poisoned.data,
            env={
                **poisoned.credentials,
                "RUNAI_BASE_URL": poisoned.url,
                "WORKLOADS_ETL_LOCK_WAIT": "1",
            },
        )
    finally:
        holder.kill()
        holder.wait()
    text = out.stdout + out.stderr
    assert out.code == 1, text
    flat = " ".join(text.split())
    assert f"is held open by a reader, PID {holder.pid} (" in flat, text
    assert "not by a run" in flat and "serving" in flat, text
    assert "Traceback" not in text


# --- configuration, checked before any work -----------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORKLOADS_ETL_START_DATE": "garbage"}, "WORKLOADS_ETL_START_DATE:"),
        ({"WORKLOADS_ETL_MAX_GPUS": "nan"}, "WORKLOADS_ETL_MAX_GPUS:"),
        (
            {"RUNAI_REQUESTS_PER_SECOND": "nan"},
            "RUNAI_REQUESTS_PER_SECOND: Input should be a finite",
        ),
        ({"RUNAI_RETRY_BUDGET": "-1"}, "RUNAI_RETRY_BUDGET: Input should be greater than 0"),
        (
            {"RUNAI_BASE_URL": "http://h:99999"},
            "RUNAI_BASE_URL: the Run:ai base URL has an invalid port",
        ),
        ({"RUNAI_BASE_URL": "ftp://h"}, "RUNAI_BASE_URL: the Run:ai base URL must be http(s)"),
        ({"WORKLOADS_ETL_DATA_DIR": "/dev/null/data"}, "is not writable (Not a directory)"),
    ],
)
def test_bad_settings_are_refused_up_front_in_one_line(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    base = {
        "RUNAI_BASE_URL": "http://127.0.0.1:9",
        "RUNAI_CLIENT_ID": "id",
        "RUNAI_CLIENT_SECRET": "a-secret-value",
        "WORKLOADS_ETL_DATA_DIR": str(tmp_path / "data"),
    }
    result = CliRunner().invoke(
        main, ["run", "--start", DAY, "--end", DAY], env={**base, **env}, catch_exceptions=False
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert "a-secret-value" not in result.output
    assert not (tmp_path / "data" / "logs").exists()  # refused before any work
