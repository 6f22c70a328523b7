"""Child processes that end with the process that started them.

A run's children (dbt, the demo's simulator) must not outlive it: a run killed with SIGKILL
cannot stop them itself, and an orphaned dbt would go on writing the warehouse under the
next run. On Linux the kernel sends them SIGKILL when their parent ends
(``PR_SET_PDEATHSIG``); elsewhere they end when their work does.

dagster-dbt starts dbt itself, so the pipeline gives it ``workloads-etl-dbt``
(:func:`exec_dbt`) as its dbt executable: it ties its own life to its parent's, then
becomes dbt (``exec``), keeping that tie.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import importlib.abc
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :mod:`subprocess` that ties the child's life to this process."""
    return _die_with_parent if sys.platform.startswith("linux") else None


def exec_dbt() -> None:
    """``workloads-etl-dbt ARGS``: ``dbt ARGS``, ended by the kernel if its parent ends."""
    if sys.platform.startswith("linux"):
        _die_with_parent()
    dbt = Path(sys.executable).with_name("dbt")
    os.execv(dbt, [str(dbt), *sys.argv[1:]])  # noqa: S606 (no shell: the arguments as given)


class ChildTraceback(Exception):
    """The traceback of an error in a child process, as text: the cause of its
    :class:`ChildError`, so that the whole chain shows wherever tracebacks are logged."""


class ChildError(RuntimeError):
    """A call in a child process failed: its cause as the child explained it
    (:func:`workloads_etl.failures.explain`), and the child's traceback."""

    def __init__(self, kind: str, detail: str, action: str, line: str, trace: str) -> None:
        super().__init__(line)
        self.kind = kind
        self.detail = detail
        self.action = action
        self.line = line
        self.trace = trace

    def __reduce__(self) -> tuple[Any, ...]:
        return (ChildError, (self.kind, self.detail, self.action, self.line, self.trace))


def call_in_child(target: str, args: tuple[Any, ...], on_message: Callable[[Any], None]) -> Any:
    """``target(*args, send)`` in a fresh Python process; its result.

    ``target`` is ``"module:function"``. What the function passes to ``send`` reaches
    ``on_message`` here as it is sent, and its log records are logged here under their own
    logger names, so the child is seen as if it ran in this process. Its memory, though, is
    the system's again when it ends: a step that handles a large day leaves nothing behind
    in a long-lived process. Arguments, messages and the result travel pickled over a pipe
    (secrets in them are never written anywhere). If this process is interrupted the child
    is stopped; if this process dies the kernel ends it (:func:`die_with_parent`). An error
    of the child is raised here as :class:`ChildError`.
    """
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workloads_etl.children"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=die_with_parent(),
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            pickle.dump((target, args), proc.stdin)
            proc.stdin.close()
            while True:
                try:
                    kind, payload = pickle.load(proc.stdout)  # noqa: S301 (our own child)
                except EOFError:
                    proc.wait()
                    stderr.seek(0)
                    tail = stderr.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"the process of {target} ended without an answer "
                        f"(exit code {proc.returncode}): {tail.strip()}"
                    ) from None
                if kind == "message":
                    on_message(payload)
                elif kind == "log":
                    name, level, text = payload
                    logging.getLogger(name).log(level, "%s", text)
                elif kind == "error":
                    raise payload from ChildTraceback(payload.trace)
                else:
                    return payload
        finally:
            if proc.poll() is None:
                proc.terminate()  # the child cleans up as on any interruption
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class _Forward(logging.Handler):
    def __init__(self, send: Callable[[str, Any], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send("log", (record.name, record.levelno, self.format(record)))
        except Exception:
            self.handleError(record)


class _WithoutPandas(importlib.abc.MetaPathFinder):
    """No pandas in a child: pyarrow imports it (about 0.7 CPU-s) the first time it makes an
    array of a Python list, only to ask whether the list is a pandas object. Nothing a child
    runs uses pandas; refused, pyarrow takes it as not installed."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r} here", name=fullname)


def _child_main() -> None:
    """``python -m workloads_etl.children``: the child side of :func:`call_in_child`."""
    # This module runs as __main__ here: the error class the parent unpickles is the
    # package's.
    from workloads_etl import children
    from workloads_etl.failures import describe, explain

    channel = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # the pipe carries messages only
    lock = threading.Lock()

    def post(kind: str, payload: Any) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        with lock:
            channel.write(data)
            channel.flush()

    def _stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    sys.meta_path.insert(0, _WithoutPandas())
    root = logging.getLogger()
    root.handlers[:] = [_Forward(post)]
    root.setLevel(logging.INFO)
    target, args = pickle.load(sys.stdin.buffer)  # noqa: S301 (from our parent)
    module, _, name = target.partition(":")
    func = getattr(importlib.import_module(module), name)
    # The modules just imported live as long as the child: out of the collector's way, so a
    # full collection walks only what the work allocates (tens of ms, not a pause of
    # hundreds that stalls every request in flight).
    gc.freeze()
    try:
        result = func(*args, lambda payload: post("message", payload))
    except Exception as exc:
        cause = explain(exc)
        post(
            "error",
            children.ChildError(
                cause.kind, cause.detail, cause.action, describe(exc), traceback.format_exc()
            ),
        )
        return
    post("result", result)


if __name__ == "__main__":
    _child_main()
