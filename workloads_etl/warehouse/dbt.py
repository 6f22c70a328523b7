"""The dbt project that turns the warehouse's ``raw`` tables into the reporting marts.

Plain Python, no Dagster (its Dagster view is :mod:`workloads_etl.defs.transform.project`).
The project ships with the package (``workloads_etl/dbt_project``
in a wheel; the repository's top-level ``dbt/`` in a checkout). Everything dbt writes lives
under the data directory (``<data>/.dbt``): its profile, generated from :class:`DataPaths`
so the warehouse location is passed explicitly, its target (manifest, partial parse, run
results) and its logs. Every invocation gets the vars dbt needs (:func:`dbt_vars`), among
them the metric types the pipeline fetches.

The days a run reprocesses (its window) are data, not vars: the runner writes them to
:data:`WINDOW_TABLE` in the warehouse right before dbt starts (:func:`write_window`), and the
macros of ``dbt/macros/usage_window.sql`` read them when a node runs. So every invocation of
the pipeline passes the same ``--vars``, profile and target, and dbt parses the project only
partially (what changed) instead of fully on every run. After dbt ends the window is cleared,
so dbt run by hand processes every day (or the days of its vars start_date / end_date).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import duckdb

from workloads_etl.children import die_with_parent
from workloads_etl.lake.metric_types import metric_columns
from workloads_etl.settings import DataPaths, duckdb_memory_limit
from workloads_etl.warehouse.spark import spark_conf

PROFILE = "workloads_etl"
TARGET = "warehouse"
# The same project built by Spark over the same lake (dbt-spark, session method; see
# workloads_etl.warehouse.spark). DuckDB's target stays the default.
SPARK_TARGET = "spark"
# The window of the dbt invocation under way: one row (start_date, end_date, both inclusive,
# and full_build_through); no row (or a null bound) means every day. Written by the runner,
# read by the window macros. full_build_through bounds what a model built for the first time
# (no table yet) reads: set on every build but the last of a window cut in several
# (split_window), whose later builds add the days after it incrementally; null otherwise
# (a first build reads every day).
WINDOW_TABLE = "raw._dbt_window"
WINDOW_COLUMNS = "start_date date, end_date date, full_build_through date"
# DuckDB's threads in dbt (its `threads` setting; dbt's own threads are the profile's). One
# thread aggregates a day's samples within a memory limit that two threads overrun: at
# 10,000 workloads a day the pivot of samples fails at 256 MB with two threads and builds
# with one, the whole build taking 20 s instead of 18.
DUCKDB_THREADS = 1
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def dbt_project_dir() -> Path:
    """The dbt project: packaged inside the installed wheel, or ``dbt/`` of a checkout."""
    packaged = _PACKAGE_DIR / "dbt_project"
    if (packaged / "dbt_project.yml").is_file():
        return packaged
    checkout = _PACKAGE_DIR.parent / "dbt"
    if (checkout / "dbt_project.yml").is_file():
        return checkout
    raise FileNotFoundError(
        f"the dbt project is missing: neither {packaged} nor {checkout} holds a dbt_project.yml"
    )


@dataclass(frozen=True)
class DbtOutcome:
    """How a dbt invocation ended: its exit code, its log events (as dbt's JSON log lines)
    and what it wrote to stderr."""

    returncode: int
    events: list[dict[str, Any]]
    stderr: str


class DbtRunError(RuntimeError):
    """A dbt invocation that did not succeed; the message names the failing nodes."""

    def __init__(self, args: Sequence[str], problems: Sequence[str]) -> None:
        self.args_used = list(args)
        self.problems = list(problems)
        detail = "\n".join(f"  - {p}" for p in problems) or "  - (no detail reported)"
        super().__init__(f"dbt {' '.join(args)} failed:\n{detail}")


def dbt_vars(**extra: Any) -> dict[str, Any]:
    """The ``--vars`` of every invocation of the pipeline: the metric types, and the ``extra``
    vars as given (the user's contract). Never the run's days: those are data
    (:func:`write_window`), so the vars, and with them dbt's partial parse, stay the same from
    one run to the next."""
    out: dict[str, Any] = {"metric_columns": metric_columns()}
    out.update(extra)
    return out


def dbt_vars_json(user_vars: dict[str, Any] | None = None) -> str:
    """:func:`dbt_vars` as the text passed to ``--vars``: the same text on every invocation
    with the same user vars (keys sorted)."""
    return json.dumps(dbt_vars(**(user_vars or {})), sort_keys=True)


def usage_window(days: Sequence[date] | None) -> tuple[date, date] | None:
    """The inclusive range of days an invocation (re)processes: the span of ``days`` (days
    between the first and the last are reprocessed too, harmlessly: the daily models replace
    whole days); ``None`` for every day."""
    if days is None:
        return None
    if not days:
        raise ValueError("a window needs at least one day; pass None to process all days")
    for d in days:
        if not isinstance(d, date):
            raise TypeError(f"a window takes datetime.date values, got {type(d).__name__}")
    return min(days), max(days)


def write_window(
    warehouse: Path, window: tuple[date, date] | None, full_build_through: date | None = None
) -> None:
    """Record the window of the next dbt invocation in :data:`WINDOW_TABLE` of ``warehouse``
    (``None``: every day), in one transaction; ``full_build_through`` bounds what a model
    built for the first time reads (see :data:`WINDOW_TABLE`). The caller is the
    warehouse's single writer and calls this before dbt starts (the connection is closed
    when it returns)."""
    if full_build_through is not None and window is None:
        raise ValueError("full_build_through bounds a window's first builds: pass a window")
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("begin transaction")
        con.execute(f"create schema if not exists {WINDOW_TABLE.split('.')[0]}")
        con.execute(f"create table if not exists {WINDOW_TABLE} ({WINDOW_COLUMNS})")
        # a warehouse of an earlier version has the table without the last column
        con.execute(f"alter table {WINDOW_TABLE} add column if not exists full_build_through date")
        con.execute(f"delete from {WINDOW_TABLE}")  # noqa: S608
        if window is not None:
            con.execute(
                f"insert into {WINDOW_TABLE} values (?, ?, ?)",  # noqa: S608
                [*window, full_build_through],
            )
        con.execute("commit")
    finally:
        con.close()


def clear_window(warehouse: Path) -> None:
    """Forget the window once dbt has ended, so that dbt run by hand processes every day; a
    warehouse that cannot be opened (missing, held by another process) keeps it, harmlessly:
    the next run of the pipeline writes its own window first."""
    if not warehouse.is_file():
        return
    with contextlib.suppress(duckdb.Error):
        write_window(warehouse, None)


def duckdb_temp_dir(paths: DataPaths) -> Path:
    """Where DuckDB spills what does not fit in its memory limit (emptied by DuckDB)."""
    return paths.root / ".duckdb_tmp"


def profile_text(
    warehouse: Path,
    *,
    memory_limit: str,
    temp_directory: Path,
    threads: int = 2,
    duckdb_threads: int = DUCKDB_THREADS,
    spark_conf: dict[str, str] | None = None,
) -> str:
    """The dbt profile of the DuckDB database at ``warehouse`` (UTC session): dbt runs
    ``threads`` nodes at a time in one DuckDB instance bounded to ``memory_limit`` and
    ``duckdb_threads`` threads, which spills to ``temp_directory`` beyond that. Insertion
    order is not preserved (every model that needs an order says so), which lets DuckDB
    stream large inserts instead of buffering them. With ``spark_conf``, the profile also
    has the target :data:`SPARK_TARGET`: a Spark session of that configuration in dbt's
    process (:func:`workloads_etl.warehouse.spark.spark_conf`)."""
    profile: dict[str, Any] = {
        PROFILE: {
            "target": TARGET,
            "outputs": {
                TARGET: {
                    "type": "duckdb",
                    "path": str(warehouse),
                    "threads": threads,
                    # when dbt opens the database (not SET on each of its cursors: DuckDB
                    # refuses to move its temporary directory once it spilled there)
                    "config_options": {
                        "memory_limit": memory_limit,
                        "threads": duckdb_threads,
                        "temp_directory": str(temp_directory),
                        "preserve_insertion_order": False,
                    },
                    "settings": {"TimeZone": "UTC"},
                }
            },
        }
    }
    if spark_conf is not None:
        profile[PROFILE]["outputs"][SPARK_TARGET] = {
            "type": "spark",
            "method": "session",
            "host": "localhost",  # required by dbt-spark, unused by the session method
            "schema": "default",
            "threads": 1,
            "server_side_parameters": dict(spark_conf),
        }
    # JSON is YAML: no YAML writer needed, and no value is ever templated.
    return json.dumps(profile, indent=2) + "\n"


def profiles_dir(
    paths: DataPaths, warehouse: Path | None = None, *, memory_limit: str | None = None
) -> Path:
    """Write the profile of ``warehouse`` (default: the warehouse of ``paths``) when it
    changed, and return its directory. ``memory_limit`` is DuckDB's (default: the pipeline
    setting, :func:`~workloads_etl.settings.duckdb_memory_limit`)."""
    directory = paths.dbt if warehouse is None else paths.dbt / "other-profile"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "profiles.yml"
    text = profile_text(
        warehouse or paths.warehouse,
        memory_limit=memory_limit or duckdb_memory_limit(),
        temp_directory=duckdb_temp_dir(paths),
        spark_conf=spark_conf(paths),
    )
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        tmp = directory / f".profiles.yml.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return directory


def target_dir(paths: DataPaths, dbt_target: str = TARGET) -> Path:
    """dbt's target directory (manifest, partial parse) of a profile target: one each, so
    that building on Spark keeps the DuckDB target's partial parse."""
    return paths.dbt / ("target" if dbt_target == TARGET else f"target-{dbt_target}")


def log_dir(paths: DataPaths) -> Path:
    """dbt's log file (``dbt.log``) of every invocation, the runner's and Dagster's."""
    return paths.dbt / "logs"


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def dbt_launcher() -> str:
    """The dbt executable to hand to dagster-dbt: dbt tied to the life of the run
    (:func:`workloads_etl.children.exec_dbt`), where installed."""
    candidate = Path(sys.executable).with_name("workloads-etl-dbt")
    return str(candidate) if candidate.exists() else dbt_executable()


def _problems(events: Sequence[dict[str, Any]]) -> list[str]:
    """The error messages of an invocation, without dbt's stack traces (the log has them)."""
    out = []
    for event in events:
        info = event.get("info", {})
        if info.get("name") == "MainStackTrace":
            continue
        if info.get("level") == "error" and info.get("msg"):
            out.append(str(info["msg"]).strip())
    return out


# The commands that run nodes, whose window macros read the window.
_WINDOWED_COMMANDS = frozenset({"build", "run", "test", "compile", "show", "seed", "retry"})


def invocation_args(
    paths: DataPaths,
    *,
    warehouse: Path | None = None,
    extra_vars: dict[str, Any] | None = None,
    memory_limit: str | None = None,
    dbt_target: str = TARGET,
) -> list[str]:
    """The arguments every dbt invocation of the pipeline shares, the runner's and Dagster's:
    the profile and target (its directory, written by :func:`profiles_dir`), the log
    directory and the vars. dbt keeps its partial parse only while the vars, the profile and
    the target given on the command line stay the same: these are the same text on every
    run."""
    return [
        "--profiles-dir",
        str(profiles_dir(paths, warehouse, memory_limit=memory_limit)),
        "--profile",
        PROFILE,
        "--target",
        dbt_target,
        "--log-path",
        str(log_dir(paths)),
        "--vars",
        dbt_vars_json(extra_vars),
    ]


def run_dbt(
    args: Sequence[str],
    paths: DataPaths,
    *,
    days: Sequence[date] | None = None,
    full_build_through: date | None = None,
    extra_vars: dict[str, Any] | None = None,
    log: TextIO | None = None,
    raise_on_failure: bool = True,
    warehouse: Path | None = None,
    target: Path | None = None,
    project: Path | None = None,
    dbt_target: str = TARGET,
    in_process: bool = False,
) -> DbtOutcome:
    """Run ``dbt <args>`` on the warehouse at ``paths.warehouse``, in a subprocess (or in
    this process: ``in_process``, see :func:`_invoke_in_process`).

    The vars are :func:`dbt_vars` of ``extra_vars``; the window of ``days`` (default: every
    day) is written to the warehouse before a command that runs nodes and cleared after it,
    with ``full_build_through`` (see :data:`WINDOW_TABLE`).
    dbt's messages go to ``log`` as text (never to the terminal). ``warehouse`` and
    ``target`` point dbt at another database and target directory (the docs use a copy of
    the serving database); ``project`` at another copy of the dbt project.
    ``dbt_target`` :data:`SPARK_TARGET` builds the project on Spark over the lake of ``paths``
    instead (:mod:`workloads_etl.warehouse.spark`: its ``raw`` tables are loaded from the
    lake and the window recorded in the same process, right before dbt runs).
    Raises :class:`DbtRunError` naming the failures unless ``raise_on_failure`` is false.
    """
    if in_process and dbt_target == SPARK_TARGET:
        raise ValueError("dbt on Spark runs in a process of its own (its Spark session's)")
    paths.root.mkdir(parents=True, exist_ok=True)
    window = usage_window(days)
    database = warehouse or paths.warehouse
    spark = dbt_target == SPARK_TARGET
    if spark:
        bounds = [] if window is None else [f"--start-date={window[0]}", f"--end-date={window[1]}"]
        command = [
            sys.executable,
            "-m",
            "workloads_etl.warehouse.spark",
            f"--data-dir={paths.root}",
            *bounds,
            "--",
        ]
    else:
        command = [dbt_executable()]
    dbt_args = [
        *args,
        *invocation_args(paths, warehouse=warehouse, extra_vars=extra_vars, dbt_target=dbt_target),
        "--project-dir",
        str(project or dbt_project_dir()),
        "--target-path",
        str(target or target_dir(paths, dbt_target)),
        "--log-format",
        "json",
        "--log-format-file",
        "text",
        "--no-use-colors",
    ]
    windowed = bool(args) and args[0] in _WINDOWED_COMMANDS and not spark
    if windowed:
        write_window(database, window, full_build_through)
    try:
        if in_process:
            outcome = _invoke_in_process(dbt_args)
        else:
            proc = subprocess.run(
                [*command, *dbt_args],
                capture_output=True,
                text=True,
                env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
                check=False,
                cwd=paths.root,
                preexec_fn=die_with_parent(),
            )
            outcome = DbtOutcome(
                proc.returncode, [_event(line) for line in proc.stdout.splitlines()], proc.stderr
            )
    finally:
        if windowed and window is not None:
            clear_window(database)
    if log is not None:
        for event in outcome.events:
            log.write(str(event.get("info", {}).get("msg", "")) + "\n")
        log.write(outcome.stderr)
    if raise_on_failure and outcome.returncode != 0:
        problems = _problems(outcome.events) or [
            line for line in outcome.stderr.splitlines()[-5:] if line
        ]
        raise DbtRunError(args, problems)
    return outcome


def _event(line: str) -> dict[str, Any]:
    """One line of dbt's JSON log on stdout, as its event (a line of text as an info event)."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    return event if isinstance(event, dict) else {"info": {"level": "info", "msg": line}}


def _invoke_in_process(args: Sequence[str]) -> DbtOutcome:
    """``dbt <args>`` in this process (dbt's ``dbtRunner``), its events as the subprocess
    prints them at the info level and above.

    For a process that imports dbt already and calls it many times (the model tests): each
    call saves starting Python and importing dbt, about 5 s of CPU. Runs of the pipeline keep
    dbt in a process of its own, whose memory (DuckDB's) is returned when it ends and whose
    life is tied to the run's. Calls must not overlap (dbt keeps global state).
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.cli.main import dbtRunner

    events: list[dict[str, Any]] = []

    def collect(msg: Any) -> None:
        if msg.info.level != "debug":
            info = {"name": msg.info.name, "level": msg.info.level, "msg": msg.info.msg}
            events.append({"info": info})

    try:
        # the events reach ``collect``, nothing is printed, the log file is as a subprocess's
        quiet = ["--log-level", "none", "--log-level-file", "debug"]
        result = dbtRunner(callbacks=[collect]).invoke([*args, *quiet])
    finally:
        # dbt-duckdb keeps the database open after dbt ends, for a next call in this process;
        # closed, the file can be opened again here (with other settings) and by others.
        environment = getattr(DuckDBConnectionManager, "_ENV", None)
        if environment is not None:
            environment.close()
        DuckDBConnectionManager.close_all_connections()
    if result.exception is not None:
        return DbtOutcome(2, events, f"{type(result.exception).__name__}: {result.exception}\n")
    return DbtOutcome(0 if result.success else 1, events, "")


# -- windows of bounded size ----------------------------------------------------------------


def samples_by_day(warehouse: Path, window: tuple[date, date]) -> dict[date, int]:
    """The metric samples the warehouse holds for each day of ``window`` (days without any
    are absent). The caller is the warehouse's single writer."""
    if not warehouse.is_file():
        return {}
    con = duckdb.connect(str(warehouse))
    try:
        rows = con.execute(
            "select usage_date, count(*) from raw.workload_metrics "
            "where usage_date between ? and ? group by usage_date",
            list(window),
        ).fetchall()
    except duckdb.CatalogException:  # no metrics loaded yet
        return {}
    finally:
        con.close()
    return {day: int(n) for day, n in rows}


def split_window(
    window: tuple[date, date] | None, samples: dict[date, int], limit: int
) -> list[tuple[date, date] | None]:
    """``window`` cut into consecutive windows of at most ``limit`` samples each (a day with
    more is a window of its own), oldest first: one dbt build each, so a backfill of any
    length builds within DuckDB's memory limit. ``None`` (every day) is never cut.

    Every build but the last is run with ``full_build_through`` its window's end (see
    :data:`WINDOW_TABLE`): on a fresh warehouse the first build creates the models from the
    days up to its end only, not from every day the run loaded."""
    if window is None:
        return [None]
    first, last = window
    out: list[tuple[date, date] | None] = []
    start, held = first, 0
    day = first
    while day <= last:
        n = samples.get(day, 0)
        if day > start and held + n > limit:
            out.append((start, day - timedelta(days=1)))
            start, held = day, 0
        held += n
        day += timedelta(days=1)
    out.append((start, last))
    return out
