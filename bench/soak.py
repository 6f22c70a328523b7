"""Soak: many runs in a row against a faulty control plane, each killed at a random moment
half of the time and then run again, all into one data directory and one Dagster home.

At the end the marts must equal those of one clean run against a control plane without
faults, with no duplicate keys in the warehouse, no temporary files left in the raw landing
or the lake, no run left open in Dagster and no pool slot held.

Every run is the real command line (``workloads-etl run``) in its own process; the control
plane is the bundled simulator (``workloads-etl simulate``), also in its own process, with
20 % of requests faulted in mixed ways (server errors, rate limits, dropped connections,
offset paging that repeats or skips rows, listed in pages of 25) and short-lived tokens.
The run logs are then counted for the faults the client met and recovered from.

Run: ``.venv/bin/python bench/soak.py [--runs 20] [--kill-probability 0.5] [--seed 1]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

BIN = Path(sys.executable).parent
EXE = str(BIN / "workloads-etl")
NOW = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = ("2026-11-18", "2026-11-19")
FAULTS = (
    "error_rate=0.08,rate_limit_rate=0.05,drop_rate=0.03,list_drift=0.02,list_skip=0.02,"
    "token_ttl=20,seed={seed}"
)
CLIENT = {"RUNAI_CLIENT_ID": "workloads-etl-demo", "RUNAI_CLIENT_SECRET": "demo-secret-change-me"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def simulator(faults: str | None) -> Iterator[str]:
    port = _free_port()
    cmd = [EXE, "simulate", "--port", str(port), "--workloads", "120", "--days", "4"]
    cmd += ["--now", NOW.isoformat(), "--seed", "5"]
    if faults:
        cmd += ["--faults", faults]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Attempt:
    code: int
    seconds: float
    killed_after: float | None


def run(url: str, data: Path, home: Path, kill_after: float | None) -> Attempt:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNAI_", "WORKLOADS_ETL_", "DAGSTER_"))
    }
    env |= CLIENT | {
        "RUNAI_BASE_URL": url,
        # Small pages, so that offset paging faults (rows repeated or skipped) play.
        "RUNAI_PAGE_SIZE": "25",
        "WORKLOADS_ETL_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [EXE, "run", "--start", DAYS[0], "--end", DAYS[-1]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return Attempt(-9, time.monotonic() - started, kill_after)
    return Attempt(proc.returncode, time.monotonic() - started, None)


def marts(data: Path) -> dict[str, list[tuple[Any, ...]]]:
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        columns: dict[str, list[str]] = {}
        for table, column in con.execute(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' order by table_name, ordinal_position"
        ).fetchall():
            if column != "run_id":
                columns.setdefault(table, []).append(column)
        return {
            t: con.execute(f"select {', '.join(c)} from marts.{t} order by all").fetchall()  # noqa: S608
            for t, c in columns.items()
        }


def duplicate_keys(data: Path) -> dict[str, int]:
    from workloads_etl.lake.datasets import DATASETS, EXTRACTED

    found = {}
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        for name in EXTRACTED:
            key = ", ".join(DATASETS[name].primary_key)
            row = con.execute(
                f"select count(*) from (select {key} from raw.{name} "  # noqa: S608
                f"group by all having count(*) > 1)"
            ).fetchone()
            found[name] = int(row[0]) if row else 0
    return found


def faults_met(data: Path) -> dict[str, int]:
    """What the client met and recovered from, counted in the run logs."""
    counts: Counter[str] = Counter()
    for log in (data / "logs").glob("run-*.log"):
        text = log.read_text(encoding="utf-8", errors="replace")
        counts.update(re.findall(r"attempt \d+/\d+ failed \((\w+)", text))
        counts["listing read again (rows skipped)"] += text.count("reading the list again")
    return dict(counts.most_common())


def leftovers(data: Path) -> list[str]:
    return [str(p) for d in ("raw", "lake") for p in (data / d).rglob("*.tmp")]


def dagster_state(home: Path) -> dict[str, Any]:
    script = (
        "import json, dagster as dg; i = dg.DagsterInstance.get();"
        "runs = i.get_runs();"
        "print(json.dumps({'statuses': [r.status.value for r in runs],"
        " 'slots': sorted(i.event_log_storage.get_concurrency_run_ids())}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    state: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kill-probability", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="workloads-etl-soak-"))
    print(f"soak in {root}: {args.runs} runs of {DAYS[0]}..{DAYS[-1]}", flush=True)

    with simulator(None) as url:
        clean = run(url, root / "clean", root / "clean-home", None)
    assert clean.code == 0, "the clean run failed"
    print(f"clean run: {clean.seconds:.1f} s", flush=True)

    attempts: list[tuple[int, Attempt]] = []
    started = time.monotonic()
    data, home = root / "soak", root / "soak-home"
    with simulator(FAULTS.format(seed=args.seed)) as url:
        for i in range(1, args.runs + 1):
            kill = rng.random() < args.kill_probability
            first = run(url, data, home, rng.uniform(0, clean.seconds * 1.2) if kill else None)
            attempts.append((i, first))
            line = f"run {i:2}: " + (
                f"killed after {first.killed_after:.1f} s"
                if first.killed_after is not None
                else f"exit {first.code} in {first.seconds:.1f} s"
            )
            if first.killed_after is not None or first.code != 0:
                again = run(url, data, home, None)
                attempts.append((i, again))
                line += f"; re-run: exit {again.code} in {again.seconds:.1f} s"
            print(line, flush=True)
    wall = time.monotonic() - started

    same = marts(data) == marts(root / "clean")
    dups = duplicate_keys(data)
    tmp = leftovers(data)
    state = dagster_state(home)
    open_runs = [
        s for s in state["statuses"] if s in ("STARTED", "STARTING", "QUEUED", "CANCELING")
    ]
    killed = sum(1 for _, a in attempts if a.killed_after is not None)
    failed = sum(1 for _, a in attempts if a.killed_after is None and a.code != 0)
    completed = [a.seconds for _, a in attempts if a.killed_after is None and a.code == 0]
    print()
    print(f"runs started: {len(attempts)} ({killed} killed with SIGKILL, {failed} failed)")
    print(f"completed runs: {len(completed)}, mean {sum(completed) / len(completed):.1f} s")
    print(f"soak wall time: {timedelta(seconds=round(wall))}")
    print(f"faults met and recovered from, per kind: {faults_met(data)}")
    print(f"marts equal to the clean run's: {same}")
    print(f"duplicate keys in raw.*: {sum(dups.values())} {dups}")
    print(f"temporary files left: {len(tmp)}")
    print(f"Dagster runs: {len(state['statuses'])}, open: {len(open_runs)}, ", end="")
    print(f"pool slots held: {len(state['slots'])}")
    ok = same and not any(dups.values()) and not tmp and not open_runs and not state["slots"]
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
