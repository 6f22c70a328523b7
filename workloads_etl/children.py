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
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

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
