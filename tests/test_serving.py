"""The serving database readers use: never blocked by a run, always consistent, described,
readable by DuckDB 1.4 clients and through SQLAlchemy; a day run again changes nothing; and
a run on a real terminal keeps dbt's output in its log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import PipelineRun, assert_same_content, lake_fingerprint, marts_content
from tests.tools import tool_venv
from workloads_etl.warehouse.serving import SERVED_SCHEMAS, serving_path

pytestmark = pytest.mark.slow

READER = textwrap.dedent(
    """
    import json, os, sys, time
    import duckdb
    path, stop, result = sys.argv[1:4]
    reads = errors = inconsistent = 0
    published, messages = set(), []
    while not os.path.exists(stop):
        try:
            con = duckdb.connect(path, read_only=True)
            try:
                depts, clusters, at = con.execute(
                    "select (select sum(total_cost)"
                    " from marts.rpt_utilisation_daily_by_department),"
                    " (select sum(total_cost) from marts.rpt_utilisation_daily_by_cluster),"
                    " (select max(published_at)::varchar from meta.publication)"
                ).fetchone()
            finally:
                con.close()
            reads += 1
            published.add(at)
            if abs(depts - clusters) > 1e-6 * max(1.0, abs(clusters)):
                inconsistent += 1
        except Exception as exc:
            errors += 1
            messages.append(f"{type(exc).__name__}: {exc}"[:300])
        time.sleep(0.2)  # opening the database takes CPU the run needs too
    with open(result, "w") as f:
        json.dump({"reads": reads, "errors": errors, "inconsistent": inconsistent,
                   "published": sorted(published), "messages": messages[:5]}, f)
    """
)


def run_in_terminal(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``cmd`` with a pseudo-terminal as its stdin, stdout and stderr; return its exit
    code and everything it wrote to the terminal."""
    master, slave = os.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", errors="replace")


@dataclass
class Rerun:
    code: int
    terminal: str
    reader: dict[str, Any]
    # the marts and the last day's lake partitions before and after the run
    marts: tuple[dict[str, list[tuple[Any, ...]]], dict[str, list[tuple[Any, ...]]]]
    lake: tuple[dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def cli_rerun(pipeline_run: PipelineRun, tmp_path_factory: pytest.TempPathFactory) -> Rerun:
    """The last day run again by the command line on a real terminal, while a reader queries
    the serving database in a loop from another process."""
    tmp = tmp_path_factory.mktemp("rerun")
    last = pipeline_run.days[-1]
    marts_before = marts_content(pipeline_run.paths)
    lake_before = lake_fingerprint(pipeline_run.paths, last)
    stop, result = tmp / "stop", tmp / "reader.json"
    sim = pipeline_run.simulator
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(serving_path(pipeline_run.paths)), stop, result]
    )
    try:
        time.sleep(1.0)  # reads of the published state before the run
        day = last.isoformat()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RUNAI_", "WORKLOADS_"))},
            "TERM": "xterm-256color",
            "COLUMNS": "120",
            "RUNAI_BASE_URL": sim.base_url,
            "RUNAI_CLIENT_ID": sim.client_id,
            "RUNAI_CLIENT_SECRET": sim.client_secret,
        }
        env.pop("DAGSTER_HOME", None)
        exe = str(Path(sys.executable).with_name("workloads-etl"))
        cmd = [exe, "--data-dir", str(pipeline_run.paths.root), "run", "--start", day, "--end", day]
        code, terminal = run_in_terminal(cmd, env, tmp)
        time.sleep(1.0)  # reads of the newly published state
    finally:
        stop.touch()
        reader.wait(timeout=60)
    return Rerun(
        code,
        terminal,
        json.loads(result.read_text()),
        (marts_before, marts_content(pipeline_run.paths)),
        (lake_before, lake_fingerprint(pipeline_run.paths, last)),
    )


def test_a_day_run_again_changes_nothing(cli_rerun: Rerun) -> None:
    """The last day, already run as its nightly, run again: the same lake partitions and
    the same marts, to the bit."""
    assert cli_rerun.code == 0, cli_rerun.terminal[-3000:]
    before, after = cli_rerun.lake
    for ds, table in before.items():
        assert after[ds].equals(table), f"lake partition {ds} changed"
    assert_same_content(*cli_rerun.marts)


def test_readers_are_never_blocked_and_always_consistent(cli_rerun: Rerun) -> None:
    assert cli_rerun.code == 0, cli_rerun.terminal[-3000:]
    reader = cli_rerun.reader
    assert reader["errors"] == 0, reader["messages"]
    assert reader["inconsistent"] == 0
    assert reader["reads"] >= 50
    assert len(reader["published"]) >= 2, "the run published a new state during the reads"


def test_dbt_output_goes_to_the_run_log_on_a_real_terminal(cli_rerun: Rerun) -> None:
    terminal = cli_rerun.terminal
    assert cli_rerun.code == 0, terminal[-3000:]
    assert "GPU usage and cost per department" in terminal
    for dbt_line in ("Running with dbt", "Finished running", "Concurrency:", "OK created"):
        assert dbt_line not in terminal
    match = re.search(r"run log: (\S+)", terminal)
    assert match, terminal[-2000:]
    log = Path(match.group(1)).read_text()
    assert "Running with dbt" in log
    assert terminal.count("\n") < 40


def test_serving_database_holds_the_marts_and_seeds_with_descriptions(
    pipeline_run: PipelineRun,
) -> None:
    with duckdb.connect(str(serving_path(pipeline_run.paths)), read_only=True) as con:
        schemas = {
            s for (s,) in con.execute("select distinct schema_name from duckdb_tables()").fetchall()
        }
        assert schemas == {*SERVED_SCHEMAS, "meta"}
        tables = con.execute(
            "select schema_name || '.' || table_name, comment from duckdb_tables() "
            "where schema_name in ('marts', 'reference')"
        ).fetchall()
        names = {t for t, _ in tables}
        assert {"marts.fct_workload_usage_daily", "marts.dim_workloads"} <= names
        assert {"reference.gpu_prices", "reference.nodepool_capacity"} <= names
        assert all(comment for _, comment in tables), "every table is described"
        undocumented = con.execute(
            "select schema_name || '.' || table_name || '.' || column_name from duckdb_columns() "
            "where schema_name in ('marts', 'reference') and comment is null"
        ).fetchall()
        assert undocumented == []
        catalogue = dict(con.execute("select table_name, date_column from meta.tables").fetchall())
        assert catalogue["fct_workload_usage_daily"] == "usage_date"
    with duckdb.connect(str(pipeline_run.paths.warehouse), read_only=True) as wh:
        expected = wh.execute("select sum(total_cost) from marts.fct_workload_usage_daily")
        total = expected.fetchone()
    with duckdb.connect(str(serving_path(pipeline_run.paths)), read_only=True) as con:
        assert (
            con.execute("select sum(total_cost) from marts.fct_workload_usage_daily").fetchone()
            == total
        )


def test_a_duckdb_1_4_client_reads_the_serving_database(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    python = tool_venv(tmp_path / "duckdb14", sys.executable, "duckdb>=1.4,<1.5")
    script = (
        "import duckdb, sys, json; con = duckdb.connect(sys.argv[1], read_only=True); "
        "print(json.dumps([duckdb.__version__, con.execute('select sum(total_cost), count(*) "
        "from marts.fct_workload_usage_daily').fetchone()]))"
    )
    proc = subprocess.run(
        [str(python), "-c", script, str(serving_path(pipeline_run.paths))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    version, (total, rows) = json.loads(proc.stdout)
    assert version.startswith("1.4.")
    with duckdb.connect(str(serving_path(pipeline_run.paths)), read_only=True) as con:
        assert [total, rows] == list(
            con.execute(
                "select sum(total_cost), count(*) from marts.fct_workload_usage_daily"
            ).fetchone()
            or ()
        )


def test_sqlalchemy_reflects_tables_columns_and_descriptions(pipeline_run: PipelineRun) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(
        f"duckdb:///{serving_path(pipeline_run.paths)}", connect_args={"read_only": True}
    )
    try:
        inspector = sa.inspect(engine)
        assert "fct_workload_usage_daily" in inspector.get_table_names(schema="marts")
        columns = {c["name"]: c for c in inspector.get_columns("fct_workload_usage_daily", "marts")}
        assert {"usage_date", "workload_id", "total_cost", "idle_gpu_cost"} <= set(columns)
        assert isinstance(columns["total_cost"]["type"], sa.Float)
        assert columns["total_cost"]["comment"]
        assert inspector.get_table_comment("fct_workload_usage_daily", "marts")["text"]
        with engine.connect() as con:
            rows = con.execute(
                sa.text("select count(*) from marts.rpt_chargeback_monthly")
            ).scalar_one()
        assert rows > 0
    finally:
        engine.dispose()
