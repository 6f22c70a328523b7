"""The command line: clear errors for bad arguments and configuration, read-only SQL, rebuilding
a partition from raw, and the demo's summary table, on the shared pipeline run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import PipelineRun, read_only
from workloads_etl.cli import main, summary_table
from workloads_etl.lake.parquet import file_path, read_manifest
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
    manifest = read_manifest(pipeline_run.paths.lake, "workload_snapshots", day)
    assert manifest is not None
    data_file = file_path(pipeline_run.paths.lake, manifest.data_files[0])
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
    assert pq.read_table(data_file).equals(before)  # the same name: the same content
    assert read_manifest(pipeline_run.paths.lake, "workload_snapshots", day) is not None


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


def _sql(pipeline_run: PipelineRun, query: str, *options: str) -> Any:
    return CliRunner().invoke(
        main, ["--data-dir", str(pipeline_run.paths.root), "sql", query, *options]
    )


def test_sql_formats(pipeline_run: PipelineRun) -> None:
    query = (
        "select department_name, sum(total_cost) as cost from marts.fct_workload_usage_daily "
        "group by 1 order by 1"
    )
    with read_only(pipeline_run.paths) as con:
        expected = con.execute(query).fetchall()
    as_csv = _sql(pipeline_run, query, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.reader(io.StringIO(as_csv.output)))
    assert rows[0] == ["department_name", "cost"]
    assert [(r[0], float(r[1])) for r in rows[1:]] == expected
    as_json = _sql(pipeline_run, query, "--format", "json")
    assert [(r["department_name"], r["cost"]) for r in json.loads(as_json.output)] == expected
    as_md = _sql(pipeline_run, query, "--format", "markdown").output.splitlines()
    assert as_md[0] == "| department_name | cost |"
    assert as_md[1] == "| --- | --- |"
    assert len(as_md) == 2 + len(expected)


def test_sql_shows_wide_results_one_record_per_block(pipeline_run: PipelineRun) -> None:
    result = _sql(pipeline_run, "select * from marts.fct_workload_usage_daily limit 2")
    assert result.exit_code == 0, result.output
    assert "-[ record 1 ]" in result.output
    assert "-[ record 2 ]" in result.output
    assert any(line.startswith("total_cost") for line in result.output.splitlines())
    assert "…" not in result.output


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_text('/etc/passwd')",
        "copy (select 1) to '/tmp/workloads-etl-sql-escape.csv'",
        "attach '/tmp/workloads-etl-sql-escape.duckdb' as other",
        "install httpfs",
        "set enable_external_access = true",
        "select * from read_parquet('/tmp/*.parquet')",
        "create table marts.x as select 1",
    ],
)
def test_sql_is_sandboxed(pipeline_run: PipelineRun, query: str) -> None:
    result = _sql(pipeline_run, query)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert not Path("/tmp/workloads-etl-sql-escape.csv").exists()
    assert not Path("/tmp/workloads-etl-sql-escape.duckdb").exists()


def test_sql_runs_one_statement_per_call(pipeline_run: PipelineRun) -> None:
    result = _sql(pipeline_run, "select 1; select 2")
    assert result.exit_code == 2
    assert "one SQL statement" in result.output


def test_sql_prints_data_as_text_never_as_markup_or_control_sequences(
    pipeline_run: PipelineRun,
) -> None:
    query = "select 'postgres:x:101' as a, '[/]' as b, chr(27) || '[31mred' || chr(7) as c"
    for fmt in ("table", "markdown", "csv"):
        result = _sql(pipeline_run, query, "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "postgres:x:101" in result.output
        assert "[/]" in result.output
        if fmt != "csv":  # CSV into a pipe keeps the data as it is
            assert "\x1b" not in result.output and "\x07" not in result.output
            assert "\\x1b[31mred\\x07" in result.output


def test_every_option_has_help_and_every_command_an_example() -> None:
    for name, command in main.commands.items():
        if name == "simulate":
            continue  # the simulator's own command line
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help text"
        assert "Example" in (command.help or ""), f"{name} has no example"
