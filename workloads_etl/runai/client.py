"""The async client of the Run:ai workloads API: one method per operation of the slice.

``RunaiClient(settings)`` is used as ``async with RunaiClient(settings) as client``. Paging,
the count-based re-read of a list that changed while it was read, metrics windows and the
re-requests of partial (207) metrics answers live here; HTTP, authentication and retries in
:mod:`workloads_etl.runai.session`.

Every final successful answer can be kept: ``client.recorded(recorder)`` is a view of the
same client (same connections, token and limits) that hands each answer, as received, to
``recorder``; the extraction uses one view per raw landing file.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import quote

import httpx
import pyarrow as pa

from workloads_etl.runai.errors import (
    ConfigurationError,
    IncompleteListError,
    PagingError,
    ProtocolError,
)
from workloads_etl.runai.filters import FilterBy, filter_param
from workloads_etl.runai.measurements import answer_types, merge_windows, parse_measurements
from workloads_etl.runai.models import (
    TELEMETRY_GROUP_BY,
    TELEMETRY_TYPES,
    MetricsResult,
    TelemetryResponse,
    Workload,
)
from workloads_etl.runai.retry import RetryBudget
from workloads_etl.runai.session import Recorder, Session
from workloads_etl.runai.settings import RunaiSettings
from workloads_etl.runai.values import iso_z, utc
from workloads_etl.runai.windows import MAX_TYPES_PER_CALL, plan_windows

logger = logging.getLogger("workloads_etl.runai")

WORKLOADS_PATH = "/api/v1/workloads"
_SORT_ORDERS = ("asc", "desc")


class RunaiClient:
    """Async client of the Run:ai workloads API.

    ``recorder`` receives a :class:`~workloads_etl.runai.models.RawResponse` for every final
    successful answer (never for retried failures, never for the token operation).
    """

    def __init__(
        self,
        settings: RunaiSettings,
        recorder: Recorder | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        session: Session | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self._session = (
            session if session is not None else Session(settings, transport, budget=budget)
        )
        self._recorder = recorder

    def recorded(self, recorder: Recorder | None) -> RunaiClient:
        """A view of this client whose answers go to ``recorder``; it shares connections,
        token and limits with this client and needs no opening or closing of its own."""
        return RunaiClient(self.settings, recorder, session=self._session)

    @property
    def settings(self) -> RunaiSettings:
        return self._session.settings

    @property
    def request_count(self) -> int:
        """HTTP requests sent, retries included."""
        return self._session.request_count

    @property
    def token_requests(self) -> int:
        """How many tokens this client obtained."""
        return self._session.token_requests

    async def __aenter__(self) -> Self:
        await self._session.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._session.aclose()

    async def _call(
        self, operation: str, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, str]:
        return await self._session.call(operation, method, path, recorder=self._recorder, **kwargs)

    # --- workloads -----------------------------------------------------------------------

    @staticmethod
    def _list_params(
        deleted: bool,
        filter_by: FilterBy | Sequence[str] | None,
        search: str | None,
    ) -> dict[str, str]:
        params: dict[str, str] = {}
        if deleted:
            params["deleted"] = "true"
        fb = filter_param(filter_by)
        if fb:
            params["filterBy"] = fb
        if search:
            params["search"] = search
        return params

    async def _list_pass(
        self, base: dict[str, str], seen: set[str], pass_no: int, expected: int
    ) -> AsyncIterator[list[Workload]]:
        """One reading of the list from offset 0, yielding the workloads not seen before.

        Stops with :class:`PagingError` when paging cannot be trusted: a ``next`` that does
        not advance, a page with the very rows of an earlier page, more rows than the count
        endpoint's figure (with ``list_page_margin``, and one page more), or, on the first
        reading, ``list_stall_pages`` pages in a row with no workload not seen before. A
        control plane may return fewer rows than asked for; the bound counts rows, so it
        holds for pages of any size.
        """
        s = self.settings
        what = "GET /api/v1/workloads" + (" (deleted)" if base.get("deleted") else "")
        limit = s.page_size
        max_rows = math.ceil(expected * (1 + s.list_page_margin)) + limit
        offset = 0
        page_no = 0
        rows_received = 0
        stalled = 0
        pages_seen: dict[tuple[str, ...], int] = {}  # the ids of a page -> its offset
        while True:
            if rows_received > max_rows:
                raise PagingError(
                    f"{what}: 'next' went on past {rows_received} rows in {page_no} pages, "
                    f"more than the {expected} workloads the count endpoint reports; "
                    "the control plane's paging is broken"
                )
            params = {**base, "offset": str(offset), "limit": str(limit)}
            _, body, _ = await self._call(
                "get_workloads",
                "GET",
                WORKLOADS_PATH,
                params=params,
                meta={"page": page_no, "pass": pass_no},
            )
            if not isinstance(body, dict) or not isinstance(body.get("workloads"), list):
                raise ProtocolError(f"{what} -> body without a 'workloads' array")
            rows = body["workloads"]
            rows_received += len(rows)
            ids: list[str] = []
            fresh: list[Workload] = []
            for w in rows:
                wid = w.get("id") if isinstance(w, dict) else None
                if not isinstance(wid, str):
                    raise ProtocolError(f"{what}: a workload on page {page_no} has no string 'id'")
                ids.append(wid)
                if wid not in seen:
                    seen.add(wid)
                    fresh.append(cast(Workload, w))
            if ids:
                earlier = pages_seen.setdefault(tuple(ids), offset)
                if earlier != offset:
                    raise PagingError(
                        f"{what}: the page at offset {offset} repeats the rows of the page at "
                        f"offset {earlier}; the control plane's paging is broken"
                    )
            if fresh:
                stalled = 0
                yield fresh
            elif rows and pass_no == 0:
                stalled += 1
                if stalled >= s.list_stall_pages:
                    raise PagingError(
                        f"{what}: {stalled} pages in a row (up to offset {offset}) brought no "
                        "workload not already listed; the control plane's paging is broken"
                    )
            page_no += 1
            nxt = body.get("next")
            if not rows or nxt is None:
                return
            if not isinstance(nxt, int) or isinstance(nxt, bool) or nxt <= offset:
                raise PagingError(
                    f"{what}: 'next'={nxt!r} does not advance past offset {offset} after "
                    f"{len(seen)} of {expected} workloads; the control plane's paging is broken"
                )
            offset = nxt

    async def iter_workload_pages(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        search: str | None = None,
    ) -> AsyncIterator[list[Workload]]:
        """Every workload, page by page; each workload id is yielded once.

        The count operation is asked first (with the same filters) and bounds the pages.
        Offset paging over a list that changes between pages may repeat rows (dropped here)
        or skip them: after the last page the count is asked again and, while it reports
        more workloads than distinct ids were seen, the list is read again from offset 0, at
        most ``list_reconcile_passes`` times (2 by default), and the readings are united by
        id: only ids not seen before are yielded. Every page is still recorded as received,
        so copies of one id (identical, or with different content) reach the normaliser,
        which keeps one. A listing that still ends more than ``list_tolerance`` below the
        count raises :class:`IncompleteListError`: an incomplete list would bill less than
        was used.
        """
        base = self._list_params(deleted, filter_by, search)
        if sort_by:
            base["sortBy"] = sort_by
        if sort_order:
            if sort_order not in _SORT_ORDERS:
                raise ConfigurationError(f"sort_order must be 'asc' or 'desc', not {sort_order!r}")
            base["sortOrder"] = sort_order
        counted = await self.count_workloads(deleted=deleted, filter_by=filter_by, search=search)
        seen: set[str] = set()
        async for page in self._list_pass(base, seen, 0, counted):
            yield page
        passes = 0
        while True:
            counted = await self.count_workloads(
                deleted=deleted, filter_by=filter_by, search=search
            )
            if counted <= len(seen) or passes >= self.settings.list_reconcile_passes:
                break
            passes += 1
            logger.info(
                "GET /api/v1/workloads: count says %d, listing gave %d; reading the list "
                "again (%d of at most %d)",
                counted,
                len(seen),
                passes,
                self.settings.list_reconcile_passes,
            )
            async for page in self._list_pass(base, seen, passes, counted):
                yield page
        tolerance = self.settings.list_tolerance
        if counted - len(seen) > tolerance * counted:
            what = "deleted workloads" if deleted else "workloads"
            raise IncompleteListError(
                f"the list of {what} gave {len(seen)}, the count endpoint says {counted}: "
                f"an incomplete list would bill less than was used (tolerance "
                f"RUNAI_LIST_TOLERANCE={tolerance:g})",
                listed=len(seen),
                counted=counted,
            )

    async def iter_workloads(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        search: str | None = None,
    ) -> AsyncIterator[Workload]:
        async for page in self.iter_workload_pages(deleted, filter_by, sort_by, sort_order, search):
            for w in page:
                yield w

    async def count_workloads(
        self,
        deleted: bool = False,
        filter_by: FilterBy | Sequence[str] | None = None,
        search: str | None = None,
    ) -> int:
        params = self._list_params(deleted, filter_by, search)
        _, body, _ = await self._call(
            "count_workloads", "GET", f"{WORKLOADS_PATH}/count", params=params
        )
        count = body.get("count") if isinstance(body, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ProtocolError("GET /api/v1/workloads/count -> body without an integer 'count'")
        return count

    async def get_workload(self, workload_id: str) -> Workload:
        path = f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}"
        _, body, _ = await self._call(
            "get_workload", "GET", path, path_params={"workloadId": workload_id}
        )
        if not isinstance(body, dict) or "id" not in body:
            raise ProtocolError(f"GET {path} -> body is not a workload")
        return cast(Workload, body)

    async def get_telemetry(
        self,
        telemetry_type: str,
        group_by: Sequence[str] = (),
        cluster_id: str | None = None,
        nodepool_name: str | None = None,
        department_id: str | None = None,
        phases: Sequence[str] = (),
    ) -> TelemetryResponse:
        if telemetry_type not in TELEMETRY_TYPES:
            raise ConfigurationError(
                f"unknown telemetry type {telemetry_type!r}; one of {', '.join(TELEMETRY_TYPES)}"
            )
        bad = [g for g in group_by if g not in TELEMETRY_GROUP_BY]
        if bad or len(group_by) > 2:
            raise ConfigurationError(
                f"groupBy takes at most two of {', '.join(TELEMETRY_GROUP_BY)}; "
                f"got {list(group_by)}"
            )
        params = {"telemetryType": telemetry_type}
        if group_by:
            params["groupBy"] = ",".join(group_by)
        if cluster_id:
            params["clusterId"] = cluster_id
        if nodepool_name:
            params["nodepoolName"] = nodepool_name
        if department_id:
            params["departmentId"] = department_id
        if phases:
            params["filterByPhases"] = ",".join(phases)
        _, body, _ = await self._call(
            "get_workloads_telemetry", "GET", f"{WORKLOADS_PATH}/telemetry", params=params
        )
        if not isinstance(body, dict) or not isinstance(body.get("values"), list):
            raise ProtocolError("GET /api/v1/workloads/telemetry -> body without 'values'")
        return cast(TelemetryResponse, body)

    # --- metrics -------------------------------------------------------------------------

    async def get_workload_metrics(
        self,
        workload_id: str,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int = 60,
        *,
        samples: bool = True,
    ) -> MetricsResult:
        """The metrics of one workload. With ``samples=False`` the answers are only fetched
        (with their partial-answer retries) and handed to the recorder, which decodes nothing
        again (:meth:`RawResponse.decoded`): the result's ``table`` is empty and its
        ``empty_types`` unknown (empty); use it when the recorded answers are what is kept."""
        path = f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}/metrics"
        return await self._metrics(
            "get_workload_metrics",
            path,
            {"workloadId": workload_id},
            workload_id,
            None,
            metric_types,
            start,
            end,
            step_seconds,
            samples,
        )

    async def get_pod_metrics(
        self,
        workload_id: str,
        pod_id: str,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int = 60,
    ) -> MetricsResult:
        path = (
            f"{WORKLOADS_PATH}/{quote(workload_id, safe='')}/pods/{quote(pod_id, safe='')}/metrics"
        )
        return await self._metrics(
            "get_workload_pod_metrics",
            path,
            {"workloadId": workload_id, "podId": pod_id},
            workload_id,
            pod_id,
            metric_types,
            start,
            end,
            step_seconds,
        )

    async def _metrics(
        self,
        operation: str,
        path: str,
        path_params: dict[str, str],
        workload_id: str,
        pod_id: str | None,
        metric_types: Sequence[str],
        start: datetime,
        end: datetime,
        step_seconds: int,
        samples: bool = True,
    ) -> MetricsResult:
        types = tuple(dict.fromkeys(metric_types))
        if not types:
            raise ConfigurationError("at least one metric type is needed")
        bad = [t for t in types if not t or "," in t]
        if bad:
            raise ConfigurationError(f"invalid metric types {bad}")
        windows = plan_windows(start, end, step_seconds)
        batches = [
            types[i : i + MAX_TYPES_PER_CALL] for i in range(0, len(types), MAX_TYPES_PER_CALL)
        ]

        async def one(
            k: int, ws: datetime, we: datetime, n: int, batch: tuple[str, ...]
        ) -> tuple[list[pa.Table], list[str], list[dict[str, Any]]]:
            wanted = list(batch)
            tables: list[pa.Table] = []
            rejects: list[dict[str, Any]] = []
            for round_no in range(self.settings.metrics_partial_retries + 1):
                params = {
                    "metricType": ",".join(wanted),
                    "start": iso_z(ws),
                    "end": iso_z(we),
                    "numberOfSamples": str(n),
                }
                status, body, _ = await self._call(
                    operation,
                    "GET",
                    path,
                    params=params,
                    path_params=path_params,
                    ok=(200, 207),
                    # the last window may reach past ``end``: samples at or after
                    # ``range_end`` were not asked for and are dropped by the merge
                    meta={
                        "window": k,
                        "round": round_no,
                        "range_end": iso_z(end),
                        "types": len(batch),
                    },
                )
                if samples:
                    parsed = parse_measurements(body)
                    tables.append(parsed.table)
                    rejects.extend(parsed.rejects)
                    got = set(parsed.types)
                else:
                    got = set(answer_types(body))
                wanted = [t for t in wanted if t not in got]
                if status != 207 or not wanted:
                    if status != 207:
                        wanted = []  # a full answer: absent types have no data
                    break
                logger.info(
                    "%s window %d: partial answer, missing %s (round %d)",
                    path,
                    k,
                    ",".join(wanted),
                    round_no,
                )
            return tables, wanted, rejects

        tasks = [
            asyncio.ensure_future(one(k, *w, batch))
            for k, w in enumerate(windows)
            for batch in batches
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:  # one window failed: do not leave the others running
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        all_tables = [t for tables, _, _ in results for t in tables]
        missing = sorted({t for _, m, _ in results for t in m})
        rejects = [r for _, _, rj in results for r in rj]
        table = merge_windows(all_tables, utc(start), utc(end))
        present = set(table.column("metric_type").to_pylist()) if table.num_rows else set()
        empty = [t for t in types if t not in present and t not in missing] if samples else []
        return MetricsResult(
            workload_id=workload_id,
            start=utc(start),
            end=utc(end),
            step_seconds=step_seconds,
            table=table,
            metric_types=types,
            missing_types=missing,
            empty_types=empty,
            rejects=rejects,
            windows=len(windows),
            pod_id=pod_id,
        )
