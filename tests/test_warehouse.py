from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from workloads_etl.lake.datasets import DATASETS
from workloads_etl.lake.normalise.partition import normalise_partition
from workloads_etl.lake.raw import RawLanding
from workloads_etl.lake.schemas import SCHEMA_VERSION
from workloads_etl.runai.models import RawResponse
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.loader import (
    PartitionNotFoundError,
    Warehouse,
    WarehouseLockedError,
    table_ddl,
)

DAY = date(2024, 12, 20)
AT = datetime(2024, 12, 20, 23, 0, tzinfo=UTC)
WID = str(uuid.UUID(int=7))


def land_metrics(paths: DataPaths, run_id: str, values: list[str]) -> None:
    body = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "labels": {"gpu": "0"},
                "values": [
                    {"value": v, "timestamp": f"2024-12-20T{i:02d}:00:00Z"}
                    for i, v in enumerate(values)
                ],
            }
        ]
    }
    resp = RawResponse(
        "get_workload_metrics",
        "GET",
        f"/api/v1/workloads/{WID}/metrics",
        {"start": "2024-12-20T00:00:00Z", "end": "2024-12-21T00:00:00Z", "numberOfSamples": "24"},
        {"workloadId": WID},
        200,
        AT,
        json.dumps(body),
    )
    with RawLanding(paths.raw).writer("workload_metrics", DAY, run_id) as w:
        w.record(resp)


def land_workloads(paths: DataPaths) -> None:
    items = [
        {
            "id": str(uuid.UUID(int=1)),
            "name": "a",
            "images": ["x:1"],
            "createdAt": "2023-06-06 12:09:18.211",
            "tenantId": 1,
        },
        {"id": "nope"},
    ]
    resp = RawResponse(
        "get_workloads",
        "GET",
        "/api/v1/workloads",
        {},
        {},
        200,
        AT,
        json.dumps({"workloads": items}),
    )
    with RawLanding(paths.raw).writer("workload_snapshots", DAY, "w1") as w:
        w.record(resp)


def test_ddl_types() -> None:
    ddl = table_ddl("workload_snapshots")
    assert '"snapshot_at" TIMESTAMPTZ NOT NULL' in ddl
    assert '"snapshot_date" DATE NOT NULL' in ddl
    assert '"images" VARCHAR[]' in ddl
    assert '"tenant_id" BIGINT' in ddl
    assert '"preemptible" BOOLEAN' in ddl
    assert '"step_seconds" BIGINT NOT NULL' in table_ddl("workload_metrics")
    assert '"fetched_at" TIMESTAMPTZ' in table_ddl("workload_metrics")


def test_load_is_idempotent_and_audited(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    land_metrics(paths, "m1", ["1", "2", "x"])
    land_workloads(paths)
    normalise_partition(paths, "workload_metrics", DAY)
    normalise_partition(paths, "workload_snapshots", DAY)
    with Warehouse.open(paths) as wh:
        r1 = wh.load_partition("workload_metrics", DAY)
        snap1 = wh.con.execute("SELECT * FROM raw.workload_metrics ORDER BY ts").fetchall()
        q1 = wh.con.execute("SELECT reason, raw_record FROM raw.quarantine").fetchall()
        r2 = wh.load_partition("workload_metrics", DAY)
        snap2 = wh.con.execute("SELECT * FROM raw.workload_metrics ORDER BY ts").fetchall()
        q2 = wh.con.execute("SELECT reason, raw_record FROM raw.quarantine").fetchall()
        wh.load_partitions("workload_snapshots", [DAY])
        loads = wh.con.execute(
            'SELECT dataset, "partition", rows, run_id, schema_version, file_sha256 '
            "FROM raw._loads ORDER BY loaded_at"
        ).fetchall()
        ws = wh.con.execute(
            "SELECT workload_id, images, created_at::VARCHAR FROM raw.workload_snapshots"
        ).fetchall()
    assert r1.rows == r2.rows == 2
    assert r1.run_id == "m1"
    assert snap1 == snap2
    assert [(r[4], r[5]) for r in snap1] == [
        (datetime(2024, 12, 20, 0, tzinfo=UTC), 1.0),
        (datetime(2024, 12, 20, 1, tzinfo=UTC), 2.0),
    ]
    assert (
        q1
        == q2
        == [
            (
                "value is not numeric (workload " + WID + ", GPU_UTILIZATION)",
                '{"value":"x","timestamp":"2024-12-20T02:00:00Z"}',
            )
        ]
    )
    assert ws == [(str(uuid.UUID(int=1)), ["x:1"], "2023-06-06 12:09:18.211+00")]
    v = SCHEMA_VERSION
    assert [row[:5] for row in loads] == [
        ("workload_metrics", "usage_date=2024-12-20", 2, "m1", v),
        ("quarantine", "dataset=workload_metrics/quarantine_date=2024-12-20", 1, "m1", v),
        ("workload_metrics", "usage_date=2024-12-20", 2, "m1", v),
        ("quarantine", "dataset=workload_metrics/quarantine_date=2024-12-20", 1, "m1", v),
        ("workload_snapshots", "snapshot_date=2024-12-20", 1, "w1", v),
        ("quarantine", "dataset=workload_snapshots/quarantine_date=2024-12-20", 1, "w1", v),
    ]
    assert all(len(row[5]) == 64 for row in loads)
    ro = Warehouse.connect_read_only(paths)
    try:
        assert ro.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(2,)]
        assert ro.execute("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    finally:
        ro.close()


def test_reload_replaces_partition_with_new_run(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    land_metrics(paths, "m1", ["1", "x"])
    normalise_partition(paths, "workload_metrics", DAY)
    with Warehouse.open(paths) as wh:
        wh.load_partition("workload_metrics", DAY)
        time.sleep(0.01)
        land_metrics(paths, "m2", ["5", "6", "7"])
        normalise_partition(paths, "workload_metrics", DAY)
        r = wh.load_partition("workload_metrics", DAY)
        values = wh.con.execute(
            "SELECT value, run_id FROM raw.workload_metrics ORDER BY ts"
        ).fetchall()
        nq = wh.con.execute("SELECT count(*) FROM raw.quarantine").fetchall()[0][0]
    assert r.run_id == "m2"
    assert values == [(5.0, "m2"), (6.0, "m2"), (7.0, "m2")]
    assert nq == 0


def test_missing_partition_is_a_clear_error(tmp_path: Path) -> None:
    with Warehouse.open(DataPaths(tmp_path)) as wh, pytest.raises(PartitionNotFoundError):
        wh.load_partition("telemetry", DAY)
    with Warehouse.open(DataPaths(tmp_path)) as wh:
        tables = {
            r[0]
            for r in wh.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema='raw'"
            ).fetchall()
        }
    assert tables == {*DATASETS, "_loads", "_schema_versions"}


_HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from workloads_etl.settings import DataPaths
    from workloads_etl.warehouse.loader import Warehouse
    with Warehouse.open(DataPaths(Path(sys.argv[1])), wait_seconds=0):
        print("LOCKED", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def test_second_writer_waits_then_fails_clearly(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "LOCKED"
        t0 = time.monotonic()
        with pytest.raises(WarehouseLockedError) as err:
            Warehouse.open(paths, wait_seconds=1.0)
        assert time.monotonic() - t0 >= 1.0
        message = str(err.value)
        assert str(paths.warehouse) in message
        # Not a run of this data directory: a reader, named with its command line.
        assert f"held open by a reader, PID {holder.pid} (" in message
        assert "waited 1 s" in message
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_second_writer_gets_the_lock_when_released(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "LOCKED"
        with Warehouse.open(paths, wait_seconds=30) as wh:
            assert wh.con.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        holder.wait(timeout=30)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _warehouse_state(wh: Warehouse) -> tuple[list[tuple[object, ...]], ...]:
    return tuple(
        wh.con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()  # noqa: S608
        for table in ("raw.workload_metrics", "raw.quarantine", "raw._loads")
    )


@pytest.mark.parametrize("role", ["data", "quarantine"])
def test_a_corrupt_lake_file_is_refused_naming_the_rebuild(tmp_path: Path, role: str) -> None:
    from click.testing import CliRunner

    from workloads_etl.cli import main
    from workloads_etl.lake.parquet import LakeIntegrityError, file_path

    paths = DataPaths(tmp_path).ensure()
    land_metrics(paths, "m1", ["1", "2", "x"])
    normalise_partition(paths, "workload_metrics", DAY)
    with Warehouse.open(paths) as wh:
        wh.load_partition("workload_metrics", DAY)
        before = _warehouse_state(wh)
    time.sleep(0.01)
    land_metrics(paths, "m2", ["5", "6", "y"])
    manifest = normalise_partition(paths, "workload_metrics", DAY).manifest
    assert manifest is not None
    (victim,) = [f for f in manifest.files if f.role == role]
    path = file_path(paths.lake, victim)
    _flip_one_byte(path)
    with Warehouse.open(paths) as wh:
        with pytest.raises(LakeIntegrityError) as err:
            wh.load_partition("workload_metrics", DAY)
        assert _warehouse_state(wh) == before  # nothing deleted, nothing half-loaded
    message = str(err.value)
    command = "workloads-etl renormalise --dataset workload_metrics --day 2024-12-20 --run-id m2"
    assert "\n" not in message
    assert str(path) in message
    assert message.endswith(command)
    # the command it names rebuilds the partition from the raw run, and loads it
    args = command.split()[1:]
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    with Warehouse.open(paths) as wh:
        values = wh.con.execute("SELECT value FROM raw.workload_metrics ORDER BY ts").fetchall()
        reasons = wh.con.execute("SELECT reason FROM raw.quarantine").fetchall()
    assert values == [(5.0,), (6.0,)]
    assert [r[0].split(" (")[0] for r in reasons] == ["value is not numeric"]


def test_the_dbt_window_is_one_row_of_the_warehouse(tmp_path: Path) -> None:
    from workloads_etl.warehouse.dbt import WINDOW_TABLE, clear_window, write_window

    paths = DataPaths(tmp_path)
    with Warehouse.open(paths):
        pass
    day2 = date(2024, 12, 21)
    write_window(paths.warehouse, (DAY, day2))
    write_window(paths.warehouse, (day2, day2))  # replaces, never adds
    with Warehouse.open(paths) as wh:
        rows = wh.con.execute(f"SELECT * FROM {WINDOW_TABLE}").fetchall()  # noqa: S608
    assert rows == [(day2, day2, None)]
    write_window(paths.warehouse, (DAY, day2), DAY)  # a build of a window cut in several
    with Warehouse.open(paths) as wh:
        rows = wh.con.execute(f"SELECT * FROM {WINDOW_TABLE}").fetchall()  # noqa: S608
    assert rows == [(DAY, day2, DAY)]
    clear_window(paths.warehouse)
    with Warehouse.open(paths) as wh:
        assert wh.con.execute(f"SELECT count(*) FROM {WINDOW_TABLE}").fetchall() == [(0,)]  # noqa: S608
    clear_window(tmp_path / "missing.duckdb")  # nothing to clear, nothing created
    assert not (tmp_path / "missing.duckdb").exists()
    # the table of an earlier version, without full_build_through, gains the column
    older = tmp_path / "older.duckdb"
    with duckdb.connect(str(older)) as con:
        con.execute("create schema raw")
        con.execute(f"create table {WINDOW_TABLE} (start_date date, end_date date)")
        con.execute(f"insert into {WINDOW_TABLE} values (date '2024-12-01', null)")  # noqa: S608
    write_window(older, (DAY, day2), DAY)
    with duckdb.connect(str(older)) as con:
        assert con.execute(f"SELECT * FROM {WINDOW_TABLE}").fetchall() == [(DAY, day2, DAY)]  # noqa: S608


def test_duckdb_memory_limit_is_a_validated_pipeline_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workloads_etl.settings import (
        DEFAULT_DUCKDB_MEMORY_LIMIT,
        PipelineSettings,
        SettingsError,
        duckdb_memory_limit,
    )

    monkeypatch.delenv("WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT", raising=False)
    assert duckdb_memory_limit() == DEFAULT_DUCKDB_MEMORY_LIMIT == "320MB"
    monkeypatch.setenv("WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT", "2GB")
    assert duckdb_memory_limit() == "2GB"
    assert PipelineSettings.read(data_dir=tmp_path).duckdb_memory_limit == "2GB"
    monkeypatch.setenv("WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(SettingsError, match="WORKLOADS_ETL_DUCKDB_MEMORY_LIMIT"):
        duckdb_memory_limit()
