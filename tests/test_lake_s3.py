"""The raw landing and the lake on an S3-API store: a local moto server (a real HTTP S3 API).

The pipeline runs as users run it (the command line, ``WORKLOADS_ETL_LAKE_URL=s3://...``):
its marts must equal those of a local-lake run of the same day after a run killed while it
writes the lake and a run killed while dbt builds: nothing counted twice, no run left
stuck, no pool slot held.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import httpx
import pyarrow as pa
import pytest

from tests.cli_runs import Launched, alive, dbt_child, runs_of, wait_for
from tests.conftest import E2E_DAYS, marts_content
from workloads_etl.lake import store as store_module
from workloads_etl.lake.housekeeping import STALE_SECONDS, collect_garbage
from workloads_etl.lake.parquet import (
    MANIFEST_FILE,
    PartitionWriter,
    lake_files,
    read_manifest,
    read_partition,
    verify_files,
    write_partition,
)
from workloads_etl.lake.raw import RawLanding
from workloads_etl.lake.store import Store, StoreError, check_url
from workloads_etl.settings import DataPaths, PipelineSettings, SettingsError
from workloads_etl.warehouse.loader import Warehouse

BIN = Path(sys.executable).parent
BUCKET = "workloads-lake"
# A distinctive secret: it must never show in output, logs or data files.
SECRET = "s3-secret-Zq8v1RTw0xmP"
DAY = date(2024, 12, 20)


@dataclass
class S3:
    endpoint: str
    env: dict[str, str]

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A moto S3 server on a free port, the AWS variables pointing at it, one bucket."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "lake-writer",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        with mock.patch.dict(os.environ, env):
            store_module._filesystem.cache_clear()
            Store.at(f"s3://{BUCKET}").fs.mkdir(BUCKET)
            yield S3(endpoint, env)
    finally:
        store_module._filesystem.cache_clear()
        proc.terminate()
        proc.wait(timeout=30)


def metric_rows(n: int, run_id: str, workload: str = "w") -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "usage_date": pa.array([DAY] * n, pa.date32()),
            "workload_id": pa.array([f"{workload}{i // 10}" for i in range(n)]),
            "metric_type": pa.array(["GPU_UTILIZATION"] * n),
            "labels_json": pa.array([None] * n, pa.string()),
            "ts": pa.array([1734652800_000000 + 60_000_000 * (i % 10) for i in range(n)]).cast(ts),
            "value": pa.array([float(i) for i in range(n)]),
            "step_seconds": pa.array([60] * n, pa.int64()),
            "run_id": pa.array([run_id] * n),
            "fetched_at": pa.array([1734739200_000000] * n).cast(ts),
        }
    )


# -- the store ------------------------------------------------------------------------------


def test_lake_urls_are_checked_and_never_repeat_credentials() -> None:
    assert check_url("s3://bucket/prefix") == "s3://bucket/prefix"
    for bad, reason in [
        ("s3://key:hunter2@bucket/x", "must not carry credentials"),
        ("gs://bucket/x", "unsupported scheme"),
        ("s3:///x", "needs a bucket"),
        ("file://host/x", "file:///absolute/path"),
        ("s3://bucket/x?versionId=3", "no query"),
    ]:
        with pytest.raises(StoreError, match=reason) as info:
            check_url(bad)
        assert "hunter2" not in str(info.value)
    with (
        mock.patch.dict(os.environ, {"WORKLOADS_ETL_LAKE_URL": "s3://k:hunter2@b/p"}),
        pytest.raises(SettingsError, match="WORKLOADS_ETL_LAKE_URL") as info,
    ):
        PipelineSettings.read()
    assert "hunter2" not in str(info.value)


def test_store_publishes_whole_files_only(s3: S3) -> None:
    store = Store.at(s3.url("store-test"))
    store.write_bytes("a/b/one.bin", b"x" * 10)
    assert (store.read_bytes("a/b/one.bin"), store.size("a/b/one.bin")) == (b"x" * 10, 10)

    # a write that fails is aborted: nothing appears, not even the first bytes
    def broken_write() -> None:
        with store.writer("a/b/two.bin") as out:
            out.write(b"y" * (store_module.UPLOAD_BLOCK_BYTES + 1))  # a part already uploaded
            raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        broken_write()
    assert not store.exists("a/b/two.bin")
    assert [e.path for e in store.list("a")] == ["a/b/one.bin"]
    assert store.list("a")[0].modified > time.time() - 600
    store.delete("a/b/one.bin")
    store.delete("a/b/one.bin")  # absent: no error
    assert store.list("a") == []
    with pytest.raises(StoreError, match="not a path inside"):
        store.full("../escape")


def test_raw_runs_on_an_object_store(s3: S3) -> None:
    landing = RawLanding(s3.url("raw-test"))
    from tests.test_lake import workloads_page

    with landing.writer("workload_snapshots", DAY, "run-1") as w:
        w.record(workloads_page(3))

    def broken_run() -> None:
        with landing.writer("workload_snapshots", DAY, "run-2") as w:
            w.record(workloads_page(2))
            raise ValueError("mid-run")

    with pytest.raises(ValueError, match="mid-run"):
        broken_run()
    assert landing.runs("workload_snapshots", DAY) == ["run-1"]  # the failed run left nothing
    (page,) = list(landing.read("workload_snapshots", DAY))
    assert page.text == workloads_page(3).text


# -- the lake ------------------------------------------------------------------------------


def test_partition_commits_on_an_object_store(s3: S3, tmp_path: Path) -> None:
    """Replace, read, verify and load a partition on S3; a writer that never committed
    leaves files no reader counts, and gc takes exactly those."""
    paths = DataPaths(tmp_path, s3.url("commit-test")).ensure()
    lake = paths.lake
    first = write_partition(lake, "workload_metrics", metric_rows(40, "r1"), DAY, "r1")
    second = write_partition(lake, "workload_metrics", metric_rows(60, "r2"), DAY, "r2")
    assert read_manifest(lake, "workload_metrics", DAY) == second
    # the previous commit's files are gone after the commit
    names = {e.path for e in lake.list("workload_metrics", suffix=".parquet")}
    assert names == {f.path for f in second.data_files}
    assert not {f.path for f in first.data_files} & names
    # a writer killed before its commit: its chunk is in the store, named by no manifest
    crashed = PartitionWriter(lake, "workload_metrics", DAY, "r3")
    crashed.write(metric_rows(30, "r3", workload="crash"))
    assert len(lake.list("workload_metrics", suffix=".parquet")) == len(second.data_files) + 1
    assert read_partition(lake, "workload_metrics", DAY).num_rows == 60
    assert len(lake_files(lake, "workload_metrics")) == len(second.data_files)
    verify_files(lake, second)
    with Warehouse.open(paths) as wh:
        assert wh.load_partition("workload_metrics", DAY).rows == 60
        assert wh.con.execute("select count(*) from raw.workload_metrics").fetchone() == (60,)
    # gc: only the uncommitted chunk, and only once it is older than a writer's work
    assert collect_garbage(paths, dry_run=True).lake_files.files == 0
    report = collect_garbage(paths, now=time.time() + 2 * STALE_SECONDS)
    assert report.lake_files.paths == [lake.uri(crashed._files[0].path)]
    assert read_partition(lake, "workload_metrics", DAY).num_rows == 60


def test_a_corrupt_object_stops_the_load(s3: S3, tmp_path: Path) -> None:
    paths = DataPaths(tmp_path, s3.url("corrupt-test")).ensure()
    manifest = write_partition(paths.lake, "workload_metrics", metric_rows(20, "r1"), DAY, "r1")
    paths.lake.write_bytes(manifest.data_files[0].path, b"not parquet")
    from workloads_etl.lake.parquet import LakeIntegrityError

    with Warehouse.open(paths) as wh, pytest.raises(LakeIntegrityError, match="renormalise"):
        wh.load_partition("workload_metrics", DAY)


# -- the pipeline --------------------------------------------------------------------------


def _cli_env(e2e_simulator: Any, data_dir: Path, lake_url: str | None, s3: S3) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNAI_", "WORKLOADS_ETL_"))}
    env.update(s3.env)
    env.update(
        RUNAI_BASE_URL=e2e_simulator.base_url,
        RUNAI_CLIENT_ID=e2e_simulator.client_id,
        RUNAI_CLIENT_SECRET=e2e_simulator.client_secret,
        WORKLOADS_ETL_DATA_DIR=str(data_dir),
        NO_COLOR="1",
    )
    if lake_url:
        env["WORKLOADS_ETL_LAKE_URL"] = lake_url
    env.pop("DAGSTER_HOME", None)
    return env


def _run_day(env: dict[str, str], day: date) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BIN / "workloads-etl", "run", "--start", day.isoformat(), "--end", day.isoformat()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_a_day_on_s3_equals_the_local_lake_after_runs_killed_mid_write_and_mid_build(
    s3: S3, e2e_simulator: Any, clean_run: Any, tmp_path: Path
) -> None:
    # The local-lake run of the day is the shared clean reference (tests/cli_runs.py). On S3,
    # a first run is killed (the whole process tree) as soon as it has written a metrics
    # chunk, before the day's commit; a second is killed (its own process only) while dbt
    # builds; a third runs to the end.
    day = E2E_DAYS[0]
    remote = tmp_path / "remote"
    home = remote / "dagster-home"
    lake_url = s3.url("pipeline")
    env = {**_cli_env(e2e_simulator, remote, lake_url, s3), "DAGSTER_HOME": str(home)}
    store = Store.at(lake_url).child("lake")
    # the killed run writes the day's samples in many chunks: the kill lands between the first
    # file and the commit however loaded the machine is (one chunk is committed milliseconds
    # after its file); the re-run writes them in the default chunks, other files than the
    # killed run's
    killed = _run_day({**env, "WORKLOADS_ETL_CHUNK_SAMPLES": "20000"}, day)
    deadline = time.monotonic() + 300
    while not store.list("workload_metrics", suffix=".parquet"):
        assert killed.poll() is None, "the run ended before it wrote the lake"
        assert time.monotonic() < deadline, "no lake file appeared"
        time.sleep(0.02)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert read_manifest(store, "workload_metrics", day) is None  # killed before its commit
    uncommitted = store.list("workload_metrics", suffix=".parquet")
    assert uncommitted

    # SIGKILL while dbt builds: the run cannot clean up; its dbt dies with it, and its
    # Dagster run stays STARTED until the next run finds its process gone.
    run = Launched(_run_day(env, day), remote, home)
    dbt = wait_for(lambda: dbt_child(run), 300, "dbt to start")
    killed_run = next(k for k, (s, _) in runs_of(home).items() if s == "STARTED")
    run.proc.kill()
    run.proc.wait()
    wait_for(lambda: not alive([dbt]), 5, "dbt to die with its parent")
    assert runs_of(home)[killed_run][0] == "STARTED"

    out = _finish(_run_day(env, day))
    flat = " ".join(out.split())
    assert f"run {killed_run}: the process of this run (PID {run.proc.pid}) ended" in flat, out
    runs = runs_of(home)
    assert runs[killed_run][0] == "FAILURE"
    assert runs["__slots__"][1] == {}  # its pool slots are free again
    remote_paths = DataPaths(remote, lake_url)
    assert clean_run.outcome[0] == 0, clean_run.outcome[1]
    assert marts_content(remote_paths) == marts_content(DataPaths(clean_run.run.data))
    # nothing was counted twice: the warehouse holds each committed row once
    manifest = read_manifest(store, "workload_metrics", day)
    assert manifest is not None
    with duckdb.connect(str(remote_paths.warehouse), read_only=True) as con:
        (rows,) = con.execute(
            "select count(*) from raw.workload_metrics where usage_date = ?", [day]
        ).fetchone() or (0,)
    assert rows == manifest.rows > 0
    # the raw landing is on S3 too, and the local data directory holds no lake
    assert RawLanding(Store.at(lake_url).child("raw")).runs("workload_metrics", day)
    assert not (remote / "lake").exists() and not (remote / "raw").exists()
    # the store's secret shows nowhere: output, logs, Dagster's files, data files
    assert SECRET not in out
    for path in remote.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    for entry in store.list(suffix=MANIFEST_FILE):
        assert SECRET.encode() not in store.read_bytes(entry.path)
