"""Running the job in-process for the command line: one run for a range of days, its
progress followed from the event log, its failures and failed checks collected."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from workloads_etl.defs import build_definitions
from workloads_etl.defs.schedules import JOB_NAME
from workloads_etl.settings import PipelineSettings

# The tags of a run over a range of partitions (Dagster's documented backfill tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")


@dataclass
class Progress:
    """What a run has done so far, as the progress display shows it."""

    total_steps: int
    done_steps: set[str] = field(default_factory=set)
    current: str = "starting"


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failures: list[str]  # one per failed step: "<step>: <error message>"
    failed_checks: list[str]  # "<asset>:<check>"
    log_path: Path


def install_instance_config(home: Path) -> None:
    """Copy this project's instance settings (concurrency pools) into a new DAGSTER_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(INSTANCE_CONFIG, target)


@contextmanager
def dagster_instance(home: Path | None) -> Iterator[dg.DagsterInstance]:
    """The persistent instance of ``home`` (runs show in the UI), else an ephemeral one."""
    if home is not None:
        install_instance_config(home)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def run_days(
    settings: PipelineSettings,
    days: Sequence[date],
    *,
    dagster_home: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resources: dict[str, Any] | None = None,
) -> RunOutcome:
    """Materialise the whole graph for ``days`` in one run.

    Everything the run prints (dbt's output included) goes to its log file under the data
    directory; ``on_progress`` is called as steps start and finish. ``resources`` replace
    the defaults wired to the environment (the demo hands its simulator in this way).
    """
    job = build_definitions(settings, resources).resolve_job_def(JOB_NAME)
    run_id = str(uuid.uuid4())
    tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
    # Every event, warnings included, stays in the Dagster event log (the UI, with a home)
    # and is written to the run's log file; nothing of it reaches the terminal.
    run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    log_path = settings.paths.logs / f"run-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with dagster_instance(dagster_home) as instance, _logging_to(log_path):
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
            except BaseException as exc:  # reported below, in the calling thread
                result["e"] = exc

        with log_path.open("a", encoding="utf-8") as log_file, redirect_stdout(log_file):
            worker = threading.Thread(target=execute, name="pipeline-run", daemon=True)
            worker.start()
            progress = Progress(total_steps=len(job.graph.node_defs))
            seen = 0
            while worker.is_alive():
                time.sleep(0.25)
                records = instance.all_logs(run_id)
                seen = _advance(progress, records, seen)
                if on_progress is not None:
                    on_progress(progress)
            worker.join()
        if "e" in result:
            raise RuntimeError(f"the run could not start: {result['e']}") from result["e"]
        run = result["r"]
        _write_event_log(instance, run_id, log_path)
        failures = [_failure_line(e) for e in run.all_events if e.is_step_failure]
        return RunOutcome(run_id, run.success, failures, _failed_checks(instance, run_id), log_path)


@contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Python logging (warnings of the client, of libraries) into the run's log file for the
    duration of the run, instead of the terminal."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    # One line per HTTP request is noise at scale; the client logs what went wrong.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    root.addHandler(handler)
    root.setLevel(min(previous_level or logging.INFO, logging.INFO))
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()


def _failure_line(event: Any) -> str:
    """``<step>: <cause>``: the named cause of a step's ``Failure``, else the error's first
    line."""
    data = event.event_specific_data
    described = getattr(getattr(data, "user_failure_data", None), "description", None)
    if described:
        return f"{event.step_key}: {described}"
    error = getattr(data, "error", None)
    first = error.message.strip().splitlines()[0] if error and error.message.strip() else "failed"
    return f"{event.step_key}: {first}"


def _write_event_log(instance: dg.DagsterInstance, run_id: str, path: Path) -> None:
    """The run's event log, failures with their whole tracebacks, appended to its log file."""
    with path.open("a", encoding="utf-8") as out:
        out.write(f"\n--- Dagster event log of run {run_id} ---\n")
        for entry in instance.all_logs(run_id):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.timestamp))
            step = entry.step_key or "-"
            out.write(f"{when} {logging.getLevelName(entry.level)} {step}: {entry.message}\n")
            event = entry.dagster_event
            error = getattr(getattr(event, "event_specific_data", None), "error", None)
            if error is not None:
                out.write(error.to_string() + "\n")


def _advance(progress: Progress, records: Sequence[Any], seen: int) -> int:
    for entry in records[seen:]:
        event = entry.dagster_event
        if event is not None and event.is_step_success and event.step_key:
            progress.done_steps.add(event.step_key)
        elif event is not None and event.is_step_start:
            progress.current = str(event.step_key)
        elif event is None and entry.user_message:
            progress.current = entry.user_message[:90]
    return len(records)


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return failed
