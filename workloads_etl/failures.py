"""Why a run failed, in one line a person can act on.

:func:`explain` walks an exception's chain (``__cause__``, ``__context__`` and the last error
of an exhausted retry) and names the first cause it recognises: DNS, a refused connection,
TLS, credentials, permission, a wrong URL, a timeout, an answer too large, broken or
incomplete paging, a disk error, a locked warehouse, a configuration problem, a failed dbt
build. The line says what happened and what to do; tracebacks stay in the run log.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import httpx

from workloads_etl.children import ChildError
from workloads_etl.lake.parquet import LakeIntegrityError
from workloads_etl.runai import errors as api
from workloads_etl.settings import SettingsError
from workloads_etl.warehouse.dbt import DbtRunError
from workloads_etl.warehouse.loader import (
    LakeSchemaError,
    WarehouseLockedError,
    WarehouseSchemaError,
)
from workloads_etl.writer import WriterBusyError, process_line

_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "a file grew beyond the size allowed",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "an input/output error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_DNS = re.compile(
    r"name or service not known|nodename nor servname|temporary failure in name resolution|"
    r"no address associated|getaddrinfo failed|name resolution",
    re.IGNORECASE,
)
_PID = re.compile(r"\(PID (\d+)\)")
_ERRNO = re.compile(r"\[Errno (\d+)\]")
# A 404 on these paths means the base URL is wrong, not that a workload is gone.
_COLLECTION_PATHS = re.compile(r"^/api/v1/(token|workloads(/count|/telemetry)?)$")


@dataclass(frozen=True)
class Cause:
    """A named cause of a failure: what happened and what to do about it."""

    kind: str
    detail: str
    action: str

    def line(self) -> str:
        return f"{self.kind}: {self.detail}" + (f"; {self.action}" if self.action else "")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it, each once, nearest first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        nxt = [getattr(cur, "last_error", None), cur.__cause__, cur.__context__]
        todo.extend(e for e in nxt if isinstance(e, BaseException))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _connection(exc: BaseException, chain: list[BaseException]) -> Cause | None:
    if not any(isinstance(e, httpx.ConnectError | ConnectionError | OSError) for e in chain):
        return None
    texts = " ".join(str(e) for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or _DNS.search(texts):
        return Cause(
            "DNS",
            "the control plane's host name does not resolve",
            "check RUNAI_BASE_URL and this machine's DNS",
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in texts.lower():
        return Cause(
            "connection refused",
            "nothing accepts connections at the control plane's address",
            "is the control plane up, and are RUNAI_BASE_URL's host and port right?",
        )
    if any(isinstance(e, httpx.ConnectError) for e in chain):
        return Cause(
            "connection failed",
            _first_line(exc),
            "check RUNAI_BASE_URL and the network path to the control plane",
        )
    return None


def _disk(chain: list[BaseException]) -> Cause | None:
    """An OS error of our own side: in the chain, or reported by a subprocess (dbt) as
    ``[Errno N] ...`` in its message."""
    for e in chain:
        number, where = None, ""
        if isinstance(e, OSError) and not isinstance(e, ConnectionError | socket.gaierror):
            number = e.errno
            where = f" writing {e.filename}" if e.filename else ""
        elif (found := _ERRNO.search(str(e))) is not None:
            number = int(found.group(1))
        what = _DISK_ERRNOS.get(number if number is not None else -1)
        if what is not None:
            return Cause(
                "disk error",
                f"{what}{where}",
                "free space in, or fix the permissions of, the data directory "
                "(WORKLOADS_ETL_DATA_DIR)",
            )
    return None


def explain(exc: BaseException) -> Cause:
    """The named cause of ``exc`` (see the module docstring)."""
    if isinstance(exc, ChildError):  # explained where it happened
        return Cause(exc.kind, exc.detail, exc.action)
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, api.TLSVerificationError):
            return Cause(
                "TLS",
                "the control plane's certificate could not be verified",
                "give its CA as a PEM bundle in RUNAI_CA_BUNDLE",
            )
        if isinstance(e, api.AuthenticationError):
            status = f" (HTTP {e.status})" if e.status else ""
            return Cause(
                "credentials",
                f"the control plane refused the credentials{status}",
                "check RUNAI_CLIENT_ID and RUNAI_CLIENT_SECRET, or RUNAI_TOKEN",
            )
        if isinstance(e, api.ForbiddenError):
            return Cause(
                "permission",
                f"HTTP 403 on {e.method} {e.path}",
                "give the service account read access to workloads in Run:ai",
            )
        if isinstance(e, api.NotFoundError) and _COLLECTION_PATHS.match(e.path or ""):
            return Cause(
                "wrong URL",
                f"HTTP 404 on {e.method} {e.path}",
                "RUNAI_BASE_URL must be the control plane's address, e.g. https://<org>.run.ai",
            )
        if isinstance(e, api.ResponseTooLargeError):
            return Cause(
                "response too large",
                _first_line(e),
                "raise RUNAI_MAX_RESPONSE_MB if such answers are expected",
            )
        if isinstance(e, api.PagingError):
            return Cause("broken paging", _first_line(e), "report it to the control plane's admins")
        if isinstance(e, api.IncompleteListError):
            return Cause(
                "incomplete list",
                _first_line(e),
                "run the day again; if it persists, report it to the control plane's admins",
            )
        if isinstance(e, api.DeadlineExceededError | httpx.TimeoutException | TimeoutError):
            return Cause(
                "timeout",
                _first_line(e) if isinstance(e, api.DeadlineExceededError) else "no answer",
                "the control plane is slow or hangs; raise RUNAI_REQUEST_DEADLINE if it is "
                "just slow",
            )
        if isinstance(e, api.ConfigurationError | SettingsError):
            return Cause("configuration", _first_line(e), "")
        if isinstance(e, WarehouseLockedError):
            return Cause("locked warehouse", _first_line(e), "then run again")
        if isinstance(e, WriterBusyError):
            return Cause("another run", _first_line(e), "")
        if isinstance(e, LakeIntegrityError):
            return Cause("lake integrity", _first_line(e), "")
        if isinstance(e, WarehouseSchemaError | LakeSchemaError):
            return Cause("schema version", _first_line(e), "")
        if isinstance(e, duckdb.IOException) and "Could not set lock" in str(e):
            pid = _PID.search(str(e))
            holder = process_line(int(pid.group(1))) if pid else "another process"
            return Cause(
                "locked warehouse",
                f"{holder} holds the warehouse's write lock",
                "wait for it to finish, or stop it",
            )
        if isinstance(e, DbtRunError):
            disk = _disk([e])
            if disk is not None:
                return disk
            return Cause("dbt", _first_line(e), "see the run log; nothing was published")
    for found in (_connection(exc, chain), _disk(chain)):
        if found is not None:
            return found
    for e in chain:
        if isinstance(e, api.ServerError):
            return Cause(
                "control plane error",
                f"HTTP {e.status} on {e.method} {e.path}",
                "the control plane kept failing; try again later",
            )
    return Cause("error", f"{type(exc).__name__}: {_first_line(exc)}", "see the run log")


def describe(exc: BaseException) -> str:
    """:func:`explain` as one line, with the budget's word when retrying gave up."""
    if isinstance(exc, ChildError):
        return exc.line
    cause = explain(exc)
    line = cause.line()
    spent = next((e for e in _chain(exc) if isinstance(e, api.ControlPlaneUnavailableError)), None)
    if spent is not None:
        line += " (gave up: no successful answer within the run's retry budget)"
    return line
