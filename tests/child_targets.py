"""Functions that tests run in a child process (``workloads_etl.children.call_in_child``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from workloads_etl.runai.errors import AuthenticationError


def echo(n: int, send: Callable[[object], None]) -> dict[str, int]:
    for i in range(n):
        send(("step", i))
    logging.getLogger("workloads_etl.test_child").warning("halfway there: %d", n)
    print("this goes to the child's stderr, not to the message pipe")
    return {"pid": os.getpid(), "n": n}


def refused(send: Callable[[object], None]) -> None:
    raise AuthenticationError(
        "POST /api/v1/token -> HTTP 401", status=401, method="POST", path="/api/v1/token"
    )


def crash(send: Callable[[object], None]) -> None:
    send("about to die")
    os._exit(7)


def arrays_from_lists(send: Callable[[object], None]) -> dict[str, object]:
    """Arrow arrays of Python lists, as the normalisers make them: whether pandas got
    imported, and the arrays' content."""
    import sys

    import pyarrow as pa

    made = [pa.array([1.5, None], pa.float64()), pa.array(["a", None]), pa.array([[1], []])]
    return {"pandas": "pandas" in sys.modules, "arrays": [a.to_pylist() for a in made]}
