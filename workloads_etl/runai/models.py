"""Typed values exchanged with the Run:ai control plane. Field names follow the API spec."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypedDict

import pyarrow as pa

from workloads_etl.openapi import enum_values, items_enum
from workloads_etl.runai import body as body_codec

_NOT_DECODED: Any = object()


@dataclass(frozen=True)
class RawResponse:
    """One successful response exactly as received, for the raw landing zone.

    ``text`` is the response body, byte for byte (decoded as UTF-8); ``params`` are the
    query parameters as sent (explode:false arrays already comma-joined); ``path_params``
    carries e.g. ``{"workloadId": "..."}``.
    """

    operation: str  # the spec's operationId, e.g. "get_workloads", "get_workload_metrics"
    method: str
    path: str
    params: dict[str, str]
    path_params: dict[str, str]
    status: int
    received_at: datetime  # UTC
    text: str
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. {"page": 3}
    # The body as the client decoded it, so that nothing decodes it again; never serialised.
    body: Any = field(default=_NOT_DECODED, repr=False, compare=False)

    def decoded(self) -> Any:
        """The decoded JSON body: the client's decoding when it kept it, otherwise ``text``
        decoded now (:func:`workloads_etl.runai.body.loads`; raises ``ValueError``)."""
        if self.body is not _NOT_DECODED:
            return self.body
        return body_codec.loads(self.text)

    def without_body(self) -> RawResponse:
        """This response without the decoded body (to keep it without its memory)."""
        return replace(self, body=_NOT_DECODED)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "params": self.params,
            "path_params": self.path_params,
            "status": self.status,
            "received_at": self.received_at.isoformat(),
            "text": self.text,
            "meta": self.meta,
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> RawResponse:
        return cls(
            operation=d["operation"],
            method=d["method"],
            path=d["path"],
            params=dict(d.get("params") or {}),
            path_params=dict(d.get("path_params") or {}),
            status=int(d["status"]),
            received_at=datetime.fromisoformat(d["received_at"]),
            text=d["text"],
            meta=dict(d.get("meta") or {}),
        )


# --- Spec-shaped answers (TypedDicts: plain dicts at runtime, field names as in the spec) ---


class Workload(TypedDict, total=False):
    """``Workload`` / ``WorkloadDetailed``; only the commonly read fields are typed here."""

    id: str
    name: str
    type: str
    tenantId: int
    clusterId: str
    projectId: str
    projectName: str
    departmentId: str | None
    departmentName: str | None
    namespace: str
    createdAt: str
    updatedAt: str
    deletedAt: str | None
    completedAt: str | None
    phase: str
    phaseUpdatedAt: str
    k8sPhase: str
    runningPods: int
    submittedBy: str | None
    priority: int | None
    priorityClassName: str
    category: str
    source: str
    allocatedResources: dict[str, Any] | None
    workloadRequestedResources: dict[str, Any] | None
    podsRequestedResources: dict[str, Any] | None
    requestedPods: dict[str, Any] | None
    currentNodePools: list[str] | None
    idleGpus: float | None
    idleAllocatedGpus: float | None
    totalPendingTimeSeconds: int | None
    totalRunningTimeSeconds: int | None
    distributedFramework: str | None
    conditions: list[dict[str, Any]]


class WorkloadsPage(TypedDict, total=False):
    workloads: list[Workload]
    next: int


class CountResponse(TypedDict):
    count: int


class TelemetryGroup(TypedDict, total=False):
    key: str
    value: str
    name: str


class TelemetryValue(TypedDict, total=False):
    value: str
    groups: list[TelemetryGroup]


class TelemetryResponse(TypedDict):
    type: str
    timestamp: str
    values: list[TelemetryValue]


class MetricSample(TypedDict):
    value: str
    timestamp: str | None


class MeasurementResponse(TypedDict, total=False):
    type: str
    labels: dict[str, str] | None
    values: list[MetricSample] | None


class MetricsCompositeResponse(TypedDict, total=False):
    measurements: list[MeasurementResponse]
    histogram: list[dict[str, Any]] | None


class TokenResponse(TypedDict, total=False):
    accessToken: str
    idToken: str
    refreshToken: str
    expiresIn: int


class ErrorBody(TypedDict, total=False):
    code: int
    message: str
    details: str


# The enums the client validates against before sending, from the spec.
TELEMETRY_TYPES: tuple[str, ...] = enum_values("WorkloadTelemetryType")
TELEMETRY_GROUP_BY: tuple[str, ...] = items_enum("/api/v1/workloads/telemetry", "groupBy")


@dataclass(frozen=True)
class MetricsResult:
    """All requested metric types of one workload (or pod) over ``[start, end)`` at one step.

    ``table`` has the columns of
    :data:`workloads_etl.runai.measurements.MEASUREMENTS_SCHEMA`, merged across windows,
    clipped to the range, without repeated samples, sorted.
    ``missing_types`` are types the server did not deliver for at least one window even after
    re-requesting them (partial 207 answers); ``empty_types`` are types delivered without any
    sample (the workload has no such data). ``rejects`` are unparsable samples with reasons.
    """

    workload_id: str
    start: datetime
    end: datetime
    step_seconds: int
    table: pa.Table
    metric_types: tuple[str, ...]
    missing_types: list[str]
    empty_types: list[str]
    rejects: list[dict[str, Any]]
    windows: int
    pod_id: str | None = None

    @property
    def status(self) -> str:
        """``complete``, or ``partial`` when a type is missing from at least one window."""
        return "partial" if self.missing_types else "complete"

    def series(self, metric_type: str) -> list[tuple[datetime, float | None]]:
        from workloads_etl.runai.measurements import series

        return series(self.table, metric_type)
