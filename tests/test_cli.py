"""The command line: clear errors for bad arguments and configuration, read-only SQL, rebuilding
a partition from raw, and the demo's summary table, on the shared pipeline run."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import PipelineRun, read_only
from workloads_etl.cli import main, summary_table
from workloads_etl.lake.parquet import partition_path
from workloads_etl.settings import PipelineSettings

RUNAI_ENV = ("RUNAI_BASE_URL", "RUNAI_CLIENT_ID", "RUNAI_CLIENT_SECRET", "RUNAI_TOKEN")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for name in RUNAI_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKLOADS_ETL_DATA_DIR", str(tmp_path))
    return CliRunner()


def test_run_rejects_a_reversed_range(runner: CliRunner) -> None:
    result = runner.invoke(main, ["run", "--start", "2026-11-05", "--end", "2026-11-02"])
    assert result.exit_code == 2
    assert "--end is before --start" in result.output


def test_run_rejects_a_malformed_date(runner: CliRunner) -> None:
    result = runner.invoke(main, ["run", "--start", "2026-13-01", "--end", "2026-11-02"])
    assert result.exit_code == 2
    assert "YYYY-MM-DD" in result.output


def test_run_without_a_control_plane_says_what_to_set(runner: CliRunner) -> None:
    result = runner.invoke(main, ["run", "--start", "2026-11-01", "--end", "2026-11-02"])
    assert result.exit_code == 2
    assert "RUNAI_BASE_URL" in result.output
    assert "Traceback" not in result.output


def test_sql_reads_the_marts(runner: CliRunner, pipeline_run: PipelineRun) -> None:
    with read_only(pipeline_run.paths) as con:
        expected = con.execute(
            "select count(distinct department_name) from marts.fct_workload_usage_daily"
        ).fetchone()
    result = runner.invoke(
        main,
        [
            "--data-dir",
            str(pipeline_run.paths.root),
            "sql",
            "select count(distinct department_name) as n from marts.fct_workload_usage_daily",
        ],
    )
    assert result.exit_code == 0, result.output
    assert expected is not None and str(expected[0]) in result.output


def test_sql_reports_a_bad_query_without_a_traceback(
    runner: CliRunner, pipeline_run: PipelineRun
) -> None:
    result = runner.invoke(
        main, ["--data-dir", str(pipeline_run.paths.root), "sql", "select * from no_such_table"]
    )
    assert result.exit_code == 1
    assert "no_such_table" in result.output
    assert "Traceback" not in result.output


def test_renormalise_rebuilds_a_partition_identically(
    runner: CliRunner, pipeline_run: PipelineRun
) -> None:
    day = pipeline_run.days[0]
    data_file = partition_path(pipeline_run.paths.lake, "workload_snapshots", day) / "data.parquet"
    before = pq.read_table(data_file)
    data_file.unlink()
    result = runner.invoke(
        main,
        [
            "--data-dir",
            str(pipeline_run.paths.root),
            "renormalise",
            "--dataset",
            "workload_snapshots",
            "--day",
            day.isoformat(),
            "--no-load",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"workload_snapshots {day}: {before.num_rows} rows" in result.output
    assert pq.read_table(data_file).equals(before)


def test_summary_totals_match_the_fact_table(pipeline_run: PipelineRun) -> None:
    start, end = pipeline_run.days[0], pipeline_run.days[-1]
    table = summary_table(PipelineSettings.read(data_dir=pipeline_run.paths.root), start, end)
    departments = table.columns[0]._cells
    allocated = table.columns[1]._cells
    assert departments[-1] == "total"
    with read_only(pipeline_run.paths) as con:
        row = con.execute(
            "select sum(allocated_gpu_hours), count(distinct department_name) "
            "from marts.fct_workload_usage_daily where usage_date between ? and ?",
            [start, end],
        ).fetchone()
    assert row is not None
    assert allocated[-1] == f"{row[0]:,.1f}"
    assert len(departments) - 1 == row[1]
