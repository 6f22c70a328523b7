from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from workloads_etl.lake.normalise.partition import normalise_partition
from workloads_etl.lake.parquet import (
    list_partitions,
    partition_path,
    prepare_table,
    read_manifest,
    read_partition,
    write_partition,
)
from workloads_etl.lake.raw import RawLanding
from workloads_etl.lake.schemas import SCHEMA_VERSION, WORKLOAD_METRICS
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths

DAY = date(2024, 12, 20)
AT = datetime(2024, 12, 20, 23, 0, tzinfo=UTC)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def workloads_page(n: int, bad: int = 0, gpu_memory: str = "1Gi") -> RawResponse:
    items: list[object] = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "name": f"w{i}",
            "phase": "Running",
            "createdAt": "2024-12-20T01:00:00Z",
            "allocatedResources": {"gpuMemory": gpu_memory},
        }
        for i in range(n)
    ]
    items += [{"id": "broken", "name": "x"}] * bad
    return RawResponse(
        "get_workloads",
        "GET",
        "/api/v1/workloads",
        {"deleted": "false"},
        {},
        200,
        AT,
        json.dumps({"workloads": items, "next": n}),
        {"page": 1},
    )


def metric_table(n: int) -> pa.Table:
    return pa.table(
        {
            "usage_date": pa.array([DAY] * n, pa.date32()),
            "workload_id": pa.array([f"w{i % 7}" for i in range(n)]),
            "metric_type": pa.array(["GPU_UTILIZATION"] * n),
            "labels_json": pa.array([None] * n, pa.string()),
            "ts": pa.array(
                [datetime(2024, 12, 20, tzinfo=UTC).timestamp() * 1e6 + i for i in range(n)],
                pa.int64(),
            ).cast(pa.timestamp("us", tz="UTC")),
            "value": pa.array([float(i % 100) for i in range(n)]),
            "step_seconds": pa.array([60] * n, pa.int32()),
            "run_id": pa.array(["r"] * n),
        },
        schema=WORKLOAD_METRICS,
    )


def test_raw_landing_roundtrip_and_runs(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    resps = [workloads_page(2), workloads_page(1)]
    with landing.writer("workload_snapshots", DAY, "run-a") as w:
        for r in resps:
            w.record(r)
    time.sleep(0.01)
    with landing.writer("workload_snapshots", DAY, "run-b") as w:
        w.record(resps[0])
    path = tmp_path / "workload_snapshots" / "snapshot_date=2024-12-20" / "run=run-a.jsonl.gz"
    assert path.is_file()
    assert landing.runs("workload_snapshots", DAY) == ["run-a", "run-b"]
    assert list(landing.read("workload_snapshots", DAY, "run-a")) == resps
    assert list(landing.read("workload_snapshots", DAY)) == [resps[0]]  # latest run
    assert landing.runs("workload_snapshots", date(2024, 1, 1)) == []


def test_raw_writer_aborts_on_exception(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)

    def fail_midway() -> None:
        with landing.writer("telemetry", DAY, "r1") as w:
            w.record(workloads_page(1))
            raise RuntimeError("fetch failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert landing.runs("telemetry", DAY) == []
    assert list((tmp_path / "telemetry").rglob("*")) == [
        tmp_path / "telemetry" / "snapshot_date=2024-12-20"
    ]


def test_raw_rejects_bad_names(tmp_path: Path) -> None:
    landing = RawLanding(tmp_path)
    with pytest.raises(ValueError, match="run id"):
        landing.writer("telemetry", DAY, "../evil")
    with pytest.raises(ValueError, match="unknown raw dataset"):
        landing.writer("nope", DAY, "r")


def test_write_partition_layout_manifest_and_determinism(tmp_path: Path) -> None:
    t = metric_table(1000)
    shuffled = t.take(pa.array(list(range(999, -1, -1))))
    m1 = write_partition(tmp_path, "workload_metrics", t, DAY, "r")
    f = partition_path(tmp_path, "workload_metrics", DAY) / "data.parquet"
    assert f.parent == tmp_path / "workload_metrics" / "usage_date=2024-12-20"
    h1 = sha(f)
    m2 = write_partition(tmp_path, "workload_metrics", shuffled, DAY, "r")
    assert sha(f) == h1 == m1.sha256 == m2.sha256
    man = read_manifest(tmp_path, "workload_metrics", DAY)
    assert man is not None
    assert (man.rows, man.schema_version, man.run_id) == (1000, SCHEMA_VERSION, "r")
    assert "usage_date" not in pq.read_schema(f).names  # Hive: partition value in the path
    assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
    back = read_partition(tmp_path, "workload_metrics", DAY)
    assert back.equals(t.sort_by([("workload_id", "ascending"), ("ts", "ascending")]))
    assert list_partitions(tmp_path, "workload_metrics") == [{"usage_date": "2024-12-20"}]


def test_lake_readable_by_duckdb_and_pandas_ignoring_temp_files(tmp_path: Path) -> None:
    write_partition(tmp_path, "workload_metrics", metric_table(10), DAY, "r")
    write_partition(
        tmp_path,
        "workload_metrics",
        metric_table(5).set_column(
            0, "usage_date", pa.array([date(2024, 12, 21)] * 5, pa.date32())
        ),
        date(2024, 12, 21),
        "r",
    )
    # a leftover temp file from a crashed writer must not be picked up
    (partition_path(tmp_path, "workload_metrics", DAY) / ".data.parquet.123.tmp").write_bytes(b"x")
    con = duckdb.connect()
    n, days = con.execute(
        "SELECT count(*), count(DISTINCT usage_date) FROM read_parquet(?, hive_partitioning=true)",
        [f"{tmp_path}/workload_metrics/**/*.parquet"],
    ).fetchall()[0]
    assert (n, days) == (15, 2)
    df = pd.read_parquet(tmp_path / "workload_metrics")
    assert len(df) == 15


def test_write_rejects_rows_of_another_day(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="usage_date"):
        write_partition(tmp_path, "workload_metrics", metric_table(3), date(2024, 1, 1), "r")


_KILL_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import date
    import pyarrow as pa
    from workloads_etl.lake import parquet
    real_replace = os.replace
    def hang(src, dst):
        print("READY", flush=True)
        time.sleep(60)
    os.replace = hang
    n = int(sys.argv[2])
    t = pa.table({"usage_date": pa.array([date(2024, 12, 20)] * n, pa.date32()),
        "workload_id": pa.array(["new"] * n), "metric_type": pa.array(["X"] * n),
        "labels_json": pa.array([None] * n, pa.string()),
        "ts": pa.array(range(n), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "value": pa.array([1.0] * n), "step_seconds": pa.array([60] * n, pa.int32()),
        "run_id": pa.array(["killed"] * n)})
    parquet.write_partition(sys.argv[1], "workload_metrics", t, date(2024, 12, 20), "killed")
    """
)


def test_killed_writer_leaves_previous_partition_intact(tmp_path: Path) -> None:
    write_partition(tmp_path, "workload_metrics", metric_table(100), DAY, "old")
    f = partition_path(tmp_path, "workload_metrics", DAY) / "data.parquet"
    before = sha(f)
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_WRITER, str(tmp_path), "200000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"  # temp file fully written, not renamed
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert sha(f) == before
    assert read_partition(tmp_path, "workload_metrics", DAY).num_rows == 100
    man = read_manifest(tmp_path, "workload_metrics", DAY)
    assert man is not None
    assert man.run_id == "old"
    n = (
        duckdb.connect()
        .execute(
            "SELECT count(*) FROM read_parquet(?)", [f"{tmp_path}/workload_metrics/**/*.parquet"]
        )
        .fetchall()[0][0]
    )
    assert n == 100


def test_renormalise_from_raw_is_identical(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    with RawLanding(paths.raw).writer("workload_snapshots", DAY, "run-1") as w:
        w.record(workloads_page(50, bad=2))
        w.record(workloads_page(3))  # page 2 repeats three workloads (identical copies)
        # a changed copy of workload 1, received last: it is the row, with a field issue
        w.record(workloads_page(1, gpu_memory="12 gigs"))
    res = normalise_partition(paths, "workload_snapshots", DAY)
    assert (res.records, res.rows, res.rejected, res.quarantined) == (56, 50, 3, 4)
    assert (res.duplicates_dropped, res.field_issues, res.out_of_window) == (3, 1, 0)
    assert res.rows + res.rejected + res.duplicates_dropped == res.records
    data = partition_path(paths.lake, "workload_snapshots", DAY) / "data.parquet"
    qfile = partition_path(paths.lake, "quarantine", DAY, {"dataset": "workload_snapshots"}) / (
        "data.parquet"
    )
    hashes = (sha(data), sha(qfile))
    first = read_partition(paths.lake, "workload_snapshots", DAY)
    shutil.rmtree(paths.lake)
    res2 = normalise_partition(paths, "workload_snapshots", DAY, "run-1")
    assert (sha(data), sha(qfile)) == hashes
    assert read_partition(paths.lake, "workload_snapshots", DAY).equals(first)
    assert res2.manifest is not None
    assert res2.manifest.sha256 == hashes[0]
    q = read_partition(paths.lake, "quarantine", DAY, {"dataset": "workload_snapshots"})
    assert sorted(q["reason"].to_pylist()) == [
        "allocated_gpu_memory_bytes: unparsable quantity '12 gigs' (row kept, field set to null)",
        "duplicate workload id 00000000-0000-0000-0000-000000000001 in one snapshot "
        "(different content; the copy with the latest updatedAt kept)",
        "id is not a uuid",
        "id is not a uuid",
    ]
    assert first.filter(pc.equal(first["name"], "w0"))[
        "allocated_gpu_memory_bytes"
    ].to_pylist() == [None]
    assert pc.sum(first["allocated_gpu_memory_bytes"]).as_py() == 49 * 2**30


def test_partition_keeps_rows_with_bad_fields(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    with RawLanding(paths.raw).writer("workload_snapshots", DAY, "run-1") as w:
        w.record(workloads_page(4, gpu_memory="12 gigs"))
        w.record(workloads_page(2, gpu_memory="12 gigs"))  # identical repeats
    res = normalise_partition(paths, "workload_snapshots", DAY)
    assert (res.records, res.rows, res.rejected, res.quarantined) == (6, 4, 0, 4)
    assert (res.duplicates_dropped, res.field_issues) == (2, 4)
    rows = read_partition(paths.lake, "workload_snapshots", DAY)
    assert rows["allocated_gpu_memory_bytes"].to_pylist() == [None] * 4
    assert rows["name"].to_pylist() == ["w0", "w1", "w2", "w3"]
    q = read_partition(paths.lake, "quarantine", DAY, {"dataset": "workload_snapshots"})
    reason = "allocated_gpu_memory_bytes: unparsable quantity '12 gigs'"
    assert q["reason"].to_pylist() == [f"{reason} (row kept, field set to null)"] * 4


def test_prepare_table_sorts_like_arrow_with_nulls_last_and_keeps_sorted_input() -> None:
    wids = ["b", "a", "c"]
    rows = [
        {
            "usage_date": DAY,
            "workload_id": wids[i % 3],
            "metric_type": ["X", "A"][i % 2],
            "labels_json": [None, '{"gpu":"1"}', '{"gpu":"0"}'][i % 3 if i % 5 else 0],
            "ts": datetime(2024, 12, 20, (37 * i) % 24, i % 60, tzinfo=UTC),
            "value": float(i),
            "step_seconds": 60,
            "run_id": "r",
        }
        for i in range(60)
    ]
    table = pa.Table.from_pylist(rows, schema=WORKLOAD_METRICS)
    keys = ["workload_id", "metric_type", "labels_json", "ts"]
    expected = table.sort_by([(k, "ascending") for k in keys]).drop_columns(["usage_date"])
    got = prepare_table("workload_metrics", table, DAY)
    assert got.to_pylist() == expected.to_pylist()
    # already in key order: rows come back unchanged (stable, no reordering of ties)
    again = prepare_table(
        "workload_metrics",
        got.append_column("usage_date", pa.repeat(pa.scalar(DAY, pa.date32()), got.num_rows)),
        DAY,
    )
    assert again.to_pylist() == got.to_pylist()
