"""Running the job in-process for the command line: one run for a range of days, its
progress followed from the event log, its failures and failed checks collected."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import psutil

from workloads_etl.defs import build_definitions
from workloads_etl.defs.schedules import JOB_NAME
from workloads_etl.lake.housekeeping import sweep_temp_files
from workloads_etl.settings import DAYS_PER_RUN, PipelineSettings
from workloads_etl.writer import WriterLock

# The tags of a run over a range of partitions (Dagster's documented backfill tags).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")
# The process running a run, to tell later whether it is gone.
HOST_TAG = "workloads_etl/host"
PID_TAG = "workloads_etl/pid"
PROCESS_STARTED_TAG = "workloads_etl/process_started"
INTERRUPTIONS = {"KeyboardInterrupt", "DagsterExecutionInterruptedError"}
POLL_SECONDS = 0.5
RESEND_SECONDS = 2.0
PAGE_OF_EVENTS = 1000
RUN_LOGS_KEPT = 100


@dataclass
class Progress:
    """What a run has done so far, as the progress display shows it."""

    total_steps: int
    done_steps: set[str] = field(default_factory=set)
    current: str = "starting"
    part: str = ""  # "days A..B (k of n)" when a range runs as several runs


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    failures: list[str]  # one per failed step: "<step>: <error message>"
    failed_checks: list[str]  # "<asset>:<check>"
    log_path: Path
    cancelled: bool = False  # interrupted by SIGINT or SIGTERM
    # what the run cleaned up first: stale runs marked failed, dead writers' temporary files
    notices: list[str] = field(default_factory=list)


def install_instance_config(home: Path) -> None:
    """Copy this project's instance settings (concurrency pools) into a new DAGSTER_HOME."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(INSTANCE_CONFIG, target)


@contextmanager
def dagster_instance(home: Path | None) -> Iterator[dg.DagsterInstance]:
    """The persistent instance of ``home`` (runs show in the UI), else an ephemeral one.
    The instance settings name ``DAGSTER_HOME`` (the event log's location,
    :mod:`workloads_etl.defs.event_log`): it is ``home`` while the instance is made, whatever
    the environment says, and as it was afterwards."""
    if home is not None:
        install_instance_config(home)
        before = os.environ.get("DAGSTER_HOME")
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            instance = dg.DagsterInstance.from_config(str(home))
        finally:
            if before is None:
                del os.environ["DAGSTER_HOME"]
            else:
                os.environ["DAGSTER_HOME"] = before
        with instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def run_range(
    settings: PipelineSettings,
    days: Sequence[date],
    *,
    dagster_home: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resources: dict[str, Any] | None = None,
) -> list[RunOutcome]:
    """Materialise the graph for ``days``, oldest first, in runs of at most
    :data:`DAYS_PER_RUN` days (as a Dagster backfill would); stops after the first run that
    does not succeed. Each run's outcome, in order."""
    parts = [list(days[i : i + DAYS_PER_RUN]) for i in range(0, len(days), DAYS_PER_RUN)]
    outcomes: list[RunOutcome] = []
    for k, part in enumerate(parts, start=1):
        label = f"days {part[0]}..{part[-1]} ({k} of {len(parts)}): " if len(parts) > 1 else ""

        def show(p: Progress, label: str = label) -> None:
            p.part = label
            if on_progress is not None:
                on_progress(p)

        outcome = run_days(
            settings, part, dagster_home=dagster_home, on_progress=show, resources=resources
        )
        outcomes.append(outcome)
        if not outcome.success or outcome.cancelled:
            break
    return outcomes


def run_days(
    settings: PipelineSettings,
    days: Sequence[date],
    *,
    dagster_home: Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    resources: dict[str, Any] | None = None,
) -> RunOutcome:
    """Materialise the whole graph for ``days`` in one run.

    The run holds the data directory's writer lock (:class:`WriterLock`) from start to end;
    a second run waits for it, up to ``settings.lock_wait``, then fails naming this one.
    Runs of this host left STARTED by a process that is gone are marked failed first, and
    their pool slots freed. SIGINT and SIGTERM cancel the run: the step under way stops,
    the run is marked cancelled and its slots are freed.

    Everything the run prints (dbt's output included) goes to its log file under the data
    directory; ``on_progress`` is called as steps start and finish. ``resources`` replace
    the defaults wired to the environment (the demo hands its simulator in this way).
    """
    run_id = str(uuid.uuid4())
    span = f"{days[0].isoformat()}..{days[-1].isoformat()}"
    tags = {
        RANGE_START_TAG: days[0].isoformat(),
        RANGE_END_TAG: days[-1].isoformat(),
        **process_tags(),
    }
    log_path = settings.paths.logs / f"run-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prune_run_logs(settings.paths.logs, keep=RUN_LOGS_KEPT)
    with WriterLock(settings.paths.root, run_id, span, settings.lock_wait):
        # Under the lock, as it writes the data directory's dbt target: a fresh data
        # directory's dbt parse, in its own process while the Dagster instance opens.
        parse = threading.Thread(target=_prepare_manifest, args=(settings,), daemon=True)
        parse.start()
        with dagster_instance(dagster_home) as instance, _logging_to(log_path):
            parse.join()
            return _execute(
                settings, days, run_id, tags, log_path, instance, on_progress, resources
            )


def _prepare_manifest(settings: PipelineSettings) -> None:
    """Parse the dbt project if the data directory has no manifest yet (errors surface when
    the definitions are built)."""
    from workloads_etl.defs.transform.project import dbt_project, prepared_manifest

    with contextlib.suppress(Exception):
        prepared_manifest(dbt_project(settings.paths), settings.paths, settings.dbt_vars)


def _execute(
    settings: PipelineSettings,
    days: Sequence[date],
    run_id: str,
    tags: dict[str, str],
    log_path: Path,
    instance: dg.DagsterInstance,
    on_progress: Callable[[Progress], None] | None,
    resources: dict[str, Any] | None,
) -> RunOutcome:
    """The run itself, in the main thread, with the lock held and the instance open."""
    # Every event, warnings included, stays in the Dagster event log (the UI, with a home)
    # and is written to the run's log file; nothing of it reaches the terminal.
    run_config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    job = build_definitions(settings, resources).resolve_job_def(JOB_NAME)
    notices = reap_stale_runs(instance)
    swept = sweep_temp_files(settings.paths)
    if swept.paths:
        notices.append(
            f"removed {len(swept.paths)} temporary files ({swept.bytes:,} bytes) of "
            "writers that no longer run"
        )
    progress = Progress(total_steps=len(job.graph.node_defs))
    follower = _Follower(instance, run_id, progress, on_progress)
    interrupter = _Interrupter(instance, run_id)
    with log_path.open("a", encoding="utf-8") as log_file, redirect_stdout(log_file):
        for line in notices:
            log_file.write(line + "\n")
        follower.start()
        try:
            # In the main thread, so that Dagster turns SIGINT and SIGTERM into a clean
            # interruption of the step under way.
            with interrupter:
                run = job.execute_in_process(
                    instance=instance,
                    run_id=run_id,
                    tags=tags,
                    run_config=run_config,
                    raise_on_error=False,
                )
        except Exception as exc:
            raise RuntimeError(f"the run could not start: {exc}") from exc
        finally:
            follower.stop()
    cancelled = not run.success and (
        interrupter.signalled is not None or _interrupted(instance, run_id)
    )
    if cancelled:
        _mark_cancelled(instance, run_id)
    _write_event_log(instance, run_id, log_path)
    failures = [_failure_line(e) for e in run.all_events if e.is_step_failure]
    return RunOutcome(
        run_id,
        run.success,
        failures,
        _failed_checks(instance, run_id),
        log_path,
        cancelled=cancelled,
        notices=notices,
    )


class _Follower(threading.Thread):
    """Follows a run's event log from a cursor: each poll reads only the new events, so its
    cost does not grow with the run's history."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        progress: Progress,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        super().__init__(name="run-progress", daemon=True)
        self.instance = instance
        self.run_id = run_id
        self.progress = progress
        self.on_progress = on_progress
        self.cursor: str | None = None
        self.polls = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        self.polls += 1
        try:
            while True:
                page = self.instance.get_records_for_run(
                    self.run_id, cursor=self.cursor, limit=PAGE_OF_EVENTS
                )
                _advance(self.progress, [r.event_log_entry for r in page.records])
                self.cursor = page.cursor
                if not page.has_more:
                    break
        except Exception:  # the display must never break a run; the next poll tries again
            logging.getLogger(__name__).debug("progress poll failed", exc_info=True)
            return
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)


class _Interrupter(threading.Thread):
    """Sees SIGINT and SIGTERM whoever handles them, and makes sure they stop the run.

    Dagster handles both signals while it executes: inside a step it raises an interruption,
    outside one it only notes the signal, and the in-process executor may never look at that
    note. This thread learns of every signal through the interpreter's wakeup file
    descriptor, marks the run CANCELING (so Dagster ends it as cancelled), and sends the
    signal again every :data:`RESEND_SECONDS` until the run has stopped.
    """

    def __init__(self, instance: dg.DagsterInstance, run_id: str) -> None:
        super().__init__(name="run-interrupter", daemon=True)
        self.instance = instance
        self.run_id = run_id
        self.signalled: int | None = None
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = -1
        self._done = False
        self._lock = threading.Lock()

    def __enter__(self) -> _Interrupter:
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        signal.set_wakeup_fd(self._previous)
        os.write(self._write, b"\0")  # wakes the thread up to end
        self.join(timeout=5)
        os.close(self._read)
        os.close(self._write)

    def run(self) -> None:
        while True:
            ready, _, _ = select.select([self._read], [], [], RESEND_SECONDS)
            with self._lock:
                if self._done:
                    return
                if ready:
                    for number in os.read(self._read, 64):
                        if number in (signal.SIGINT, signal.SIGTERM) and self.signalled is None:
                            self.signalled = number
                            self._cancelling()
                elif self.signalled is not None:
                    os.kill(os.getpid(), self.signalled)

    def _cancelling(self) -> None:
        try:
            run = self.instance.get_run_by_id(self.run_id)
            if run is not None and not run.is_finished:
                self.instance.report_run_canceling(run, message="stopping: signal received")
        except Exception:  # the signal is sent again regardless
            logging.getLogger(__name__).debug("could not mark the run canceling", exc_info=True)


def process_tags() -> dict[str, str]:
    """Tags naming the process running a run, so a later run can tell whether it is gone."""
    me = psutil.Process()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(me.pid),
        PROCESS_STARTED_TAG: f"{me.create_time():.2f}",
    }


def _process_is_gone(tags: Mapping[str, str]) -> bool:
    """Whether the process the tags name has ended (a PID reused later is another process)."""
    try:
        pid = int(tags[PID_TAG])
        started = float(tags[PROCESS_STARTED_TAG])
    except (KeyError, ValueError):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - started) > 1.0
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def reap_stale_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs of this host still open although their process is gone (killed
    with SIGKILL, the machine lost power), and free the pool slots they hold; also free the
    slots of runs that have ended. Returns one line per run reaped.

    Runs launched by the Dagster daemon or the UI carry no process tags; Dagster's run
    monitoring (enabled in dagster.yaml) looks after those.
    """
    lines = []
    host = socket.gethostname()
    open_runs = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[
                dg.DagsterRunStatus.STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.CANCELING,
            ]
        )
    )
    for run in open_runs:
        if run.tags.get(HOST_TAG) != host or not _process_is_gone(run.tags):
            continue
        message = (
            f"the process of this run (PID {run.tags[PID_TAG]}) ended without finishing it; "
            "marked failed by a later run, its pool slots freed"
        )
        instance.report_run_failed(run, message=message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"run {run.run_id}: {message}")
    storage = instance.event_log_storage
    for holder in storage.get_concurrency_run_ids():
        held = instance.get_run_by_id(holder)
        if held is None or held.is_finished:
            storage.free_concurrency_slots_for_run(holder)
    return lines


def _interrupted(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run ended because its process was interrupted (SIGINT or SIGTERM)."""
    for entry in instance.all_logs(
        run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE}
    ):
        event = entry.dagster_event
        data = event.event_specific_data if event else None
        reason = getattr(getattr(data, "failure_reason", None), "value", None)
        error = getattr(data, "error", None)
        if reason == "UNEXPECTED_TERMINATION" or (
            error is not None and error.cls_name in INTERRUPTIONS
        ):
            return True
    return False


def _mark_cancelled(instance: dg.DagsterInstance, run_id: str) -> None:
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status != dg.DagsterRunStatus.CANCELED:
        instance.report_run_canceled(run, message="cancelled: the process was interrupted")
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def prune_run_logs(directory: Path, keep: int) -> None:
    """Keep the newest ``keep`` run logs of the command line."""
    logs = sorted(directory.glob("run-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        old.unlink(missing_ok=True)


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


def _advance(progress: Progress, records: Sequence[Any]) -> None:
    for entry in records:
        event = entry.dagster_event
        if event is not None and event.is_step_success and event.step_key:
            progress.done_steps.add(event.step_key)
        elif event is not None and event.is_step_start:
            progress.current = str(event.step_key)
        elif event is None and entry.user_message:
            progress.current = entry.user_message[:90]


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation) and not evaluation.passed:
            failed.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return failed
