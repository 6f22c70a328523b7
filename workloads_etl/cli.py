"""``workloads-etl``: a thin command line over the library and the Dagster definitions.

Everything it prints that comes from the API or the warehouse goes through :func:`safe`:
never read as markup, control characters shown escaped.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from workloads_etl.lake.datasets import EXTRACTED
from workloads_etl.settings import (
    DAYS_PER_RUN,
    PipelineSettings,
    RunaiEnvironment,
    SettingsError,
)

# Reports keep their columns when written to a file or a pipe.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 120, highlight=False)
out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)

DEMO_DAYS = 7
FORMATS = ("table", "csv", "json", "markdown")
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}


class PipelineFailed(click.ClickException):
    exit_code = 1


class PipelineCancelled(click.ClickException):
    """Stopped by SIGINT or SIGTERM (the shell's convention: 128 + SIGINT)."""

    exit_code = 130


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM stop a command cleanly, as Ctrl-C does, even when started in the
    background (where a shell starts commands with SIGINT ignored)."""

    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def safe(value: Any) -> str:
    """Text of a value for the terminal: control characters (escape sequences, bells) are
    shown as ``\\xNN``, never sent raw. Use with :class:`rich.text.Text` (never markup)."""
    return "" if value is None else str(value).translate(_CONTROL)


def _parse_day(_: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date of the form YYYY-MM-DD") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Root of raw/, lake/, the warehouse and serving/ "
    "[default: $WORKLOADS_ETL_DATA_DIR or ./data].",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Run:ai workloads to a DuckDB warehouse of GPU utilisation, idle waste and cost.

    \b
    Start with:
      workloads-etl demo                   the whole pipeline on a simulated control plane
      workloads-etl run --start D --end D  the pipeline against your control plane (RUNAI_*)
      workloads-etl sql "from marts.rpt_chargeback_monthly"
      workloads-etl report --start D --end D
      workloads-etl export --mart fct_workload_usage_daily --format parquet -o usage.parquet
    """
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    try:
        ctx.obj = PipelineSettings.read(**overrides)
    except SettingsError as exc:
        raise click.UsageError(f"configuration: {exc}") from None
    _quiet_library_warnings()
    _stop_on_signals()


def _quiet_library_warnings() -> None:
    """Dagster's notices about its own beta and superseded APIs are for developers of this
    project, not for its users."""
    import warnings

    from dagster_shared.utils.warnings import BetaWarning, PreviewWarning, SupersessionWarning

    for category in (BetaWarning, PreviewWarning, SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def _could_not_start(settings: PipelineSettings, exc: BaseException) -> str:
    """One line naming why a run could not start; the traceback goes to a log file when the
    data directory can take one."""
    import traceback

    from workloads_etl.failures import describe

    message = "the run could not start: " + safe(describe(exc))
    try:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = settings.paths.logs / f"start-{stamp}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return message
    return f"{message}\n  details: {safe(path)}"


def _ensure_data_dir(settings: PipelineSettings) -> None:
    """The data directory exists and is writable, or a usage error says why."""
    try:
        settings.paths.ensure()
    except SettingsError as exc:
        raise click.UsageError(f"configuration: {exc}") from None


def retry_policy_line(runai: Any) -> str:
    from workloads_etl.defs.resources import retry_policy_line as line

    return str(line(runai))


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _serving_errors() -> tuple[type[Exception], ...]:
    from workloads_etl.warehouse.exports import ExportError
    from workloads_etl.warehouse.serving import ServingNotPublishedError

    return (ServingNotPublishedError, ExportError)


# --------------------------------------------------------------------------------------------
# running the graph


def _run(settings: PipelineSettings, days: list[date], resources: dict[str, Any] | None) -> str:
    """Run the graph for ``days`` with a progress display; returns the last run's id. A long
    range runs as several runs of at most a month each, oldest first."""
    from workloads_etl.defs.launch import run_range

    if settings.extract_by != "day":
        # No daemon runs the clusters' runs here: a run of the command line fetches whole
        # days (whose commit supersedes any cluster's segments of them).
        console.print(
            Text(
                "WORKLOADS_ETL_EXTRACT_BY=day_cluster applies to the runs a Dagster deployment "
                "launches; the command line fetches whole days"
            )
        )
        settings = settings.model_copy(update={"extract_by": "day"})
    # The run's own output (dbt's included) goes to its log file, never to the terminal:
    # the progress display must not capture stdout and print it.
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def show(p: Any) -> None:
            bar.update(
                task,
                total=p.total_steps,
                completed=len(p.done_steps),
                description=safe(p.part + p.current),
            )

        try:
            outcomes = run_range(
                settings,
                days,
                dagster_home=settings.dagster_home,
                on_progress=show,
                resources=resources,
            )
        except KeyboardInterrupt:
            raise PipelineCancelled(
                "cancelled; nothing was published. Run the same days again to finish them"
            ) from None
        except Exception as exc:  # the run could not start: say why, keep the traceback
            raise PipelineFailed(_could_not_start(settings, exc)) from None
        last = outcomes[-1]
        bar.update(task, description="cancelled" if last.cancelled else "done")
    for line in (line for o in outcomes for line in o.notices):
        console.print(Text(safe(line), style="yellow"))
    console.print(Text(f"run log: {last.log_path}"))
    done = [o for o in outcomes if o.success and not o.cancelled]
    kept = (
        f" Days {days[0]}..{days[0] + timedelta(days=len(done) * DAYS_PER_RUN - 1)} are done"
        " and published."
        if done
        else ""
    )
    if last.cancelled:
        raise PipelineCancelled(
            f"cancelled: run {last.run_id} stopped and marked cancelled; nothing of it was "
            f"published.{kept} Run the same days again to finish them"
        )
    if not last.success:
        raise PipelineFailed(
            "the run failed:\n  "
            + "\n  ".join(safe(f) for f in last.failures or ["see log"])
            + (f"\n {kept}" if kept else "")
        )
    checks = [c for o in outcomes for c in o.failed_checks]
    if checks:
        console.print(
            Text("checks that did not pass: ", style="yellow")
            + Text(", ".join(safe(c) for c in sorted(set(checks))))
        )
    return last.run_id


def summary_table(settings: PipelineSettings, start: date, end: date) -> Table:
    """Cost and utilisation per department over [start, end], from the serving marts."""
    from workloads_etl.warehouse.reports import usage_by_department

    rows = usage_by_department(settings.paths, start, end)
    currency = safe(next((r.currency for r in rows if r.currency), ""))
    table = Table(title=Text(f"GPU usage and cost per department, {start} to {end} (UTC days)"))
    table.add_column("department")
    for col in (
        "GPU-h allocated",
        "GPU-h used",
        "GPU-h idle",
        "util %",
        f"cost {currency}",
        f"idle cost {currency}",
    ):
        table.add_column(Text(col), justify="right")
    for r in rows:
        table.add_row(
            Text(safe(r.department)),
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


def _print_summary(settings: PipelineSettings, start: date, end: date) -> None:
    try:
        out.print(summary_table(settings, start, end))
    except _serving_errors() as exc:
        console.print(Text(f"no summary: {exc}"))


# --------------------------------------------------------------------------------------------
# commands: running


@main.command()
@click.option(
    "--days",
    "n_days",
    default=DEMO_DAYS,
    show_default=True,
    type=click.IntRange(1, 14),
    help="How many complete UTC days, ending yesterday, to run.",
)
@click.option(
    "--workloads",
    default=300,
    show_default=True,
    type=click.IntRange(10, 5000),
    help="Workloads the simulated cluster runs over its history.",
)
@click.option(
    "--seed", default=7, show_default=True, type=int, help="Seed of the simulated cluster."
)
@click.pass_obj
def demo(settings: PipelineSettings, n_days: int, workloads: int, seed: int) -> None:
    """Run the whole graph for the last days against a simulated control plane.

    \b
    Examples:
      workloads-etl demo
      workloads-etl --data-dir /tmp/demo demo --days 2 --workloads 100
    """
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
    _ensure_data_dir(settings)
    paths = settings.paths
    with SimulatorServer(config, in_process=False) as sim:
        console.print(f"  serving at {sim.base_url}")
        # The simulator's documented demo credentials, handed to the run explicitly.
        runai = RunaiResource(
            base_url=sim.base_url, client_id=sim.client_id, client_secret=sim.client_secret
        )
        console.print(Text(retry_policy_line(runai.settings())))
        console.print(Text(f"Running the pipeline for {days[0]} .. {days[-1]} into {paths.root}"))
        run_id = _run(settings, days, {"runai": runai})
    _print_summary(settings, days[0], days[-1])
    from workloads_etl.warehouse.serving import serving_path

    out.print(Text(f"serving database: {serving_path(paths)}"))
    out.print(Text(f"run: {run_id}   wall time: {time.monotonic() - started:.0f} s"))
    out.print(
        Text(
            "next:  workloads-etl sql 'from marts.rpt_chargeback_monthly'   "
            f"workloads-etl report --start {days[0]} --end {days[-1]}"
        )
    )


@main.command()
@click.option("--start", required=True, callback=_parse_day, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, callback=_parse_day, help="Last UTC day (inclusive).")
@click.pass_obj
def run(settings: PipelineSettings, start: date, end: date) -> None:
    """Run the graph for the days START..END against the configured control plane.

    The control plane comes from RUNAI_BASE_URL and RUNAI_CLIENT_ID / RUNAI_CLIENT_SECRET
    (or RUNAI_TOKEN). Re-running days replaces them: runs are idempotent.

    \b
    Example:
      RUNAI_BASE_URL=https://myorg.run.ai RUNAI_CLIENT_ID=... RUNAI_CLIENT_SECRET=... \\
        workloads-etl run --start 2026-11-01 --end 2026-11-26
    """
    from workloads_etl.runai.errors import ConfigurationError

    if end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    if end >= datetime.now(UTC).date():
        raise click.BadParameter("days must be complete: --end must be before today (UTC)")
    if start < settings.start_date:
        raise click.BadParameter(
            f"{start} is before the first daily partition, {settings.start_date} "
            "(WORKLOADS_ETL_START_DATE); move --start or set WORKLOADS_ETL_START_DATE earlier",
            param_hint="--start",
        )
    try:
        runai = RunaiEnvironment.read().settings()
    except ConfigurationError as exc:
        raise click.UsageError(f"control plane configuration: {exc}") from None
    _ensure_data_dir(settings)
    console.print(Text(retry_policy_line(runai)))
    run_id = _run(settings, days_between(start, end), None)
    _print_summary(settings, start, end)
    out.print(Text(f"run: {run_id}"))


@main.command()
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(EXTRACTED),
    help="The dataset whose partition to rebuild.",
)
@click.option("--day", required=True, callback=_parse_day, help="UTC day, YYYY-MM-DD.")
@click.option("--run-id", default=None, help="Raw run to use (default: the latest).")
@click.option("--load/--no-load", default=True, help="Reload the warehouse partition too.")
@click.pass_obj
def renormalise(
    settings: PipelineSettings, dataset: str, day: date, run_id: str | None, load: bool
) -> None:
    """Rebuild a lake partition from its raw files, without calling the API.

    \b
    Example:
      workloads-etl renormalise --dataset workload_metrics --day 2026-11-20
    """
    from workloads_etl.lake.normalise.partition import normalise_partition
    from workloads_etl.lake.parquet import ManifestError, commit_segments, read_manifest
    from workloads_etl.lake.raw import RawRunNotFoundError
    from workloads_etl.warehouse.loader import Warehouse

    paths = settings.paths
    try:
        current = read_manifest(paths.lake, dataset, day)
    except ManifestError:
        current = None  # unreadable: rebuilt whole
    segments = current.segments if current is not None else {}
    if segments and run_id is not None:
        raise click.UsageError(
            f"{dataset} {day} was committed from the segments of {len(segments)} clusters, "
            "each rebuilt from its own raw run: leave out --run-id"
        )
    try:
        # a day committed from clusters' segments: each rebuilt from its run, then committed
        for cluster, segment_run in sorted(segments.items()):
            normalise_partition(
                paths,
                dataset,
                day,
                segment_run,
                limits=settings.limits,
                chunk_samples=settings.chunk_samples,
                cluster=cluster,
            )
        if segments and current is not None:
            manifest = commit_segments(paths.lake, dataset, day, list(segments), current.run_id)
            rows, quarantined = manifest.rows, manifest.quarantined
        else:
            result = normalise_partition(
                paths,
                dataset,
                day,
                run_id,
                limits=settings.limits,
                chunk_samples=settings.chunk_samples,
            )
            rows, quarantined = result.rows, result.quarantined
    except RawRunNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    out.print(Text(f"{dataset} {day}: {rows} rows, {quarantined} quarantined"))
    if load:
        with Warehouse.open(paths) as wh:
            loaded = wh.load_partition(dataset, day)
        out.print(Text(f"raw.{dataset} {day}: {loaded.rows} rows loaded"))


@main.command("gc")
@click.option(
    "--keep-raw-days",
    default=30,
    show_default=True,
    type=click.IntRange(0),
    help="Raw runs superseded by the run their partition was built from are kept this many "
    "days (by file time).",
)
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.pass_obj
def gc_command(settings: PipelineSettings, keep_raw_days: int, dry_run: bool) -> None:
    """Remove what no partition needs: superseded raw runs, stale temporary files and lake
    files no manifest names.

    The raw run a partition was built from is never removed, nor the runs of a day the lake
    has no partition of. It refuses to start while a run writes the data directory.

    \b
    Examples:
      workloads-etl gc --dry-run
      workloads-etl gc --keep-raw-days 90
    """
    from workloads_etl.lake.housekeeping import collect_garbage
    from workloads_etl.writer import WriterBusyError

    try:
        report = collect_garbage(settings.paths, keep_raw_days, dry_run=dry_run)
    except WriterBusyError as exc:
        raise click.ClickException(safe(exc)) from None
    table = Table(title=Text("would be removed (dry run)" if dry_run else "removed"))
    table.add_column("what")
    table.add_column("files", justify="right")
    table.add_column("bytes", justify="right")
    for c in report.categories:
        table.add_row(Text(c.label), f"{c.files:,}", f"{c.bytes:,}")
    table.add_section()
    table.add_row("total", f"{report.files:,}", f"{report.bytes:,}", style="bold")
    out.print(table)
    out.print(
        Text(
            f"kept: {report.kept_named_runs} raw runs that partitions were built from, "
            f"{report.kept_unpartitioned_runs} of days not in the lake"
        )
    )
    for path in report.unreadable:
        console.print(Text(f"unreadable manifest, its partition left alone: {safe(path)}"))


# --------------------------------------------------------------------------------------------
# commands: reading the serving database


@main.command()
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table (one record per block when wider than the terminal), csv, json or markdown.",
)
@click.option(
    "--limit",
    default=200,
    show_default=True,
    type=click.IntRange(1),
    help="At most this many rows are printed.",
)
@click.pass_obj
def sql(settings: PipelineSettings, query: str, fmt: str, limit: int) -> None:
    """Run one read-only SQL statement on the serving database and print the result.

    The serving database holds the marts (schema marts), the reference seeds (reference) and
    a catalogue (meta.tables, meta.columns). It is sandboxed: no file access, no ATTACH, no
    extension installs. Files are written with `workloads-etl export`.

    \b
    Examples:
      workloads-etl sql "from marts.rpt_chargeback_monthly order by total_cost desc"
      workloads-etl sql "from meta.tables" --format markdown
      workloads-etl sql "select * from marts.fct_workload_usage_daily" --format csv > usage.csv
    """
    import duckdb

    from workloads_etl.warehouse import serving

    try:
        with serving.connect(settings.paths) as con:
            statements = con.extract_statements(query)
            if len(statements) != 1:
                raise click.UsageError(
                    f"one SQL statement per call, got {len(statements)}; run them one by one"
                )
            cursor = con.execute(query)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(limit)
    except _serving_errors() as exc:
        raise click.ClickException(safe(exc)) from None
    except duckdb.Error as exc:
        raise click.ClickException(safe(exc)) from None
    _print_rows(names, rows, fmt)


def _print_rows(names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    tty = sys.stdout.isatty()
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if v is None else (safe(v) if tty else v) for v in row])
    elif fmt == "json":
        records = [dict(zip(names, row, strict=True)) for row in rows]
        sys.stdout.write(json.dumps(records, default=str, indent=2) + "\n")
    elif fmt == "markdown":

        def md(v: Any) -> str:
            return safe(v).replace("|", "\\|").replace("\n", " ")

        sys.stdout.write("| " + " | ".join(md(n) for n in names) + " |\n")
        sys.stdout.write("|" + "|".join(" --- " for _ in names) + "|\n")
        for row in rows:
            sys.stdout.write("| " + " | ".join(md(v) for v in row) + " |\n")
    elif _natural_width(names, rows) > out.width:
        _print_records(names, rows)
    else:
        table = Table()
        for name in names:
            table.add_column(Text(safe(name)))
        for row in rows:
            table.add_row(*[Text(safe(v)) for v in row])
        out.print(table)


def _natural_width(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    widths = [len(safe(n)) for n in names]
    for row in rows:
        widths = [max(w, len(safe(v))) for w, v in zip(widths, row, strict=True)]
    return sum(widths) + 3 * len(widths) + 1


def _print_records(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One block per row, one line per column: the form for results wider than the screen."""
    label = max((len(safe(n)) for n in names), default=0)
    for i, row in enumerate(rows, 1):
        out.print(Text(f"-[ record {i} ]" + "-" * max(0, label - 10), style="bold"))
        for name, value in zip(names, row, strict=True):
            out.print(Text(f"{safe(name):<{label}} | ") + Text(safe(value)))


@main.command()
@click.option("--start", required=True, callback=_parse_day, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", required=True, callback=_parse_day, help="Last UTC day (inclusive).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write [default: <data dir>/serving/report-START_END.html].",
)
@click.pass_obj
def report(settings: PipelineSettings, start: date, end: date, output: Path | None) -> None:
    """Write the HTML report of the days START..END: one self-contained file.

    Cost and idle cost per department and day, allocation against capacity per node pool and
    hour, utilisation per node pool, the top idle workloads, pending time per project and the
    monthly chargeback; every figure from the serving marts. It opens offline.

    \b
    Example:
      workloads-etl report --start 2026-11-01 --end 2026-11-30 -o november.html
    """
    from workloads_etl.warehouse.report import write_report

    if end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    try:
        path = write_report(settings.paths, start, end, output)
    except _serving_errors() as exc:
        raise click.ClickException(safe(exc)) from None
    out.print(Text(f"report: {path} ({path.stat().st_size / 1024:.0f} KiB)"))


@main.command()
@click.option(
    "--mart",
    default=None,
    help="A mart of the serving database, e.g. fct_workload_usage_daily (see meta.tables).",
)
@click.option(
    "--focus",
    is_flag=True,
    help="The FOCUS 1.2 cost and usage dataset (GPU, CPU and memory charges per workload-day).",
)
@click.option("--start", callback=_parse_day, default=None, help="First UTC day, YYYY-MM-DD.")
@click.option("--end", callback=_parse_day, default=None, help="Last UTC day (inclusive).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "parquet")),
    default=None,
    help="csv or parquet [default: from the output's suffix, else csv].",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write (replaced atomically).",
)
@click.pass_obj
def export(
    settings: PipelineSettings,
    mart: str | None,
    focus: bool,
    start: date | None,
    end: date | None,
    fmt: str | None,
    output: Path,
) -> None:
    """Export a mart, or the FOCUS 1.2 cost and usage dataset, for a range of days.

    \b
    Examples:
      workloads-etl export --mart fct_workload_usage_daily --start 2026-11-01 \\
        --end 2026-11-30 -o usage.parquet
      workloads-etl export --mart rpt_chargeback_monthly -o chargeback.csv
      workloads-etl export --focus --start 2026-11-01 --end 2026-11-30 -o focus.csv
    """
    from workloads_etl.warehouse.exports import export_mart
    from workloads_etl.warehouse.focus import export_focus

    if (mart is None) == (not focus):
        raise click.UsageError("give either --mart NAME or --focus")
    if start and end and end < start:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    fmt = fmt or ("parquet" if output.suffix.lower() == ".parquet" else "csv")
    try:
        if focus:
            result = export_focus(settings.paths, output, fmt, start, end)
        else:
            assert mart is not None
            result = export_mart(settings.paths, mart, output, fmt, start, end)
    except _serving_errors() as exc:
        raise click.ClickException(safe(exc)) from None
    out.print(Text(f"{result.table}: {result.rows} rows -> {result.path}"))


@main.command()
@click.option("--serve/--no-serve", default=False, help="Serve the docs site after generating.")
@click.option(
    "--port",
    default=8580,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the docs site on 127.0.0.1 (with --serve).",
)
@click.pass_obj
def docs(settings: PipelineSettings, serve: bool, port: int) -> None:
    """Generate the dbt docs of the warehouse models, from the serving database.

    \b
    Example:
      workloads-etl docs --serve
    """
    from workloads_etl.warehouse.dbt import DbtRunError
    from workloads_etl.warehouse.docs import generate_docs, serve_docs

    try:
        site = generate_docs(settings.paths, settings.dbt_vars)
    except (*_serving_errors(), DbtRunError) as exc:  # type: ignore[misc]
        raise click.ClickException(safe(exc)) from None
    out.print(Text(f"docs: {site}"))
    if serve:
        serve_docs(site, port)


# --------------------------------------------------------------------------------------------
# commands: development


@main.command()
@click.option(
    "--port",
    default=3000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the Dagster UI on 127.0.0.1.",
)
@click.option(
    "--workloads",
    default=300,
    show_default=True,
    type=click.IntRange(10),
    help="Workloads of the simulated control plane behind it.",
)
@click.pass_obj
def dev(settings: PipelineSettings, port: int, workloads: int) -> None:
    """The Dagster UI on 127.0.0.1, with a simulated control plane behind it.

    \b
    Example:
      workloads-etl dev --port 3000
    """
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
        _supervise(subprocess.Popen(cmd, env=env, start_new_session=True))


def _supervise(child: subprocess.Popen[bytes], grace: float = 8.0) -> None:
    """Wait for ``child``, the leader of its own process group. On SIGINT or SIGTERM, pass
    SIGTERM to its whole group, and kill what is left of it after ``grace`` seconds."""
    import os

    try:
        child.wait()
    except KeyboardInterrupt:
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace)
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _simulate_command() -> click.Command:
    from workloads_etl.simulator.__main__ import main as simulate_main

    return simulate_main


main.add_command(_simulate_command(), "simulate")
