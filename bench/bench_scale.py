"""Scale: a nightly run at 1,000, 10,000 and 50,000 workloads a day, stage by stage, and the
nightly run on day 90 of history against the run on day 1.

    .venv/bin/python bench/bench_scale.py [--sizes 1000,10000,50000] [--latency-ms 50]
                                          [--history-days 90] [--history-size 200]
                                          [--json bench/results/scale.json]

Each size gets its own simulated control plane (``workloads-etl simulate`` in its own
process, sized with ``--clusters``/``--gpus`` so that the workloads alive on the measured day
are about the size asked, every request delayed by ``--latency-ms``) and a fresh data
directory. The measured run is the real command line, ``workloads-etl run --start D --end D``
(the nightly run of day D), in its own process, after the night before: day D - 1 runs first
in the same data directory, unmeasured and without latency (the data are the same), so the
measured run finds what every nightly run finds, the warehouse built and dbt's partial-parse
state kept (``--first-run`` measures a fresh directory's first run instead: a full dbt parse
and every table created). While it runs, the resident memory of its
whole process tree (the run, dbt, Dagster's helpers; not the simulator) is sampled every
0.1 s. Stage times come from Dagster's own step records:

- start: from the process's launch to the first step (imports, settings, Dagster instance,
  dbt manifest);
- lists: the snapshot, deleted-workloads and telemetry steps;
- metrics: the metrics step (fetch, raw landing, normalise, lake partition);
- load: the warehouse load; dbt: the dbt build with its tests; publish: the serving steps;
- end: from the last step to the process's exit.

The overhead ratio is the run's wall time over its extraction steps' (lists + metrics: the
part bound to the API).

The history ratio compares nightly runs of the same simulated days, so that the only
difference between them is the history behind them. The last ``--repeat`` days before NOW
are measured, each twice:

- day 1 of history: the day in a fresh data directory, the first day the pipeline ever ran
  (after one unmeasured run of the day that creates the warehouse and dbt's partial-parse
  state);
- day N of history: the day's nightly in a directory that holds the days before it, the
  first of them backfilled without latency (the data are the same), the later ones by the
  nightly runs before it. Every day-N run is a true nightly: a day never runs there twice,
  and each night's lists are fetched an hour after the last night's (the simulator's clock
  stands still; the models that fold states into rows per workload rebuild from every state
  when a day they already folded runs again, or when lists were fetched at the time of
  lists they hold, as a backfill's are).

The two runs of a day are measured one after the other, with latency, once the backfill is
done (a quiet machine is only needed for those last minutes); the ratio is the day-N runs'
total wall time over the day-1 runs'. (Measuring day 1 on the calendar's first day instead
would compare days of different sizes: the simulated clusters fill up over their history.)
Beside the ratio, the dbt nodes whose time grew most between the two kinds of run (from each
run's ``run_results.json``) show where a growing nightly cost would come from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent
EXE = str(BIN / "workloads-etl")
CLIENT = {"RUNAI_CLIENT_ID": "workloads-etl-demo", "RUNAI_CLIENT_SECRET": "demo-secret-change-me"}
SEED = 11
# Simulated control planes giving about N workloads alive on the measured day (the day
# before NOW): clusters, GPUs, workloads generated over `days` days of history.
# On a weekday about workloads / (days + 1) are alive, nearly all of them running.
SIZES: dict[int, dict[str, int]] = {
    1_000: {"clusters": 2, "gpus": 800, "workloads": 3_000, "days": 2},
    10_000: {"clusters": 2, "gpus": 800, "workloads": 30_000, "days": 2},
    50_000: {"clusters": 8, "gpus": 4_000, "workloads": 150_000, "days": 2},
}
# The measured day is the day before NOW, a Wednesday; 89 days earlier is a Friday.
NOW = datetime(2026, 11, 26, 6, tzinfo=UTC)
LIST_STEPS = ("runai__workload_snapshots", "runai__deleted_workloads", "runai__telemetry")
METRICS_STEP = "runai__workload_metrics"
LOAD_STEP = "raw_tables"
DBT_STEP = "warehouse_models"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def simulator(size: dict[str, int], now: datetime, latency_ms: float) -> Iterator[str]:
    port = _free_port()
    cmd = [EXE, "simulate", "--port", str(port), "--seed", str(SEED), "--now", now.isoformat()]
    for option in ("clusters", "gpus", "workloads", "days"):
        cmd += [f"--{option}", str(size[option])]
    if latency_ms:
        cmd += ["--faults", f"latency_ms={latency_ms:g}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None:
                raise SystemExit(f"the simulator exited ({proc.returncode}): {' '.join(cmd)}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


class TreeMemory:
    """Peak resident memory of a process and all its descendants, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for proc in [self.root, *self.root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass
class RunFigures:
    days: str
    wall: float
    peak_rss_mb: float
    stages: dict[str, float] = field(default_factory=dict)
    responses: int = 0
    samples: int = 0
    workloads: int = 0
    lake_files: int = 0
    # seconds of each dbt node (model, test) in the run's dbt build, from its run_results.json
    dbt_nodes: dict[str, float] = field(default_factory=dict)

    @property
    def extraction(self) -> float:
        return self.stages.get("lists", 0.0) + self.stages.get("metrics", 0.0)

    @property
    def overhead_ratio(self) -> float:
        return self.wall / self.extraction if self.extraction else float("nan")


def _environment(url: str, data: Path, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUNAI_", "WORKLOADS_ETL_", "DAGSTER_"))
    }
    return (
        env
        | CLIENT
        | {
            "RUNAI_BASE_URL": url,
            "WORKLOADS_ETL_DATA_DIR": str(data),
            "WORKLOADS_ETL_START_DATE": "2026-01-01",
            # The nodepool_capacity seed describes the default catalogue; a generated one reuses
            # its first two clusters' ids and pool names with other capacities.
            "WORKLOADS_ETL_DBT_VARS": json.dumps({"capacity_overrun_tolerance": 1000}),
            "DAGSTER_HOME": str(home),
        }
    )


def run(url: str, data: Path, home: Path, first: date, last: date) -> RunFigures:
    """``workloads-etl run`` over ``[first, last]`` in its own process, measured."""
    home.mkdir(parents=True, exist_ok=True)
    cmd = [EXE, "run", "--start", first.isoformat(), "--end", last.isoformat()]
    launched = time.time()
    proc = subprocess.Popen(
        cmd,
        env=_environment(url, data, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(proc.pid)
    _, err = proc.communicate()
    ended = time.time()
    peak = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    figures = RunFigures(f"{first}..{last}", ended - launched, peak / 2**20)
    _read_run(home, data, figures, launched, ended)
    return figures


def _read_run(home: Path, data: Path, figures: RunFigures, launched: float, ended: float) -> None:
    """Step times and counts of the last run from the Dagster instance in ``home``."""
    import dagster as dg

    from workloads_etl.defs.launch import dagster_instance

    with dagster_instance(home) as instance:
        run = instance.get_runs(limit=1)[0]
        stats = {s.step_key: s for s in instance.get_run_step_stats(run.run_id)}

        def span(*keys: str) -> float:
            return sum(
                (stats[k].end_time or 0) - (stats[k].start_time or 0) for k in keys if k in stats
            )

        starts = [s.start_time for s in stats.values() if s.start_time]
        ends = [s.end_time for s in stats.values() if s.end_time]
        figures.stages = {
            "start": min(starts) - launched if starts else 0.0,
            "lists": span(*LIST_STEPS),
            "metrics": span(METRICS_STEP),
            "load": span(LOAD_STEP),
            "dbt": span(DBT_STEP),
            "publish": span(*(k for k in stats if k.startswith("serving"))),
            "end": ended - max(ends) if ends else 0.0,
        }
        event = instance.get_latest_materialization_event(
            dg.AssetKey(["runai", "workload_metrics"])
        )
        metadata = (
            event.asset_materialization.metadata if event and event.asset_materialization else {}
        )
        figures.responses = int(getattr(metadata.get("responses"), "value", 0) or 0)
        figures.samples = int(getattr(metadata.get("dagster/row_count"), "value", 0) or 0)
        days = getattr(metadata.get("days"), "value", {}) or {}
        figures.workloads = sum(int(d.get("alive_workloads", 0)) for d in days.values())
        figures.lake_files = sum(int(d.get("files", 0)) for d in days.values())
    from workloads_etl.settings import DataPaths
    from workloads_etl.warehouse.dbt import target_dir

    results = target_dir(DataPaths(data)) / "run_results.json"
    if results.exists():
        figures.dbt_nodes = {
            r["unique_id"]: round(float(r.get("execution_time") or 0.0), 3)
            for r in json.loads(results.read_text()).get("results", [])
        }


def node_growth(one: list[RunFigures], many: list[RunFigures], top: int = 12) -> str:
    """The dbt nodes whose time grew most from the day-1 runs to the day-N runs (summed)."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    for runs, total in ((one, before), (many, after)):
        for f in runs:
            for node, seconds in f.dbt_nodes.items():
                total[node] = total.get(node, 0.0) + seconds
    growth = sorted(after.keys() | before.keys(), key=lambda k: before.get(k, 0) - after.get(k, 0))
    lines = ["| dbt node | day 1 s | day N s |", "|---|---|---|"]
    lines += [
        f"| {node.split('.', 2)[-1]} | {before.get(node, 0):.2f} | {after.get(node, 0):.2f} |"
        for node in growth[:top]
    ]
    lines.append(f"| all nodes | {sum(before.values()):.1f} | {sum(after.values()):.1f} |")
    return "\n".join(lines)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}" if seconds else "-"


def table(rows: dict[str, RunFigures], concurrency: int, latency_ms: float) -> str:
    limit = concurrency / (latency_ms / 1000) if latency_ms else float("nan")
    out = [
        "| run | workloads | samples | wall s | start | lists | metrics | load | dbt | publish "
        "| end | req/s (metrics) | of limit | samples/s | overhead ratio | peak RSS MB |",
        "|" + "---|" * 16,
    ]
    for name, f in rows.items():
        s = f.stages
        rps = f.responses / s["metrics"] if s.get("metrics") else 0.0
        out.append(
            f"| {name} | {f.workloads:,} | {f.samples:,} | {f.wall:.0f} | {s['start']:.1f} "
            f"| {s['lists']:.1f} | {s['metrics']:.1f} | {s['load']:.1f} | {s['dbt']:.1f} "
            f"| {s['publish']:.1f} | {s['end']:.1f} | {rps:,.0f} | {rps / limit:.1%} "
            f"| {_rate(f.samples, s['metrics'])} | {f.overhead_ratio:.2f} "
            f"| {f.peak_rss_mb:,.0f} |"
        )
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--history-days", type=int, default=90, help="0: skip the history ratio")
    parser.add_argument("--history-size", type=int, default=200, help="workloads a day")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="days measured at the end of the history (a day-1 and a day-N run each)",
    )
    parser.add_argument(
        "--first-run",
        action="store_true",
        help="measure each size's first run in a fresh data directory, not its nightly",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--work-dir", type=Path, help="default: a temporary directory")
    args = parser.parse_args()

    now = NOW
    day = (now - timedelta(days=1)).date()
    rows: dict[str, RunFigures] = {}
    # Removed once every run succeeded; a failed run's data directory and logs are kept.
    work = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.work_dir))
    print(f"work directory: {work}", flush=True)
    for n in (int(x) for x in args.sizes.split(",") if x):
        size = SIZES[n]
        data, home = work / f"d{n}", work / f"h{n}"
        label = f"{n:,}/day first run" if args.first_run else f"{n:,}/day nightly"
        if not args.first_run:
            night_before = day - timedelta(days=1)
            with simulator(size, now, 0) as url:
                run(url, data, home, night_before, night_before)
        with simulator(size, now, args.latency_ms) as url:
            rows[label] = f = run(url, data, home, day, day)
        print(table({label: f}, 16, args.latency_ms), flush=True)
    history: dict[str, Any] = {}
    if args.history_days:
        history = history_ratio(
            work, args.history_size, args.history_days, args.latency_ms, args.repeat
        )
        rows.update(history.pop("runs"))
    shutil.rmtree(work)
    print()
    print(
        f"machine: {platform.node()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print(
        f"latency {args.latency_ms:g} ms per request, concurrency 16 "
        f"(limit {16 / (args.latency_ms / 1000):,.0f} requests/s)"
    )
    print(table(rows, 16, args.latency_ms))
    if history:
        print(
            f"\nnightlies on the last {args.repeat} days of {args.history_days} of history / "
            f"on day 1 of history: {history['dayN_s']:.0f} s / {history['day1_s']:.0f} s = "
            f"{history['ratio']:.2f}"
        )
        print("\nthe dbt nodes that grew most:\n" + history["nodes"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"runs": {k: asdict(v) for k, v in rows.items()}, **history}, indent=2)
        )
    return 0


def history_ratio(work: Path, n: int, days: int, latency_ms: float, repeat: int) -> dict[str, Any]:
    """The nightlies of the last ``repeat`` days on day 1 of history and on days ``days -
    repeat + 1`` .. ``days``, each day's pair one after the other."""
    size = {"clusters": 2, "gpus": 800, "workloads": n * (days + 2), "days": days + 1}
    now = NOW
    last = (now - timedelta(days=1)).date()
    first = last - timedelta(days=days - 1)
    measured = [last - timedelta(days=repeat - 1 - i) for i in range(repeat)]
    data, home = work / "history", work / "history-home"
    with simulator(size, now, 0) as url:
        started = time.monotonic()
        run(url, data, home, first, measured[0] - timedelta(days=1))
        print(f"backfill of {days - repeat} days: {time.monotonic() - started:.0f} s", flush=True)
    runs: dict[str, RunFigures] = {}
    one: list[RunFigures] = []
    many: list[RunFigures] = []
    for i, day in enumerate(measured):
        # each night's lists are fetched later than the last night's (the simulator's clock
        # is frozen: at one time, every night's lists would be the same fetch)
        with simulator(size, now + timedelta(hours=i + 1), latency_ms) as url:
            fresh, fresh_home = work / f"history-day1-{day}", work / f"history-day1-{day}-home"
            run(url, fresh, fresh_home, day, day)  # a fresh directory's first run: parse, create
            one.append(run(url, fresh, fresh_home, day, day))
            many.append(run(url, data, home, day, day))
            nth = days - (last - day).days
            runs[f"{n:,}/day, {day}, day 1 of history"] = one[-1]
            runs[f"{n:,}/day, {day}, day {nth} of history"] = many[-1]
            print(table({"day 1": one[-1], f"day {nth}": many[-1]}, 16, latency_ms), flush=True)
    total_one, total_many = sum(f.wall for f in one), sum(f.wall for f in many)
    nodes = node_growth(one, many)
    print("\n" + nodes, flush=True)
    return {
        "runs": runs,
        "nodes": nodes,
        "ratio": total_many / total_one,
        "day1_s": total_one,
        "dayN_s": total_many,
    }


if __name__ == "__main__":
    sys.exit(main())
