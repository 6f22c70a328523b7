"""The dbt project on Spark (dbt-spark, session method) over the lake of the end-to-end run:
every model builds and every dbt test passes, and each mart equals DuckDB's (the same lake,
built by the pipeline), numbers to 1e-9 relative and everything else exactly. A second run,
over the last day only, is incremental (Parquet partitions overwritten) and changes nothing.

Run by ``make test-spark`` (it installs pyspark and dbt-spark); ``make test`` deselects the
``spark`` marker.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import PipelineRun, read_only
from workloads_etl.settings import DataPaths
from workloads_etl.warehouse.dbt import SPARK_TARGET, run_dbt, target_dir

pytestmark = pytest.mark.spark

REL_TOL = 1e-9
# Values that are zero on one side may be a rounding residue on the other.
ABS_TOL = 1e-12
DUMP = Path(__file__).with_name("dump_marts.py")


@dataclass
class SparkBuild:
    paths: DataPaths
    seconds: float
    marts: dict[str, pa.Table]


def _dump(paths: DataPaths, out: Path) -> dict[str, pa.Table]:
    subprocess.run([sys.executable, str(DUMP), str(paths.root), str(out)], check=True)
    return {p.stem: pq.read_table(p) for p in sorted(out.glob("*.parquet"))}


def _duckdb_marts(paths: DataPaths) -> dict[str, pa.Table]:
    with read_only(paths) as con:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' "
                "order by table_name"
            ).fetchall()
        ]
        return {
            t: con.sql(f"select * from marts.{t}").to_arrow_table()  # noqa: S608
            for t in tables
        }


@pytest.fixture(scope="module")
def first_build(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> SparkBuild:
    paths = pipeline_run.paths
    started = time.monotonic()
    run_dbt(["build"], paths, dbt_target=SPARK_TARGET)
    seconds = time.monotonic() - started
    print(f"\nSpark: dbt build of every model and test in {seconds:.0f} s")
    return SparkBuild(paths, seconds, _dump(paths, tmp_path_factory.mktemp("spark-marts-1")))


@pytest.fixture(scope="module")
def second_build(
    first_build: SparkBuild, pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory
) -> SparkBuild:
    paths = first_build.paths
    started = time.monotonic()
    run_dbt(["build"], paths, dbt_target=SPARK_TARGET, days=[pipeline_run.days[-1]])
    seconds = time.monotonic() - started
    print(f"\nSpark: incremental dbt build of one day in {seconds:.0f} s")
    return SparkBuild(paths, seconds, _dump(paths, tmp_path_factory.mktemp("spark-marts-2")))


def _is_number(v: Any) -> bool:
    return isinstance(v, float | Decimal) or (isinstance(v, int) and not isinstance(v, bool))


def _sort_key(row: tuple[Any, ...], exact: list[int]) -> tuple[Any, ...]:
    """Rows ordered by their exactly compared values (nulls first), then by their numbers
    rounded well above the tolerance."""

    def part(v: Any) -> tuple[int, Any]:
        if v is None:
            return (0, "")
        if _is_number(v):
            return (1, float(f"{float(v):.6g}"))
        if isinstance(v, datetime | date):
            return (2, v.isoformat())
        return (3, repr(v))

    return tuple(part(row[i]) for i in exact) + tuple(
        part(v) for i, v in enumerate(row) if i not in exact
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def compare(duck: pa.Table, spark: pa.Table) -> list[str]:
    """The differences between a mart of DuckDB and the same mart of Spark (empty: equal)."""
    problems: list[str] = []
    spark_columns = {name.lower(): name for name in spark.column_names}
    missing = [c for c in duck.column_names if c.lower() not in spark_columns]
    extra = sorted(set(spark_columns) - {c.lower() for c in duck.column_names})
    if missing or extra:
        return [f"columns: missing on Spark {missing}, only on Spark {extra}"]
    if duck.num_rows != spark.num_rows:
        return [f"rows: DuckDB {duck.num_rows}, Spark {spark.num_rows}"]
    spark = spark.select([spark_columns[c.lower()] for c in duck.column_names])
    floating = {
        i
        for i, f in enumerate(duck.schema)
        if pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
    }
    exact = [i for i in range(duck.num_columns) if i not in floating]
    duck_rows = sorted(
        (tuple(r.values()) for r in duck.to_pylist()), key=lambda r: _sort_key(r, exact)
    )
    spark_rows = sorted(
        (tuple(r.values()) for r in spark.to_pylist()), key=lambda r: _sort_key(r, exact)
    )
    for d_row, s_row in zip(duck_rows, spark_rows, strict=True):
        for i, (a, b) in enumerate(zip(d_row, s_row, strict=True)):
            if not _same(a, b):
                problems.append(f"{duck.column_names[i]}: DuckDB {a!r}, Spark {b!r}")
                if len(problems) >= 5:
                    return problems
    return problems


def _assert_equal_marts(build: SparkBuild, paths: DataPaths) -> None:
    duck = _duckdb_marts(paths)
    assert sorted(build.marts) == sorted(duck)
    report = {}
    for table in sorted(duck):
        report[table] = compare(duck[table], build.marts[table])
        status = "equal" if not report[table] else f"DIFFERENT: {report[table]}"
        print(f"  {table}: {duck[table].num_rows} rows, {status}")
    assert not any(report.values()), {t: p for t, p in report.items() if p}


def test_the_comparison_sees_a_difference_beyond_the_tolerance() -> None:
    duck = pa.table({"k": ["a", "b"], "x": [1.0, 2.0], "n": [1, 2]})
    assert compare(duck, pa.table({"K": ["b", "a"], "x": [2.0, 1.0 + 1e-12], "n": [2, 1]})) == []
    assert compare(duck, pa.table({"k": ["a", "b"], "x": [1.0 + 1e-8, 2.0], "n": [1, 2]}))
    assert compare(duck, pa.table({"k": ["a", "c"], "x": [1.0, 2.0], "n": [1, 2]}))
    assert compare(duck, pa.table({"k": ["a", "b"], "x": [1.0, 2.0], "n": [1, 3]}))
    assert compare(duck, pa.table({"k": ["a", "b"], "x": [1.0, None], "n": [1, 2]}))
    assert compare(duck, pa.table({"k": ["a"], "x": [1.0], "n": [1]}))
    assert compare(duck, pa.table({"k": ["a", "b"], "x": [1.0, 2.0]}))


def test_every_model_and_test_builds_on_spark_and_equals_duckdb(
    first_build: SparkBuild, pipeline_run: PipelineRun
) -> None:
    assert first_build.marts["fct_workload_usage_daily"].num_rows > 0
    _assert_equal_marts(first_build, pipeline_run.paths)


def test_a_second_run_overwrites_the_window_partitions_and_changes_nothing(
    second_build: SparkBuild, pipeline_run: PipelineRun
) -> None:
    model = "workloads_etl/models/marts/fct_workload_usage_daily.sql"
    target = target_dir(pipeline_run.paths, SPARK_TARGET)
    # the run overwrote partitions of the table, with the rows of its window only
    assert "insert overwrite table" in (target / "run" / model).read_text().lower()
    assert f"date '{pipeline_run.days[-1]}'" in (target / "compiled" / model).read_text()
    _assert_equal_marts(second_build, pipeline_run.paths)
