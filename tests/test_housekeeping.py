"""``workloads-etl gc``: superseded raw runs, stale temporary files and lake files no manifest
names are removed; what rebuilds a partition never is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from workloads_etl.cli import main
from workloads_etl.lake.housekeeping import STALE_SECONDS, collect_garbage
from workloads_etl.lake.normalise.partition import normalise_partition
from workloads_etl.lake.parquet import partition_path, read_manifest, read_partition
from workloads_etl.lake.raw import RawLanding
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths

DAY, UNNORMALISED_DAY = date(2024, 12, 20), date(2024, 12, 22)
NOW = time.time()
DAYS = 86400
WID = str(uuid.UUID(int=7))


def metrics_response(day: date, value: str) -> RawResponse:
    stamp = f"{day.isoformat()}T01:00:00Z"
    body = {
        "measurements": [
            {"type": "GPU_ALLOCATION", "values": [{"value": value, "timestamp": stamp}]}
        ]
    }
    return RawResponse(
        "get_workload_metrics",
        "GET",
        f"/api/v1/workloads/{WID}/metrics",
        {
            "start": f"{day.isoformat()}T00:00:00Z",
            "end": f"{date.fromordinal(day.toordinal() + 1).isoformat()}T00:00:00Z",
            "numberOfSamples": "24",
        },
        {"workloadId": WID},
        200,
        datetime(2024, 12, 23, tzinfo=UTC),
        json.dumps(body),
    )


def land(paths: DataPaths, day: date, run_id: str, age_days: float) -> Path:
    landing = RawLanding(paths.raw)
    with landing.writer("workload_metrics", day, run_id) as w:
        w.record(metrics_response(day, "1"))
    path = landing.run_path("workload_metrics", day, run_id)
    os.utime(path, (NOW - age_days * DAYS, NOW - age_days * DAYS))
    return path


def age(path: Path, seconds: float) -> Path:
    os.utime(path, (NOW - seconds, NOW - seconds))
    return path


_KILLED_RAW_WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    from workloads_etl.lake.raw import RawLanding
    with RawLanding(sys.argv[1]).writer("workload_metrics", date(2024, 12, 20), "killed"):
        print("READY", flush=True)
        time.sleep(60)
    """
)


def killed_writer_temp_file(paths: DataPaths) -> Path:
    """The temporary file of a raw writer killed mid-run."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RAW_WRITER, str(paths.raw)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    (tmp,) = (paths.raw.directory / "workload_metrics" / "usage_date=2024-12-20").glob(".*.tmp")
    assert tmp.name == f".run=killed.jsonl.gz.{proc.pid}.tmp"
    return tmp


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """A data directory with garbage of every kind, and what must stay."""
    paths = DataPaths(tmp_path).ensure()
    files = {
        "superseded": land(paths, DAY, "run-old", age_days=40),
        "named": land(paths, DAY, "run-named", age_days=400),
    }
    normalise_partition(paths, "workload_metrics", DAY, "run-named")
    files["recent"] = land(paths, DAY, "run-recent", age_days=1)  # not normalised, recent
    files["unnormalised"] = land(paths, UNNORMALISED_DAY, "run-only", age_days=400)
    files["killed_tmp"] = killed_writer_temp_file(paths)
    directory = partition_path(paths.lake, "workload_metrics", DAY)
    live = directory / f".part.{os.getpid()}.tmp"  # a writer at work (this process)
    live.write_bytes(b"x" * 100)
    files["live_tmp"] = live
    old_live = directory / f"._manifest.json.{os.getpid()}.tmp"
    old_live.write_bytes(b"y" * 10)
    files["old_tmp"] = age(old_live, 2 * STALE_SECONDS)
    orphan = directory / "part-0123456789abcdef.parquet"  # a crash before the commit
    orphan.write_bytes(b"z" * 1000)
    files["orphan"] = age(orphan, 2 * STALE_SECONDS)
    fresh = directory / "part-fedcba9876543210.parquet"  # maybe a writer between renames
    fresh.write_bytes(b"w" * 1000)
    files["fresh_orphan"] = fresh
    files["manifest"] = directory / "_manifest.json"
    return files


GARBAGE = {
    "raw_runs": ["superseded"],
    "temp_files": ["killed_tmp", "old_tmp"],
    "lake_files": ["orphan"],
}
REMOVED = {name for names in GARBAGE.values() for name in names}


def test_gc_removes_garbage_and_keeps_what_rebuilds(tmp_path: Path, data: dict[str, Path]) -> None:
    paths = DataPaths(tmp_path)
    before = read_partition(paths.lake, "workload_metrics", DAY)
    sizes = {name: path.stat().st_size for name, path in data.items()}
    dry = collect_garbage(paths, 30, dry_run=True, now=NOW)
    assert all(p.exists() for p in data.values())  # a dry run removes nothing
    report = collect_garbage(paths, 30, now=NOW)
    for result in (dry, report):
        for category, names in GARBAGE.items():
            freed = getattr(result, category)
            assert freed.paths == [data[n] for n in names], category
            assert freed.bytes == sum(sizes[n] for n in names), category
        assert (result.files, result.bytes) == (4, sum(sizes[n] for n in REMOVED))
        assert (result.kept_named_runs, result.kept_unpartitioned_runs) == (1, 1)
    for name, path in data.items():
        assert path.exists() == (name not in REMOVED), name
    # the partition reads as before, and rebuilds from the run its manifest names
    assert read_partition(paths.lake, "workload_metrics", DAY).equals(before)
    manifest = read_manifest(paths.lake, "workload_metrics", DAY)
    assert manifest is not None
    normalise_partition(paths, "workload_metrics", DAY, manifest.run_id)
    assert read_partition(paths.lake, "workload_metrics", DAY).equals(before)
    assert collect_garbage(paths, 30, now=NOW).files == 0  # nothing left to take


@pytest.mark.parametrize("keep", [0, 1, 30, 100_000])
def test_the_run_a_manifest_names_survives_any_keep(
    tmp_path: Path, data: dict[str, Path], keep: int
) -> None:
    report = collect_garbage(DataPaths(tmp_path), keep, now=NOW)
    assert data["named"].exists()
    assert data["unnormalised"].exists()  # the only copy of its day
    expected = {0: ["recent", "superseded"], 1: ["superseded"], 30: ["superseded"]}.get(keep, [])
    assert sorted(report.raw_runs.paths) == sorted(data[n] for n in expected)


def test_gc_command(tmp_path: Path, data: dict[str, Path]) -> None:
    runner = CliRunner()
    dry = runner.invoke(main, ["--data-dir", str(tmp_path), "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would be removed (dry run)" in dry.output
    assert data["superseded"].exists()
    result = runner.invoke(main, ["--data-dir", str(tmp_path), "gc", "--keep-raw-days", "30"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "superseded raw runs" in lines
    assert " 1 " in lines["superseded raw runs"]
    assert " 2 " in lines["stale temporary files"]
    assert " 1 " in lines["lake files no manifest names"]
    kept = "kept: 1 raw runs that partitions were built from, 1 of days not in the lake"
    assert kept in result.output
    assert not data["superseded"].exists()
    assert data["named"].exists()


def test_gc_refuses_while_a_run_writes_the_data_directory(tmp_path: Path) -> None:
    from workloads_etl.writer import WriterBusyError, WriterLock

    paths = DataPaths(tmp_path).ensure()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from workloads_etl.writer import WriterLock;"
            "lock = WriterLock(Path(sys.argv[1]), 'run-1', '2026-11-01..2026-11-02', 0);"
            "lock.__enter__(); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterBusyError) as err:
            collect_garbage(paths, 0)
        assert f"being written by run run-1 (PID {holder.pid}, days 2026-11-01..2026-11-02" in str(
            err.value
        )
        result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "gc"])
        assert result.exit_code == 1 and "being written by run run-1" in result.output
    finally:
        holder.kill()
        holder.wait()
    with WriterLock(paths.root, "run-2", "-", 0):  # released with its process
        pass
