"""The dbt project that turns the warehouse's ``raw`` tables into the reporting marts.

Plain Python, no Dagster: ``DBT_PROJECT_DIR`` locates the project, ``dbt_vars`` builds the
variables of an incremental run, ``run_dbt`` invokes dbt in-process against the warehouse of
a :class:`~workloads_etl.config.DataPaths`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from dbt.cli.main import dbtRunner, dbtRunnerResult

from workloads_etl.config import DATA_DIR_ENV, DataPaths

DBT_PROJECT_DIR: Path = Path(__file__).resolve().parent.parent / "dbt"

_ENV_LOCK = threading.Lock()


class DbtRunError(RuntimeError):
    """A dbt invocation that did not succeed; the message names the failing nodes."""

    def __init__(self, args: Sequence[str], problems: Sequence[str]) -> None:
        self.args_used = list(args)
        self.problems = list(problems)
        detail = "\n".join(f"  - {p}" for p in problems) or "  - (no detail reported)"
        super().__init__(f"dbt {' '.join(args)} failed:\n{detail}")


def dbt_vars(days: Sequence[date]) -> dict[str, Any]:
    """The ``--vars`` of a run that (re)processes ``days``: the inclusive range they span.

    Days between the first and the last one are reprocessed too (harmless: the daily models
    replace whole days). An empty sequence is an error: to process everything, pass no vars.
    """
    if not days:
        raise ValueError("dbt_vars needs at least one day; run without vars to process all days")
    for d in days:
        if not isinstance(d, date):
            raise TypeError(f"dbt_vars expects datetime.date values, got {type(d).__name__}")
    return {"start_date": min(days).isoformat(), "end_date": max(days).isoformat()}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for an in-process dbt invocation, then restore them."""
    with _ENV_LOCK:
        previous = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, old in previous.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old


def _problems(result: dbtRunnerResult) -> list[str]:
    problems: list[str] = []
    if result.exception is not None:
        problems.append(f"{type(result.exception).__name__}: {result.exception}")
    node_results = getattr(result.result, "results", None) or []
    for node_result in node_results:
        status = str(getattr(node_result, "status", ""))
        if status.lower() in {"error", "fail", "runtime error", "skipped"}:
            node = getattr(node_result, "node", None)
            name = getattr(node, "unique_id", None) or "<unknown node>"
            message = getattr(node_result, "message", None) or ""
            problems.append(f"{name}: {status} {message}".strip())
    return problems


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation.

    dbt-duckdb caches its database handle at class level, so after an in-process run the
    warehouse file stays open with dbt's configuration: other readers in the same process
    would fail ("different configuration") and a copy of the file would miss the WAL.
    """
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    environment = getattr(DuckDBConnectionManager, "_ENV", None)
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()


def run_dbt(
    args: list[str],
    paths: DataPaths,
    *,
    target_path: Path | None = None,
    raise_on_failure: bool = True,
) -> dbtRunnerResult:
    """Run ``dbt <args>`` in-process on the warehouse at ``paths.warehouse``.

    The project and profiles directories are this project's ``dbt/``; the warehouse location
    reaches the profile through ``WORKLOADS_ETL_DATA_DIR``. ``target_path`` redirects dbt's
    artifacts and logs (default: ``dbt/target`` and ``dbt/logs``). Raises
    :class:`DbtRunError` naming the failed nodes unless ``raise_on_failure`` is false.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    full_args = [
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    env = {DATA_DIR_ENV: str(paths.root)}
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
        env["DBT_LOG_PATH"] = str(target_path / "logs")
    with _environment(env):
        try:
            result = dbtRunner().invoke(full_args)
        finally:
            _release_warehouse()
    if raise_on_failure and not result.success:
        raise DbtRunError(args, _problems(result))
    return result
