"""Step failures that name their cause: one line in the run's summary, the traceback in
the run's log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from workloads_etl.failures import describe


@contextmanager
def named_failure() -> Iterator[None]:
    """Turn any error of the block into a final ``dagster.Failure`` whose description names
    the cause (:func:`workloads_etl.failures.describe`); the original stays chained."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        raise dg.Failure(description=describe(exc), allow_retries=False) from exc
