"""The one writer of a data directory.

A run writes the raw landing, the lake, the warehouse and the serving database of its data
directory, and only one run may do so at a time. :class:`WriterLock` is an advisory lock on
``<data>/.writer.lock`` (``flock``, through :mod:`filelock`): the kernel releases it when its
process ends, however it ends, so a killed run never leaves it taken. Beside it,
``<data>/.writer.json`` says who holds it (run id, PID, host, days, command line), so a run
that waits, and every lock message, can name the other run.

The lock is re-entrant by run: the steps of a run that already holds it (the command line
runs its steps in its own process) go on without waiting for themselves.

Readers never take it: they read the serving database, which is published by rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import filelock
import psutil

LOCK_FILE = ".writer.lock"
HOLDER_FILE = ".writer.json"


class WriterBusyError(RuntimeError):
    """Another run holds the data directory's writer lock past the wait allowed."""

    def __init__(self, message: str, holder: Holder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds the writer lock."""

    run_id: str
    pid: int
    host: str
    days: str
    started_at: str
    command: str

    def describe(self) -> str:
        where = f"PID {self.pid}" + (
            "" if self.host == socket.gethostname() else f" on {self.host}"
        )
        return f"run {self.run_id} ({where}, days {self.days}, started {self.started_at})"


def read_holder(root: Path) -> Holder | None:
    """The holder recorded beside the lock (it may be stale if no one holds the lock)."""
    try:
        data = json.loads((root / HOLDER_FILE).read_text(encoding="utf-8"))
        return Holder(**data)
    except (OSError, ValueError, TypeError):
        return None


def current_holder(root: Path) -> Holder | None:
    """The run holding ``root``'s writer lock now, or ``None`` when it is free."""
    if not (root / LOCK_FILE).exists():
        return None
    probe = filelock.FileLock(root / LOCK_FILE, is_singleton=False)
    try:
        probe.acquire(timeout=0)
    except filelock.Timeout:
        return read_holder(root)
    except OSError:
        return None
    probe.release()
    return None


def process_line(pid: int) -> str:
    """``PID n (command line)`` for a message, as far as the process can be seen."""
    with contextlib.suppress(psutil.Error):
        cmd = " ".join(psutil.Process(pid).cmdline())
        if cmd:
            return f"PID {pid} ({cmd[:160]})"
    return f"PID {pid}"


def is_part_of(pid: int, holder: Holder | None) -> bool:
    """Whether process ``pid`` is the holder's process or one of its children (dbt)."""
    if holder is None or holder.host != socket.gethostname():
        return False
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        return pid == holder.pid or any(p.pid == holder.pid for p in proc.parents())
    return False


class WriterLock:
    """``with WriterLock(root, run_id, days, wait):`` the data directory is this run's."""

    def __init__(self, root: Path, run_id: str, days: str, wait: float) -> None:
        self.root = root
        self.run_id = run_id
        self.days = days
        self.wait = wait
        self._lock = filelock.FileLock(root / LOCK_FILE, is_singleton=False)
        self._held = False

    def __enter__(self) -> WriterLock:
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                self._lock.acquire(timeout=0)
            except filelock.Timeout:
                holder = read_holder(self.root)
                if holder is not None and holder.run_id == self.run_id:
                    return self  # this run holds it already (its own process)
                if time.monotonic() >= deadline:
                    other = holder.describe() if holder else "another run"
                    raise WriterBusyError(
                        f"the data directory {self.root} is being written by {other}; waited "
                        f"{self.wait:g} s (WORKLOADS_ETL_LOCK_WAIT). Let it finish, or stop it, "
                        "then run again",
                        holder,
                    ) from None
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())) or 0.05)
                continue
            break
        self._held = True
        holder = Holder(
            run_id=self.run_id,
            pid=os.getpid(),
            host=socket.gethostname(),
            days=self.days,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            command=" ".join(sys.argv)[:300],
        )
        tmp = self.root / f".{HOLDER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(holder)), encoding="utf-8")
        os.replace(tmp, self.root / HOLDER_FILE)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._held:
            with contextlib.suppress(OSError):
                (self.root / HOLDER_FILE).unlink()
            self._lock.release()
            self._held = False
