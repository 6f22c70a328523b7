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

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.housekeeping import STALE_SECONDS, collect_garbage
from workloads_etl.lake.normalise.partition import normalise_partition
from workloads_etl.lake.parquet import (
    PartitionNotFoundError,
    PartitionWriter,
    SegmentMissingError,
    commit_segments,
    file_path,
    lake_files,
    list_partitions,
    list_segments,
    partition_path,
    prepare_table,
    quarantine_path,
    read_manifest,
    read_partition,
    verify_files,
    write_partition,
)
from workloads_etl.lake.quality import duplicate_keys
from workloads_etl.lake.raw import RawLanding
from workloads_etl.lake.schemas import SCHEMA_VERSION, WORKLOAD_METRICS
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths

DAY = date(2024, 12, 20)
AT = datetime(2024, 12, 20, 23, 0, tzinfo=UTC)
V1_FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1"


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
            "step_seconds": pa.array([60] * n, pa.int64()),
            "run_id": pa.array(["r"] * n),
            "fetched_at": pa.array([AT] * n, pa.timestamp("us", tz="UTC")),
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


def data_file(lake: Path, dataset: str, day: date = DAY) -> Path:
    """The one data file the partition's manifest names."""
    manifest = read_manifest(lake, dataset, day)
    assert manifest is not None
    (f,) = manifest.data_files
    return file_path(lake, f)


def test_write_partition_layout_manifest_and_determinism(tmp_path: Path) -> None:
    t = metric_table(1000)
    shuffled = t.take(pa.array(list(range(999, -1, -1))))
    m1 = write_partition(tmp_path, "workload_metrics", t, DAY, "r")
    f = data_file(tmp_path, "workload_metrics")
    assert f.parent == tmp_path / "workload_metrics" / "usage_date=2024-12-20"
    h1 = sha(f)
    assert f.name == f"part-{h1[:16]}.parquet"  # content-addressed
    m2 = write_partition(tmp_path, "workload_metrics", shuffled, DAY, "r")
    assert data_file(tmp_path, "workload_metrics") == f
    assert sha(f) == h1 == m1.data_files[0].sha256 == m2.data_files[0].sha256
    assert sorted(p.name for p in f.parent.iterdir()) == ["_manifest.json", f.name]
    man = read_manifest(tmp_path, "workload_metrics", DAY)
    assert man is not None
    assert (man.rows, man.schema_version, man.run_id, man.format) == (1000, SCHEMA_VERSION, "r", 2)
    doc = json.loads((f.parent / "_manifest.json").read_text())
    assert doc["files"] == [
        {
            "path": "workload_metrics/usage_date=2024-12-20/" + f.name,
            "role": "data",
            "rows": 1000,
            "bytes": f.stat().st_size,
            "sha256": h1,
        }
    ]
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
    (partition_path(tmp_path, "workload_metrics", DAY) / ".part.123.tmp").write_bytes(b"x")
    con = duckdb.connect()
    n, days = con.execute(
        "SELECT count(*), count(DISTINCT usage_date) FROM read_parquet(?, hive_partitioning=true)",
        [f"{tmp_path}/workload_metrics/**/*.parquet"],
    ).fetchall()[0]
    assert (n, days) == (15, 2)
    named = [str(p) for p in lake_files(tmp_path, "workload_metrics")]
    assert len(named) == 2
    n = con.execute(
        "SELECT count(*) FROM read_parquet(?, hive_partitioning=true)", [named]
    ).fetchall()[0][0]
    assert n == 15
    df = pd.read_parquet(tmp_path / "workload_metrics")
    assert len(df) == 15


def test_one_commit_names_data_and_quarantine_files(tmp_path: Path) -> None:
    quarantine = pa.table(
        {
            "dataset": ["workload_metrics"] * 2,
            "quarantine_date": pa.array([DAY] * 2, pa.date32()),
            "reason": ["b", "a"],
            "raw_record": ["{}", "{}"],
            "run_id": ["r", "r"],
            "quarantined_at": pa.array([AT] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    m1 = write_partition(
        tmp_path, "workload_metrics", metric_table(10), DAY, "r1", quarantine=quarantine
    )
    assert [f.role for f in m1.files] == ["data", "quarantine"]
    (q1,) = m1.quarantine_files
    assert q1.path.startswith(
        "quarantine/dataset=workload_metrics/quarantine_date=2024-12-20/part-"
    )
    assert (m1.rows, m1.quarantined) == (10, 2)
    q = read_partition(tmp_path, "quarantine", DAY, {"dataset": "workload_metrics"})
    assert q["reason"].to_pylist() == ["a", "b"]
    assert list_partitions(tmp_path, "quarantine") == [
        {"dataset": "workload_metrics", "quarantine_date": "2024-12-20"}
    ]
    # the next commit has other rows and no quarantine: the previous files are gone
    m2 = write_partition(tmp_path, "workload_metrics", metric_table(4), DAY, "r2")
    assert [f.role for f in m2.files] == ["data"]
    lake_parquet = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert lake_parquet == [m2.files[0].path]
    assert (
        read_partition(tmp_path, "quarantine", DAY, {"dataset": "workload_metrics"}).num_rows == 0
    )
    assert list_partitions(tmp_path, "quarantine") == []
    verify_files(tmp_path, m2)


def test_readers_trust_only_the_manifest(tmp_path: Path) -> None:
    write_partition(tmp_path, "workload_metrics", metric_table(10), DAY, "r")
    directory = partition_path(tmp_path, "workload_metrics", DAY)
    # a file of no commit (a crash between writing and committing) is not read
    write_partition(tmp_path / "other", "workload_metrics", metric_table(3), DAY, "x")
    stray = data_file(tmp_path / "other", "workload_metrics")
    shutil.copy(stray, directory / stray.name)
    assert read_partition(tmp_path, "workload_metrics", DAY).num_rows == 10
    assert [Path(p).name for p in lake_files(tmp_path, "workload_metrics")] != [stray.name]
    assert duplicate_keys(tmp_path, "workload_metrics", DAY) == 0
    # a manifest is what makes a partition: without one there is none
    (directory / "_manifest.json").unlink()
    assert list_partitions(tmp_path, "workload_metrics") == []
    with pytest.raises(PartitionNotFoundError, match=r"_manifest\.json is missing"):
        read_partition(tmp_path, "workload_metrics", DAY)


def test_format_1_manifests_are_still_read(tmp_path: Path) -> None:
    """A lake of format-1 manifests (data.parquet, the quarantine with its own manifest):
    read as one commit, and replaced whole by the next commit."""
    shutil.copytree(V1_FIXTURE / "lake", tmp_path / "lake")
    lake = tmp_path / "lake"
    m = read_manifest(lake, "workload_metrics", DAY)
    assert m is not None
    assert (m.format, m.schema_version, m.run_id, m.rows, m.quarantined) == (
        1,
        1,
        "v1-fixture",
        24,
        1,
    )
    assert [f.path for f in m.files] == [
        "workload_metrics/usage_date=2024-12-20/data.parquet",
        "quarantine/dataset=workload_metrics/quarantine_date=2024-12-20/data.parquet",
    ]
    verify_files(lake, m)
    rows = read_partition(lake, "workload_metrics", DAY)
    assert rows.schema == DATASETS["workload_metrics"].schema
    assert rows.num_rows == 24
    assert rows["fetched_at"].null_count == 24  # not in version 1
    q = read_partition(lake, "quarantine", DAY, {"dataset": "workload_metrics"})
    assert q["reason"].to_pylist() == [
        "value is not numeric (workload 00000000-0000-0000-0000-000000000001, GPU_UTILIZATION)"
    ]
    assert list_partitions(lake, "workload_metrics") == [
        {"usage_date": "2024-12-20"},
        {"usage_date": "2024-12-21"},
    ]
    # the next commit replaces the data file, the quarantine file and its manifest
    write_partition(lake, "workload_metrics", metric_table(3), DAY, "r2")
    q_dir = lake / "quarantine" / "dataset=workload_metrics" / "quarantine_date=2024-12-20"
    assert list(q_dir.iterdir()) == []
    names = sorted(p.name for p in partition_path(lake, "workload_metrics", DAY).iterdir())
    assert names == ["_manifest.json", data_file(lake, "workload_metrics").name]


def test_write_rejects_rows_of_another_day(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="usage_date"):
        write_partition(tmp_path, "workload_metrics", metric_table(3), date(2024, 1, 1), "r")


_KILL_WRITER = textwrap.dedent(
    """
    import os, pathlib, sys, time
    from datetime import date, datetime, timezone
    import pyarrow as pa
    from workloads_etl.lake import parquet
    stop, calls = sys.argv[2], {"replace": 0}
    real_replace = os.replace
    def hang():
        print("READY", flush=True)
        time.sleep(60)
    def replace(src, dst):
        calls["replace"] += 1
        if stop == f"replace{calls['replace']}":
            hang()
        real_replace(src, dst)
    os.replace = replace
    if stop == "unlink":  # the commit is done, the previous files are not yet deleted
        pathlib.Path.unlink = lambda self, missing_ok=False: hang()
    n, day = 500, date(2024, 12, 20)
    at = datetime(2024, 12, 20, 23, tzinfo=timezone.utc)
    ts = pa.timestamp("us", tz="UTC")
    t = pa.table({"usage_date": pa.array([day] * n, pa.date32()),
        "workload_id": pa.array(["new"] * n), "metric_type": pa.array(["X"] * n),
        "labels_json": pa.array([None] * n, pa.string()),
        "ts": pa.array(range(n), pa.int64()).cast(ts),
        "value": pa.array([1.0] * n), "step_seconds": pa.array([60] * n, pa.int64()),
        "run_id": pa.array(["killed"] * n), "fetched_at": pa.array([at] * n, ts)})
    q = pa.table({"dataset": ["workload_metrics"], "quarantine_date": pa.array([day], pa.date32()),
        "reason": ["new"], "raw_record": ["{}"], "run_id": ["killed"],
        "quarantined_at": pa.array([at], ts)})
    parquet.write_partition(sys.argv[1], "workload_metrics", t, day, "killed", quarantine=q)
    """
)
OLD_QUARANTINE = pa.table(
    {
        "dataset": ["workload_metrics"],
        "quarantine_date": pa.array([DAY], pa.date32()),
        "reason": ["old"],
        "raw_record": ["{}"],
        "run_id": ["old"],
        "quarantined_at": pa.array([AT], pa.timestamp("us", tz="UTC")),
    }
)


def kill_writer_at(lake: Path, stop: str) -> None:
    """Run a writer of the partition in another process and SIGKILL it at ``stop``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_WRITER, str(lake), stop], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("stop", "committed"),
    [
        ("replace1", "old"),  # the data file is written, not yet renamed
        ("replace2", "old"),  # the data file is in place, the quarantine file is not
        ("replace3", "old"),  # both files in place, the manifest not yet renamed
        ("unlink", "killed"),  # committed; the previous commit's files not yet deleted
    ],
)
def test_a_writer_killed_anywhere_leaves_one_whole_commit(
    tmp_path: Path, stop: str, committed: str
) -> None:
    paths = DataPaths(tmp_path)
    lake = paths.lake.directory
    old = write_partition(
        lake, "workload_metrics", metric_table(100), DAY, "old", quarantine=OLD_QUARANTINE
    )
    kill_writer_at(lake, stop)
    man = read_manifest(lake, "workload_metrics", DAY)
    assert man is not None
    assert man.run_id == committed
    verify_files(lake, man)  # every file it names is there, whole
    rows = read_partition(lake, "workload_metrics", DAY)
    q = read_partition(lake, "quarantine", DAY, {"dataset": "workload_metrics"})
    if committed == "old":
        assert man == old
        assert (rows.num_rows, q["reason"].to_pylist()) == (100, ["old"])
    else:
        assert set(rows["run_id"].to_pylist()) == {"killed"}
        assert (rows.num_rows, q["reason"].to_pylist()) == (500, ["new"])
    named = [str(p) for p in lake_files(lake, "workload_metrics")]
    n = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [named]).fetchall()[0][0]
    assert n == rows.num_rows
    # gc takes the killed writer's leftovers, and only those
    leftovers = (
        {p for p in lake.rglob("*") if p.is_file()}
        - {file_path(lake, f) for f in man.files}
        - {partition_path(lake, "workload_metrics", DAY) / "_manifest.json"}
    )
    assert leftovers  # a temp file, files of no commit or of the previous one
    report = collect_garbage(paths, dry_run=False, now=time.time() + 2 * STALE_SECONDS)
    assert set(report.temp_files.paths) | set(report.lake_files.paths) == leftovers
    assert read_manifest(lake, "workload_metrics", DAY) == man
    assert read_partition(lake, "workload_metrics", DAY).equals(rows)
    glob = f"{lake}/workload_metrics/**/*.parquet"
    n = duckdb.connect().execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchall()[0][0]
    assert n == rows.num_rows  # a glob sees exactly the commit again


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
    assert res.manifest is not None
    data, qfile = (file_path(paths.lake, f) for f in res.manifest.files)
    assert qfile.parent == quarantine_path(paths.lake, "workload_snapshots", DAY)
    hashes = (sha(data), sha(qfile))
    first = read_partition(paths.lake, "workload_snapshots", DAY)
    shutil.rmtree(paths.lake.directory)
    res2 = normalise_partition(paths, "workload_snapshots", DAY, "run-1")
    assert (sha(data), sha(qfile)) == hashes
    assert read_partition(paths.lake, "workload_snapshots", DAY).equals(first)
    assert res2.manifest is not None
    assert [f.sha256 for f in res2.manifest.files] == list(hashes)
    assert res2.manifest.files == res.manifest.files
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


# --- a day written cluster by cluster ------------------------------------------------------


def cluster_metrics(cluster: int, n: int) -> pa.Table:
    """``n`` samples of workloads of one cluster (workload ids of their own)."""
    table = metric_table(n)
    ids = pa.array([f"c{cluster}-w{i % 5}" for i in range(n)])
    return table.set_column(table.schema.get_field_index("workload_id"), "workload_id", ids)


def test_a_day_written_cluster_by_cluster_is_committed_at_once(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    ds = "workload_metrics"
    for cluster, n in (("a", 10), ("b", 6)):
        writer = PartitionWriter(lake, ds, DAY, f"run-{cluster}", cluster=cluster)
        writer.write(cluster_metrics(ord(cluster), n))
        segment = writer.commit()
        assert segment.segments == {cluster: f"run-{cluster}"} and segment.rows == n
    # segments are invisible to readers until the day is committed
    assert read_manifest(lake, ds, DAY) is None
    assert list_segments(lake, ds, DAY) == ["a", "b"]
    with pytest.raises(SegmentMissingError, match="cluster c has no segment"):
        commit_segments(lake, ds, DAY, ["a", "b", "c"], "day-run")
    assert read_manifest(lake, ds, DAY) is None
    day = commit_segments(lake, ds, DAY, ["a", "b"], "day-run")
    assert (day.rows, day.run_id, day.segments) == (16, "day-run", {"a": "run-a", "b": "run-b"})
    assert day.runs == {"run-a", "run-b"}
    assert read_partition(lake, ds, DAY).num_rows == 16
    verify_files(lake, day)
    first_files = {f.path for f in day.files}

    # cluster a again, with other rows: the day keeps a's old rows until the next commit
    writer = PartitionWriter(lake, ds, DAY, "run-a2", cluster="a")
    writer.write(cluster_metrics(ord("a"), 3))
    writer.commit()
    assert read_partition(lake, ds, DAY).num_rows == 16
    verify_files(lake, day)  # every file of the commit readers see is still there
    again = commit_segments(lake, ds, DAY, ["a", "b"], "day-run-2")
    assert again.rows == 9 and again.segments == {"a": "run-a2", "b": "run-b"}
    table = read_partition(lake, ds, DAY)
    assert sorted(set(table["workload_id"].to_pylist()))[:3] == ["c97-w0", "c97-w1", "c97-w2"]
    # a's first file is gone with the commit that replaced it; b's is kept
    on_disk = {p.relative_to(lake).as_posix() for p in lake.rglob("*.parquet")}
    assert on_disk == {f.path for f in again.files}
    assert len(first_files & on_disk) == 1

    # a whole-day commit (one run fetching every cluster) supersedes the segments
    write_partition(lake, ds, metric_table(4), DAY, "whole")
    assert list_segments(lake, ds, DAY) == []
    assert read_partition(lake, ds, DAY).num_rows == 4


def test_empty_segments_make_an_empty_day(tmp_path: Path) -> None:
    for cluster in ("a", "b"):
        PartitionWriter(tmp_path, "workload_metrics", DAY, "r", cluster=cluster).commit()
    day = commit_segments(tmp_path, "workload_metrics", DAY, ["a", "b"], "day")
    assert day.rows == 0 and len(day.data_files) == 1
    assert read_partition(tmp_path, "workload_metrics", DAY).num_rows == 0
    with pytest.raises(ValueError, match="invalid cluster id"):
        PartitionWriter(tmp_path, "workload_metrics", DAY, "r", cluster="a/b")


def test_gc_keeps_what_segments_name(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    landing = RawLanding(paths.raw)
    for run in ("run-a", "run-b", "run-old"):
        with landing.writer("workload_metrics", DAY, run) as w:
            w.record(workloads_page(1))
    writer = PartitionWriter(paths.lake, "workload_metrics", DAY, "run-a", cluster="a")
    writer.write(cluster_metrics(1, 5))
    writer.commit()
    commit_segments(paths.lake, "workload_metrics", DAY, ["a"], "day")
    writer = PartitionWriter(paths.lake, "workload_metrics", DAY, "run-b", cluster="b")
    writer.write(cluster_metrics(2, 5))
    writer.commit()  # not committed as the day yet
    later = time.time() + 400 * 86400
    report = collect_garbage(paths, keep_raw_days=1, now=later)
    assert report.lake_files.files == 0  # b's segment file is kept, not committed or not
    removed = {Path(p).name for p in report.raw_runs.paths}
    assert removed == {"run=run-old.jsonl.gz"}
    assert report.kept_named_runs == 2
    assert commit_segments(paths.lake, "workload_metrics", DAY, ["a", "b"], "day").rows == 10
