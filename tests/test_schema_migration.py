"""Schema version 1 -> 2 with real artefacts of version 1 (tests/fixtures/schema_v1): its
lake partitions are read and loaded, its warehouse is migrated, and the data stays right."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pytest

from workloads_etl.lake.normalise.partition import normalise_partition
from workloads_etl.lake.parquet import partition_path, quarantine_path, read_manifest
from workloads_etl.lake.schemas import SCHEMA_VERSION
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.loader import (
    LakeSchemaError,
    Warehouse,
    WarehouseSchemaError,
)

FIXTURE = Path(__file__).parent / "fixtures" / "schema_v1"
DAY, LAKE_ONLY_DAY = date(2024, 12, 20), date(2024, 12, 21)
# The columns of version 1, every row.
V1_ROWS = (
    "SELECT usage_date, workload_id, metric_type, labels_json, ts, value, step_seconds, run_id "
    "FROM raw.workload_metrics ORDER BY ALL"
)
DAY_ROWS = (
    "SELECT workload_id, metric_type, labels_json, strftime(ts, '%H'), value, step_seconds "
    "FROM raw.workload_metrics WHERE usage_date = ? ORDER BY ALL"
)


@pytest.fixture
def v1(tmp_path: Path) -> DataPaths:
    """A data directory of version 1: raw runs, lake partitions, a warehouse."""
    shutil.copytree(FIXTURE / "raw", tmp_path / "raw")
    shutil.copytree(FIXTURE / "lake", tmp_path / "lake")
    paths = DataPaths(tmp_path)
    with gzip.open(FIXTURE / "warehouse.duckdb.gz", "rb") as src, paths.warehouse.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return paths


def query(
    paths: DataPaths, sql: str, params: list[object] | None = None
) -> list[tuple[object, ...]]:
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params).fetchall()


def columns(paths: DataPaths, table: str) -> list[tuple[object, ...]]:
    return query(
        paths,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = ? ORDER BY ordinal_position",
        [table],
    )


def test_the_fixture_is_of_version_1(v1: DataPaths) -> None:
    assert SCHEMA_VERSION == 2
    manifest = read_manifest(v1.lake, "workload_metrics", DAY)
    assert manifest is not None
    assert (manifest.format, manifest.schema_version) == (1, 1)
    assert ("step_seconds", "INTEGER") in columns(v1, "workload_metrics")
    assert "fetched_at" not in dict(columns(v1, "workload_metrics"))
    assert "_schema_versions" not in {r[0] for r in query(v1, "SHOW TABLES FROM raw")}


def test_a_version_1_warehouse_is_migrated_and_keeps_its_rows(v1: DataPaths) -> None:
    before = query(v1, V1_ROWS)
    others = {
        t: query(v1, f"SELECT * FROM raw.{t} ORDER BY ALL")  # noqa: S608
        for t in ("workload_snapshots", "quarantine", "_loads")
    }
    assert len(before) == 24
    with Warehouse.open(v1) as wh:
        assert wh.schema_version() == SCHEMA_VERSION
    cols = dict(columns(v1, "workload_metrics"))
    assert (cols["step_seconds"], cols["fetched_at"]) == ("BIGINT", "TIMESTAMP WITH TIME ZONE")
    assert list(cols)[-1] == "fetched_at"  # where a new warehouse has it too
    after = query(v1, V1_ROWS)
    assert after == before
    assert query(v1, "SELECT count(*) FROM raw.workload_metrics WHERE fetched_at IS NULL") == [
        (24,)
    ]
    for table, rows in others.items():
        assert query(v1, f"SELECT * FROM raw.{table} ORDER BY ALL") == rows  # noqa: S608
    history = query(v1, "SELECT version, change FROM raw._schema_versions ORDER BY version")
    assert [v for v, _ in history] == [1, 2]
    assert "step_seconds widened to BIGINT" in str(history[1][1])
    # opening again migrates nothing more
    with Warehouse.open(v1):
        pass
    assert len(query(v1, "SELECT * FROM raw._schema_versions")) == 2


def test_version_1_lake_partitions_load_into_the_migrated_warehouse(v1: DataPaths) -> None:
    with Warehouse.open(v1) as wh:
        loaded = wh.load_partition("workload_metrics", LAKE_ONLY_DAY)
    assert (loaded.rows, loaded.run_id) == (24, "v1-fixture")
    rows = query(
        v1,
        "SELECT count(*), min(step_seconds), max(step_seconds), count(fetched_at), "
        "typeof(any_value(step_seconds)) FROM raw.workload_metrics WHERE usage_date = ?",
        [LAKE_ONLY_DAY],
    )
    assert rows == [(24, 3600, 3600, 0, "BIGINT")]
    loads = query(
        v1,
        'SELECT dataset, rows, schema_version FROM raw._loads WHERE "partition" LIKE ? '
        "ORDER BY dataset",
        [f"%{LAKE_ONLY_DAY}"],
    )
    assert loads == [("quarantine", 1, 1), ("workload_metrics", 24, 1)]
    # the same rows, day for day, as the day version 1 loaded itself
    day1 = query(v1, DAY_ROWS, [DAY])
    day2 = query(v1, DAY_ROWS, [LAKE_ONLY_DAY])
    assert day1 == day2


def test_renormalising_a_version_1_day_gives_the_same_rows_plus_fetched_at(
    v1: DataPaths,
) -> None:
    with Warehouse.open(v1):
        pass
    migrated = query(v1, V1_ROWS)
    result = normalise_partition(v1, "workload_metrics", DAY)
    assert result.run_id == "v1-fixture"  # the raw run the version 1 partition came from
    with Warehouse.open(v1) as wh:
        wh.load_partition("workload_metrics", DAY)
    rebuilt = query(v1, V1_ROWS)
    assert rebuilt == migrated
    fetched = query(v1, "SELECT DISTINCT fetched_at FROM raw.workload_metrics")
    assert fetched == [(datetime(2024, 12, 21, tzinfo=UTC),)]  # the answers' Date header
    # the version 2 commit replaced the version 1 files, the quarantine's manifest with them
    assert not (partition_path(v1.lake, "workload_metrics", DAY) / "data.parquet").exists()
    assert [
        p.name.split("-")[0] for p in quarantine_path(v1.lake, "workload_metrics", DAY).iterdir()
    ] == ["part"]
    manifest = read_manifest(v1.lake, "workload_metrics", DAY)
    assert manifest is not None
    assert (manifest.format, manifest.schema_version, manifest.quarantined) == (2, 2, 1)


def test_a_warehouse_of_a_newer_version_stops_with_the_rebuild_command(v1: DataPaths) -> None:
    with Warehouse.open(v1) as wh:
        wh.con.execute("INSERT INTO raw._schema_versions VALUES (3, now(), 'from the future')")
    with pytest.raises(WarehouseSchemaError) as err:
        Warehouse.open(v1)
    message = str(err.value)
    assert "\n" not in message
    assert "schema version 3" in message
    assert "workloads-etl renormalise --dataset" in message
    # the failed open did not keep the file locked: another process can open it
    probe = f"import duckdb; duckdb.connect({str(v1.warehouse)!r}).close()"
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_a_warehouse_that_cannot_be_migrated_stays_untouched(v1: DataPaths) -> None:
    with duckdb.connect(str(v1.warehouse)) as con:  # a step_seconds no BIGINT can hold
        con.execute("ALTER TABLE raw.workload_metrics ALTER COLUMN step_seconds TYPE VARCHAR")
        con.execute("UPDATE raw.workload_metrics SET step_seconds = 'hourly' WHERE value = 1.0")
    before = columns(v1, "workload_metrics")
    with pytest.raises(WarehouseSchemaError) as err:
        Warehouse.open(v1)
    message = str(err.value)
    assert "\n" not in message
    assert "could not be migrated from schema version 1 to 2" in message
    assert "workloads-etl renormalise --dataset" in message
    assert columns(v1, "workload_metrics") == before
    assert "_schema_versions" not in {r[0] for r in query(v1, "SHOW TABLES FROM raw")}


def test_a_lake_partition_of_a_newer_version_is_refused(v1: DataPaths) -> None:
    path = partition_path(v1.lake, "workload_metrics", LAKE_ONLY_DAY) / "_manifest.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "schema_version": 3}))
    with Warehouse.open(v1) as wh, pytest.raises(LakeSchemaError) as err:
        wh.load_partition("workload_metrics", LAKE_ONLY_DAY)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(
        "workloads-etl renormalise --dataset workload_metrics --day 2024-12-21 --run-id v1-fixture"
    )
