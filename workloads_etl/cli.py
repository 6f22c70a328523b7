"""``workloads-etl``: a thin command line over the library and the Dagster definitions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout, suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workloads_etl.config import DATA_DIR_ENV, DataPaths

# Reports keep their columns when written to a file or a pipe.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)

RUNAI_ENV = ("RUNAI_BASE_URL", "RUNAI_CLIENT_ID", "RUNAI_CLIENT_SECRET", "RUNAI_TOKEN")
DEMO_DAYS = 7


class PipelineFailed(click.ClickException):
    exit_code = 1


def _parse_day(_: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date of the form YYYY-MM-DD") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=DATA_DIR_ENV,
    default="data",
    show_default=True,
    help=f"Root of raw/, lake/ and warehouse.duckdb (env {DATA_DIR_ENV}).",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path) -> None:
    """Run:ai workloads to a DuckDB warehouse of GPU utilisation, idle waste and cost."""
    paths = DataPaths(data_dir.resolve())
    os.environ[DATA_DIR_ENV] = str(paths.root)
    ctx.obj = paths
    _quiet_library_warnings()


def _quiet_library_warnings() -> None:
    """Dagster's notices about its own beta and superseded APIs are for developers of this
    project, not for its users."""
    import warnings

    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

    for category in (BetaWarning, PreviewWarning, SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


# --------------------------------------------------------------------------------------------
# running the graph


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@contextmanager
def _dagster_instance() -> Iterator[Any]:
    """The persistent instance of ``$DAGSTER_HOME`` when set (runs show in the UI), else an
    ephemeral one."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if home:
        Path(home).mkdir(parents=True, exist_ok=True)
        _install_instance_config(Path(home))
        with dg.DagsterInstance.get() as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def _install_instance_config(home: Path) -> None:
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(Path(__file__).parent / "defs" / "dagster.yaml", target)


def run_days(days: Sequence[date], *, show_progress: bool = True) -> str:
    """Materialise the whole graph for ``days`` in one run; returns the run id."""
    import uuid

    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from workloads_etl.defs import build_definitions

    job = build_definitions().resolve_job_def("daily_refresh")
    run_id = str(uuid.uuid4())
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
    }
    # The terminal shows progress and failures; every event, warnings included, stays in the
    # Dagster event log (the UI, with DAGSTER_HOME set).
    run_config = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    with _dagster_instance() as instance:
        result: dict[str, Any] = {}

        def execute() -> None:
            try:
                result["r"] = job.execute_in_process(
                    instance=instance,
                    run_id=run_id,
                    tags=tags,
                    run_config=run_config,
                    raise_on_error=False,
                )
            except BaseException as exc:  # reported below, in the main thread
                result["e"] = exc

        log_path = DataPaths.from_env().root / "logs" / f"run-{run_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # dbt's own output goes to the run's log file, the terminal shows progress.
        with log_path.open("w", encoding="utf-8") as log_file, redirect_stdout(log_file):
            worker = threading.Thread(target=execute, name="pipeline-run", daemon=True)
            worker.start()
            if show_progress:
                _follow(instance, run_id, worker, total_steps=len(job.graph.node_defs))
            worker.join()
        console.print(f"run log: {log_path}")
        if "e" in result:
            raise PipelineFailed(f"the run could not start: {result['e']}")
        run = result["r"]
        if not run.success:
            failures = [
                f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
                for e in run.all_events
                if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
            ]
            raise PipelineFailed("the run failed:\n  " + "\n  ".join(failures or ["see logs"]))
        _report_checks(instance, run_id)
    return run_id


def _follow(instance: Any, run_id: str, worker: threading.Thread, total_steps: int) -> None:
    """Show step progress and the assets' own progress lines while the run executes."""
    seen = 0
    done_steps: set[str] = set()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=total_steps)
        while worker.is_alive():
            time.sleep(0.25)
            records = instance.all_logs(run_id)
            for entry in records[seen:]:
                event = entry.dagster_event
                if event is not None and event.is_step_success and event.step_key:
                    done_steps.add(event.step_key)
                elif event is not None and event.is_step_start:
                    progress.update(task, description=str(event.step_key))
                elif event is None and entry.user_message:
                    progress.update(task, description=entry.user_message[:90])
            seen = len(records)
            progress.update(task, completed=len(done_steps))
        progress.update(task, completed=len(done_steps), description="done")


def _report_checks(instance: Any, run_id: str) -> None:
    import dagster as dg

    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if not evaluation.passed:
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    if failed:
        console.print(f"[yellow]checks that did not pass:[/] {', '.join(failed)}")


# --------------------------------------------------------------------------------------------
# reports


def summary_table(paths: DataPaths, start: date, end: date) -> Table:
    """Cost and utilisation per department over [start, end], from the marts."""
    from workloads_etl.warehouse.loader import Warehouse

    with Warehouse.connect_read_only(paths) as con:
        rows = con.execute(
            """
            select department_name,
                   sum(allocated_gpu_hours), sum(used_gpu_hours), sum(idle_gpu_hours),
                   100 * sum(used_gpu_hours) / nullif(sum(allocated_gpu_hours), 0),
                   sum(total_cost), sum(idle_gpu_cost), any_value(currency)
            from marts.fct_workload_usage_daily
            where usage_date between ? and ?
            group by all order by 6 desc
            """,
            [start, end],
        ).fetchall()
    currency = next((r[-1] for r in rows if r[-1]), "")
    table = Table(title=f"GPU usage and cost per department, {start} to {end} (UTC days)")
    table.add_column("department")
    for col in (
        "GPU-h allocated",
        "GPU-h used",
        "GPU-h idle",
        "util %",
        f"cost {currency}",
        f"idle cost {currency}",
    ):
        table.add_column(col, justify="right")
    totals = [0.0, 0.0, 0.0, 0.0, 0.0]  # allocated, used, idle, cost, idle cost
    for dept, alloc, used, idle, util, cost, idle_cost, _ in rows:
        vals = [alloc or 0.0, used or 0.0, idle or 0.0, cost or 0.0, idle_cost or 0.0]
        totals = [t + v for t, v in zip(totals, vals, strict=True)]
        table.add_row(dept or "(none)", *_cells(vals, util))
    table.add_section()
    util_total = 100 * totals[1] / totals[0] if totals[0] else None
    table.add_row("total", *_cells(totals, util_total), style="bold")
    return table


def _cells(vals: list[float], util: float | None) -> list[str]:
    alloc, used, idle, cost, idle_cost = vals
    return [
        f"{alloc:,.1f}",
        f"{used:,.1f}",
        f"{idle:,.1f}",
        "-" if util is None else f"{util:.1f}",
        f"{cost:,.2f}",
        f"{idle_cost:,.2f}",
    ]


# --------------------------------------------------------------------------------------------
# commands


@main.command()
@click.option("--days", "n_days", default=DEMO_DAYS, show_default=True, type=click.IntRange(1, 14))
@click.option("--workloads", default=300, show_default=True, type=click.IntRange(10, 5000))
@click.option("--seed", default=7, show_default=True, type=int)
@click.pass_obj
def demo(paths: DataPaths, n_days: int, workloads: int, seed: int) -> None:
    """Run the whole graph for the last days against a simulated control plane."""
    from workloads_etl.simulator import SimulatorConfig, SimulatorServer

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = days_between((today - timedelta(days=n_days)).date(), (today - timedelta(days=1)).date())
    config = SimulatorConfig(seed=seed, workloads=workloads, days=14, now=today)
    started = time.monotonic()
    console.print(
        f"Simulated Run:ai control plane: {workloads} workloads, "
        f"clock frozen at {today:%Y-%m-%d %H:%M} UTC"
    )
    with SimulatorServer(config, in_process=False) as sim:
        console.print(f"  serving at {sim.base_url}")
        env = {
            "RUNAI_BASE_URL": sim.base_url,
            "RUNAI_CLIENT_ID": sim.client_id,
            "RUNAI_CLIENT_SECRET": sim.client_secret,
        }
        with _environment(env, unset=("RUNAI_TOKEN",)):
            paths.ensure()
            console.print(f"Running the pipeline for {days[0]} .. {days[-1]} into {paths.root}")
            run_id = run_days(days)
    out.print(summary_table(paths, days[0], days[-1]))
    out.print(f"warehouse: {paths.warehouse}")
    out.print(f"run: {run_id}   wall time: {time.monotonic() - started:.0f} s")
    out.print(
        "query it:  workloads-etl sql 'from marts.rpt_chargeback_monthly'"
        f"  or  duckdb -readonly {paths.warehouse}"
    )


@main.command()
@click.option("--start", required=True, callback=_parse_day, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, callback=_parse_day, help="Last UTC day (inclusive).")
@click.pass_obj
def run(paths: DataPaths, start: date, end: date) -> None:
    """Run the graph for the days START..END against the configured control plane."""
    if end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    if end >= datetime.now(UTC).date():
        raise click.BadParameter("days must be complete: --end must be before today (UTC)")
    _check_runai_env()
    paths.ensure()
    days = days_between(start, end)
    run_id = run_days(days)
    out.print(summary_table(paths, start, end))
    out.print(f"warehouse: {paths.warehouse}   run: {run_id}")


def _check_runai_env() -> None:
    from workloads_etl.runai import RunaiSettings
    from workloads_etl.runai.errors import ConfigurationError

    try:
        RunaiSettings.from_env()
    except ConfigurationError as exc:
        raise click.UsageError(f"control plane configuration: {exc}") from None


@main.command()
@click.argument("query")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1))
@click.pass_obj
def sql(paths: DataPaths, query: str, limit: int) -> None:
    """Run a read-only SQL query on the warehouse and print the result."""
    import duckdb

    from workloads_etl.warehouse.loader import Warehouse

    if not paths.warehouse.exists():
        raise click.UsageError(f"no warehouse at {paths.warehouse}: run `workloads-etl demo` first")
    try:
        with Warehouse.connect_read_only(paths) as con:
            cursor = con.execute(query)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(limit)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise click.ClickException(
                f"{paths.warehouse} is being written by a pipeline run; try again when it "
                "finishes, or query the Parquet lake under "
                f"{paths.lake} with read_parquet(..., hive_partitioning = true)"
            ) from None
        raise click.ClickException(str(exc)) from None
    except duckdb.Error as exc:
        raise click.ClickException(str(exc)) from None
    table = Table(*names)
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    out.print(table)


@main.command()
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(["workload_snapshots", "deleted_workloads", "workload_metrics", "telemetry"]),
)
@click.option("--day", required=True, callback=_parse_day, help="UTC day, YYYY-MM-DD.")
@click.option("--run-id", default=None, help="Raw run to use (default: the latest).")
@click.option("--load/--no-load", default=True, help="Reload the warehouse partition too.")
@click.pass_obj
def renormalise(paths: DataPaths, dataset: str, day: date, run_id: str | None, load: bool) -> None:
    """Rebuild a lake partition from its raw files, without calling the API."""
    from workloads_etl.lake.normalise import normalise_partition
    from workloads_etl.lake.raw import RawRunNotFoundError
    from workloads_etl.warehouse.loader import Warehouse

    try:
        result = normalise_partition(paths, dataset, day, run_id)
    except RawRunNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    out.print(f"{dataset} {day}: {result.rows} rows, {result.quarantined} quarantined")
    if load:
        with Warehouse.open(paths) as wh:
            loaded = wh.load_partition(dataset, day)
        out.print(f"raw.{dataset} {day}: {loaded.rows} rows loaded")


@main.command()
@click.option("--serve/--no-serve", default=False, help="Serve the docs site after generating.")
@click.option("--port", default=8580, show_default=True, type=int)
@click.pass_obj
def docs(paths: DataPaths, serve: bool, port: int) -> None:
    """Generate the dbt docs of the warehouse models (dbt/target/index.html)."""
    from workloads_etl.transform import DBT_PROJECT_DIR, run_dbt

    run_dbt(["docs", "generate"], paths)
    out.print(f"docs: {DBT_PROJECT_DIR / 'target' / 'index.html'}")
    if serve:
        run_dbt(["docs", "serve", "--port", str(port), "--host", "127.0.0.1"], paths)


@main.command()
@click.option("--port", default=3000, show_default=True, type=int, help="Dagster UI port.")
@click.option("--workloads", default=300, show_default=True, type=click.IntRange(10))
@click.pass_obj
def dev(paths: DataPaths, port: int, workloads: int) -> None:
    """The Dagster UI on 127.0.0.1, with a simulated control plane behind it."""
    from workloads_etl.simulator import SimulatorConfig, SimulatorServer

    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    _install_instance_config(home)
    with SimulatorServer(SimulatorConfig(workloads=workloads), in_process=False) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "RUNAI_BASE_URL": sim.base_url,
            "RUNAI_CLIENT_ID": sim.client_id,
            "RUNAI_CLIENT_SECRET": sim.client_secret,
        }
        env.pop("RUNAI_TOKEN", None)
        console.print(
            f"simulated control plane at {sim.base_url}; Dagster UI at http://127.0.0.1:{port}"
        )
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
        with suppress(KeyboardInterrupt):
            subprocess.run(cmd, env=env, check=False)


def _simulate_command() -> click.Command:
    from workloads_etl.simulator.__main__ import main as simulate_main

    return simulate_main


main.add_command(_simulate_command(), "simulate")


@contextmanager
def _environment(values: dict[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    keys = [*values, *unset]
    previous = {k: os.environ.get(k) for k in keys}
    os.environ.update(values)
    for k in unset:
        os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
