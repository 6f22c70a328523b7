"""``workloads-etl``: a thin command line over the library and the Dagster definitions."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from workloads_etl.lake.datasets import EXTRACTED
from workloads_etl.settings import PipelineSettings, RunaiEnvironment, SettingsError

# Reports keep their columns when written to a file or a pipe.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)
out = Console(width=None if sys.stdout.isatty() else 120)

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
    default=None,
    help="Root of raw/, lake/ and warehouse.duckdb [default: $WORKLOADS_ETL_DATA_DIR or ./data].",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Run:ai workloads to a DuckDB warehouse of GPU utilisation, idle waste and cost."""
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    try:
        ctx.obj = PipelineSettings.read(**overrides)
    except SettingsError as exc:
        raise click.UsageError(f"configuration: {exc}") from None
    _quiet_library_warnings()


def _quiet_library_warnings() -> None:
    """Dagster's notices about its own beta and superseded APIs are for developers of this
    project, not for its users."""
    import warnings

    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

    for category in (BetaWarning, PreviewWarning, SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


# --------------------------------------------------------------------------------------------
# running the graph


def _run(settings: PipelineSettings, days: list[date], resources: dict[str, Any] | None) -> str:
    """Run the graph for ``days`` with a progress display; returns the run id."""
    from workloads_etl.defs.launch import run_days

    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def show(p: Any) -> None:
            bar.update(
                task, total=p.total_steps, completed=len(p.done_steps), description=p.current
            )

        outcome = run_days(
            settings,
            days,
            dagster_home=settings.dagster_home,
            on_progress=show,
            resources=resources,
        )
        bar.update(task, description="done")
    console.print(f"run log: {outcome.log_path}")
    if not outcome.success:
        raise PipelineFailed(
            "the run failed:\n  " + "\n  ".join(outcome.failures or ["see the run log"])
        )
    if outcome.failed_checks:
        console.print(f"[yellow]checks that did not pass:[/] {', '.join(outcome.failed_checks)}")
    return outcome.run_id


def summary_table(settings: PipelineSettings, start: date, end: date) -> Table:
    """Cost and utilisation per department over [start, end], from the marts."""
    from workloads_etl.warehouse.reports import usage_by_department

    rows = usage_by_department(settings.paths, start, end)
    currency = next((r.currency for r in rows if r.currency), "")
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
    for r in rows:
        table.add_row(
            r.department,
            *_cells(
                r.allocated_gpu_hours,
                r.used_gpu_hours,
                r.idle_gpu_hours,
                r.utilisation_pct,
                r.cost,
                r.idle_cost,
            ),
        )
    table.add_section()
    alloc = sum(r.allocated_gpu_hours for r in rows)
    used = sum(r.used_gpu_hours for r in rows)
    table.add_row(
        "total",
        *_cells(
            alloc,
            used,
            sum(r.idle_gpu_hours for r in rows),
            100 * used / alloc if alloc else None,
            sum(r.cost for r in rows),
            sum(r.idle_cost for r in rows),
        ),
        style="bold",
    )
    return table


def _cells(
    alloc: float, used: float, idle: float, util: float | None, cost: float, idle_cost: float
) -> list[str]:
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
def demo(settings: PipelineSettings, n_days: int, workloads: int, seed: int) -> None:
    """Run the whole graph for the last days against a simulated control plane."""
    from workloads_etl.defs.resources import RunaiResource
    from workloads_etl.simulator import SimulatorConfig, SimulatorServer

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = days_between((today - timedelta(days=n_days)).date(), (today - timedelta(days=1)).date())
    config = SimulatorConfig(seed=seed, workloads=workloads, days=14, now=today)
    started = time.monotonic()
    console.print(
        f"Simulated Run:ai control plane: {workloads} workloads, "
        f"clock frozen at {today:%Y-%m-%d %H:%M} UTC"
    )
    paths = settings.paths.ensure()
    with SimulatorServer(config, in_process=False) as sim:
        console.print(f"  serving at {sim.base_url}")
        # The simulator's documented demo credentials, handed to the run explicitly.
        runai = RunaiResource(
            base_url=sim.base_url, client_id=sim.client_id, client_secret=sim.client_secret
        )
        console.print(f"Running the pipeline for {days[0]} .. {days[-1]} into {paths.root}")
        run_id = _run(settings, days, {"runai": runai})
    out.print(summary_table(settings, days[0], days[-1]))
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
def run(settings: PipelineSettings, start: date, end: date) -> None:
    """Run the graph for the days START..END against the configured control plane."""
    from workloads_etl.runai.errors import ConfigurationError

    if end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    if end >= datetime.now(UTC).date():
        raise click.BadParameter("days must be complete: --end must be before today (UTC)")
    try:
        RunaiEnvironment.read().settings()
    except ConfigurationError as exc:
        raise click.UsageError(f"control plane configuration: {exc}") from None
    settings.paths.ensure()
    run_id = _run(settings, days_between(start, end), None)
    out.print(summary_table(settings, start, end))
    out.print(f"warehouse: {settings.paths.warehouse}   run: {run_id}")


@main.command()
@click.argument("query")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1))
@click.pass_obj
def sql(settings: PipelineSettings, query: str, limit: int) -> None:
    """Run a read-only SQL query on the warehouse and print the result."""
    import duckdb

    from workloads_etl.warehouse.loader import Warehouse

    paths = settings.paths
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
@click.option("--dataset", required=True, type=click.Choice(EXTRACTED))
@click.option("--day", required=True, callback=_parse_day, help="UTC day, YYYY-MM-DD.")
@click.option("--run-id", default=None, help="Raw run to use (default: the latest).")
@click.option("--load/--no-load", default=True, help="Reload the warehouse partition too.")
@click.pass_obj
def renormalise(
    settings: PipelineSettings, dataset: str, day: date, run_id: str | None, load: bool
) -> None:
    """Rebuild a lake partition from its raw files, without calling the API."""
    from workloads_etl.lake.normalise.partition import normalise_partition
    from workloads_etl.lake.raw import RawRunNotFoundError
    from workloads_etl.warehouse.loader import Warehouse

    paths = settings.paths
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
@click.option("--port", default=8580, show_default=True, type=click.IntRange(1, 65535))
@click.pass_obj
def docs(settings: PipelineSettings, serve: bool, port: int) -> None:
    """Generate the dbt docs of the warehouse models."""
    from workloads_etl.warehouse.dbt import run_dbt, target_dir

    paths = settings.paths
    run_dbt(["docs", "generate"], paths)
    out.print(f"docs: {target_dir(paths) / 'index.html'}")
    if serve:
        run_dbt(["docs", "serve", "--port", str(port), "--host", "127.0.0.1"], paths)


@main.command()
@click.option(
    "--port",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Dagster UI port.",
)
@click.option("--workloads", default=300, show_default=True, type=click.IntRange(10))
@click.pass_obj
def dev(settings: PipelineSettings, port: int, workloads: int) -> None:
    """The Dagster UI on 127.0.0.1, with a simulated control plane behind it."""
    import os

    from workloads_etl.defs.launch import install_instance_config
    from workloads_etl.simulator import SimulatorConfig, SimulatorServer

    home = (settings.dagster_home or Path(".dagster_home")).resolve()
    install_instance_config(home)
    with SimulatorServer(SimulatorConfig(workloads=workloads), in_process=False) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "WORKLOADS_ETL_DATA_DIR": str(settings.paths.root),
            "RUNAI_BASE_URL": sim.base_url,
            "RUNAI_CLIENT_ID": sim.client_id,
            "RUNAI_CLIENT_SECRET": sim.client_secret,
        }
        env.pop("RUNAI_TOKEN", None)
        console.print(
            f"simulated control plane at {sim.base_url}; Dagster UI at http://127.0.0.1:{port}"
        )
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-m", "workloads_etl.defs", "-h", "127.0.0.1", "-p", str(port)]
        with suppress(KeyboardInterrupt):
            subprocess.run(cmd, env=env, check=False)


def _simulate_command() -> click.Command:
    from workloads_etl.simulator.__main__ import main as simulate_main

    return simulate_main


main.add_command(_simulate_command(), "simulate")
