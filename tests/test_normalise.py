from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workloads_etl.lake.normalise.partition import normalise_responses
from workloads_etl.lake.normalise.records import FIELD_ISSUE_MARK, Normalised
from workloads_etl.lake.schemas import QUARANTINE, TELEMETRY, WORKLOAD_METRICS, WORKLOADS
from workloads_etl.openapi import enum_values, load_spec
from workloads_etl.runai.models import RawResponse
from workloads_etl.runai.values import parse_timestamps

WORKLOAD_SNAPSHOTS = WORKLOADS


def _pair(res: Normalised) -> tuple[pa.Table, pa.Table]:
    return res.rows, res.quarantine


def normalise_workloads(
    responses: list[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    return _pair(normalise_responses("workload_snapshots", responses, day, run_id))


def normalise_metrics(
    responses: list[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    return _pair(normalise_responses("workload_metrics", responses, day, run_id))


def normalise_telemetry(
    responses: list[RawResponse], day: date, run_id: str
) -> tuple[pa.Table, pa.Table]:
    return _pair(normalise_responses("telemetry", responses, day, run_id))


DAY = date(2024, 12, 20)
AT = datetime(2024, 12, 20, 23, 0, tzinfo=UTC)


def workload(**over: Any) -> dict[str, Any]:
    w: dict[str, Any] = {
        "tenantId": 1001,
        "runningPods": 1,
        "phaseUpdatedAt": "2022-06-08T11:28:24.131Z",
        "k8sPhaseUpdatedAt": "2022-06-08T11:28:24.131Z",
        "updatedAt": "2022-06-08T11:28:24.131Z",
        "source": "Control-plane",
        "deletedAt": None,
        "type": "runai-job",
        "name": "very-important-job",
        "id": str(uuid.uuid4()),
        "priority": 50,
        "priorityClassName": "high-priority",
        "submittedBy": "researcher@run.ai",
        "clusterId": "71f69d83-ba66-4822-adf5-55ce55efd210",
        "projectName": "proj-1",
        "projectId": "1",
        "departmentName": "department-1",
        "departmentId": "1",
        "namespace": "runai-proj-1",
        "createdAt": "2023-06-06 12:09:18.211",
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "k8sPhase": "Running",
        "category": "Train",
        "workloadRequestedResources": {
            "gpuRequestType": "portion",
            "gpu": {"request": 0.5, "limit": 1},
            "gpuMemory": {"request": "200Mi", "limit": "2G"},
            "cpu": {"request": 1, "limit": 1.5},
            "cpuMemory": {"request": "1Gi", "limit": None},
            "extendedResources": [{"resource": "x.io/foo", "quantity": "2"}],
        },
        "allocatedResources": {"gpu": 0.5, "gpuMemory": "12e+6", "cpu": 0.5, "cpuMemory": "0B"},
        "requestedPods": {"number": 2, "min": 1, "max": 4},
        "images": ["alpine:latest"],
        "requestedNodePools": ["default"],
        "environmentVariables": {"B": "2", "A": "1"},
    }
    w.update(over)
    return w


def page(
    items: list[Any], *, text: str | None = None, deleted: bool = False, at: datetime = AT
) -> RawResponse:
    body = text if text is not None else json.dumps({"workloads": items, "next": len(items)})
    return RawResponse(
        "get_workloads",
        "GET",
        "/api/v1/workloads",
        {"deleted": str(deleted).lower(), "limit": "500"},
        {},
        200,
        at,
        body,
    )


def test_spec_workload_fields_are_all_mapped() -> None:
    props = set(load_spec()["components"]["schemas"]["Workload"]["properties"])
    rec = {**{p: None for p in props}, "id": str(uuid.uuid4())}
    rows, q = normalise_workloads([page([rec])], DAY, "r1")
    assert q.num_rows == 0
    # every field is a column, except the write-only childrenIds, which is kept as extra
    extra = json.loads(rows["extra_fields_json"][0].as_py())
    assert extra == {"childrenIds": None}


def test_workload_flattening_and_types() -> None:
    w = workload(unknownNew={"b": 1, "a": [2]}, zeta=1)
    rows, q = normalise_workloads([page([w])], DAY, "run-1")
    assert q.num_rows == 0
    assert rows.schema == WORKLOAD_SNAPSHOTS
    r = rows.to_pylist()[0]
    assert r["workload_id"] == w["id"]
    assert r["snapshot_date"] == DAY
    assert r["snapshot_at"] == AT
    assert r["created_at"] == datetime(2023, 6, 6, 12, 9, 18, 211000, tzinfo=UTC)
    assert r["updated_at"] == datetime(2022, 6, 8, 11, 28, 24, 131000, tzinfo=UTC)
    assert r["deleted_at"] is None
    assert r["requested_gpu_memory_request_bytes"] == 200 * 2**20
    assert r["requested_gpu_memory_limit_bytes"] == 2e9
    assert r["requested_cpu_memory_request_bytes"] == 2**30
    assert r["requested_cpu_memory_limit_bytes"] is None
    assert r["requested_gpu_request"] == 0.5
    assert r["requested_cpu_limit_cores"] == 1.5
    assert r["allocated_gpu_memory_bytes"] == 12e6
    assert r["allocated_cpu_memory_bytes"] == 0.0
    assert r["pods_requested_gpu_request"] is None
    assert r["requested_pods_number"] == 2
    assert r["requested_pods_parallelism"] is None
    assert r["images"] == ["alpine:latest"]
    assert r["current_node_pools"] is None
    assert r["environment_variables_json"] == '{"A":"1","B":"2"}'
    assert json.loads(r["requested_extended_resources_json"]) == [
        {"resource": "x.io/foo", "quantity": "2"}
    ]
    assert r["extra_fields_json"] == '{"unknownNew":{"a":[2],"b":1},"zeta":1}'


def test_missing_optional_fields_become_null() -> None:
    w = {"id": str(uuid.uuid4()), "name": "minimal"}
    rows, q = normalise_workloads([page([w])], DAY, "r")
    assert q.num_rows == 0
    r = rows.to_pylist()[0]
    assert r["name"] == "minimal"
    assert r["phase"] is None
    assert r["allocated_gpu"] is None
    assert r["extra_fields_json"] is None


def workloads_of(*pages: RawResponse) -> Normalised:
    return normalise_responses("workload_snapshots", list(pages), DAY, "r9")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"id": None}, "missing required field id"),
        ({"id": "not-a-uuid"}, "id is not a uuid"),
        ({"id": 5}, "id is not a uuid"),
    ],
)
def test_records_without_usable_id_are_rejected(bad: dict[str, Any], reason: str) -> None:
    good = workload()
    w = workload(**bad)
    res = workloads_of(page([good, w]))
    assert res.rows["workload_id"].to_pylist() == [good["id"]]
    assert (res.records, res.rejected, res.field_issues, res.duplicates_dropped) == (2, 1, 0, 0)
    assert res.quarantine.schema == QUARANTINE
    (qr,) = res.quarantine.to_pylist()
    assert qr["reason"] == reason
    assert FIELD_ISSUE_MARK not in qr["reason"]
    assert json.loads(qr["raw_record"]) == w
    assert qr["dataset"] == "workload_snapshots"
    assert qr["run_id"] == "r9"
    assert qr["quarantine_date"] == DAY
    assert qr["quarantined_at"] == AT


def test_record_without_id_key_is_rejected() -> None:
    w = workload()
    del w["id"]
    res = workloads_of(page([w]))
    assert res.rows.num_rows == 0
    assert res.rejected == 1
    assert res.quarantine["reason"].to_pylist() == ["missing required field id"]


@pytest.mark.parametrize(
    ("bad", "column", "reason"),
    [
        (
            {
                "allocatedResources": {
                    "gpu": 0.5,
                    "gpuMemory": "12 gigs",
                    "cpu": 0.5,
                    "cpuMemory": "0B",
                }
            },
            "allocated_gpu_memory_bytes",
            "allocated_gpu_memory_bytes: unparsable quantity '12 gigs'",
        ),
        (
            {
                "allocatedResources": {
                    "gpu": 0.5,
                    "gpuMemory": "12e+6",
                    "cpu": 0.5,
                    "cpuMemory": "2GB",
                }
            },
            "allocated_cpu_memory_bytes",
            "allocated_cpu_memory_bytes: unparsable quantity '2GB'",
        ),
        ({"priority": "high"}, "priority", "priority: expected integer, got str"),
        ({"tenantId": 2**70}, "tenant_id", "tenantId: integer out of range"),
        ({"preemptible": "yes"}, "preemptible", "preemptible: expected boolean, got str"),
        ({"name": 5}, "name", "name: expected string, got int"),
        (
            {"idleAllocatedGpus": True},
            "idle_allocated_gpus",
            "idleAllocatedGpus: expected number, got bool",
        ),
        ({"createdAt": "yesterday"}, "created_at", "created_at: unparsable timestamp 'yesterday'"),
        (
            {"updatedAt": "2024-13-01T00:00:00Z"},
            "updated_at",
            "updated_at: unparsable timestamp '2024-13-01T00:00:00Z'",
        ),
        ({"completedAt": 17}, "completed_at", "completedAt: expected date-time string, got int"),
        ({"images": "alpine"}, "images", "images: expected array of valid strings"),
    ],
)
def test_one_bad_field_keeps_the_row_with_that_field_null(
    bad: dict[str, Any], column: str, reason: str
) -> None:
    filled = {"preemptible": True, "idleAllocatedGpus": 0.5, "completedAt": "2024-12-20T10:00:00Z"}
    good = workload(**filled)
    w = workload(**{**filled, **bad})
    res = workloads_of(page([good, w]))
    rows = {r["workload_id"]: r for r in res.rows.to_pylist()}
    assert list(rows) == [good["id"], w["id"]]
    assert rows[w["id"]][column] is None
    assert rows[good["id"]][column] is not None
    # the other fields of the record are kept as for a clean record
    same = {k: v for k, v in rows[good["id"]].items() if k not in (column, "workload_id")}
    assert {k: rows[w["id"]][k] for k in same} == same
    assert (res.records, res.rejected, res.field_issues, res.duplicates_dropped) == (2, 0, 1, 0)
    (qr,) = res.quarantine.to_pylist()
    assert qr["reason"] == f"{reason} (row kept, field set to null)"
    assert FIELD_ISSUE_MARK in qr["reason"]
    assert json.loads(qr["raw_record"]) == w


def test_non_object_nested_value_nulls_all_its_columns() -> None:
    w = workload(requestedPods=3, workloadRequestedResources={"gpu": "half", "cpu": {"request": 2}})
    res = workloads_of(page([w]))
    (r,) = res.rows.to_pylist()
    assert [r[f"requested_pods_{k}"] for k in ("number", "min", "max")] == [None, None, None]
    assert (r["requested_gpu_request"], r["requested_gpu_limit"]) == (None, None)
    assert r["requested_cpu_request_cores"] == 2.0
    assert r["allocated_gpu"] == 0.5
    assert res.quarantine["reason"].to_pylist() == [
        "requestedPods: expected object, got int; "
        "workloadRequestedResources.gpu: expected object, got str "
        "(row kept, fields set to null)"
    ]


def test_several_bad_fields_give_one_quarantine_row() -> None:
    w = workload(
        priority="high",
        createdAt="yesterday",
        allocatedResources={"gpu": 1, "gpuMemory": "12 gigs", "cpuMemory": "1Gi"},
    )
    res = workloads_of(page([w]))
    (r,) = res.rows.to_pylist()
    assert (r["priority"], r["created_at"], r["allocated_gpu_memory_bytes"]) == (None, None, None)
    assert (r["allocated_gpu"], r["allocated_cpu_memory_bytes"]) == (1.0, 2**30)
    assert r["updated_at"] == datetime(2022, 6, 8, 11, 28, 24, 131000, tzinfo=UTC)
    assert res.quarantine["reason"].to_pylist() == [
        "priority: expected integer, got str; "
        "created_at: unparsable timestamp 'yesterday'; "
        "allocated_gpu_memory_bytes: unparsable quantity '12 gigs' "
        "(row kept, fields set to null)"
    ]
    assert (res.rejected, res.field_issues, res.quarantine.num_rows) == (0, 1, 1)


def test_unparsable_page_and_non_object_record() -> None:
    res = workloads_of(page([], text="<html>oops</html>"), page(["just a string", workload()]))
    assert res.rows.num_rows == 1
    assert (res.records, res.rejected, res.field_issues) == (3, 2, 0)
    assert res.quarantine["reason"].to_pylist() == [
        "unparsable workloads page: body is not JSON: Expecting value: line 1 column 1 (char 0)",
        "workload is a str, expected an object",
    ]
    assert res.quarantine["raw_record"].to_pylist() == ["<html>oops</html>", '"just a string"']


def test_identical_repeats_are_dropped_not_quarantined() -> None:
    a, b, c = workload(), workload(), workload()
    b_reordered = dict(reversed(list(b.items())))  # same content, other key order
    res = workloads_of(page([a, b]), page([b_reordered, c]), page([a, b, c]))
    assert res.rows["workload_id"].to_pylist() == [a["id"], b["id"], c["id"]]
    assert res.quarantine.num_rows == 0
    assert (res.records, res.rejected, res.duplicates_dropped) == (7, 0, 4)


def test_identical_repeats_of_a_record_with_a_bad_field_give_one_quarantine_row() -> None:
    w = workload(allocatedResources={"gpuMemory": "12 gigs"})
    res = workloads_of(page([w]), page([w]))
    assert res.rows["workload_id"].to_pylist() == [w["id"]]
    assert (res.rejected, res.field_issues, res.duplicates_dropped) == (0, 1, 1)
    assert res.quarantine["reason"].to_pylist() == [
        "allocated_gpu_memory_bytes: unparsable quantity '12 gigs' (row kept, field set to null)"
    ]


def test_rejected_records_are_never_dropped_as_repeats() -> None:
    bad = workload(id="broken")
    res = workloads_of(page([bad, bad]))
    assert (res.rows.num_rows, res.rejected, res.duplicates_dropped) == (0, 2, 0)
    assert res.quarantine["reason"].to_pylist() == ["id is not a uuid"] * 2


def test_drifted_offset_paging_gives_no_quarantine() -> None:
    """A listing that changes between pages: offsets shift and records repeat."""
    listing = [workload(id=str(uuid.UUID(int=i + 1)), name=f"w{i}") for i in range(95)]
    pages = []
    for offset in range(0, 100, 10):
        if offset == 30:  # two workloads submitted while paging: both sort first
            listing[:0] = [workload(id=str(uuid.UUID(int=1000 + k))) for k in range(2)]
        pages.append(page(listing[offset : offset + 10]))
    pages += [page(listing[o : o + 10]) for o in range(0, len(listing), 10)]  # second pass
    res = workloads_of(*pages)
    assert res.rows.num_rows == 97
    assert sorted(res.rows["workload_id"].to_pylist()) == sorted(w["id"] for w in listing)
    assert res.quarantine.num_rows == 0
    assert res.rejected == 0
    # first pass: 3 pages of the 95-long list, then offsets 30..90 of the 97-long one (67);
    # second pass: all 97. Two records of the first pass repeat on the page after the shift.
    assert res.records == 30 + 67 + 97
    assert res.duplicates_dropped == res.records - 97


def test_different_copies_keep_latest_updated_at() -> None:
    wid = str(uuid.uuid4())
    old = workload(id=wid, updatedAt="2024-01-01T00:00:00Z", phase="Pending")
    new = workload(id=wid, updatedAt="2024-01-02T00:00:00Z", phase="Running")
    res = workloads_of(page([new, old, new]))
    assert res.rows["phase"].to_pylist() == ["Running"]
    assert (res.records, res.rejected, res.duplicates_dropped) == (3, 1, 1)
    (qr,) = res.quarantine.to_pylist()
    assert qr["reason"] == (
        f"duplicate workload id {wid} in one snapshot "
        "(different content; the copy with the latest updatedAt kept)"
    )
    assert json.loads(qr["raw_record"]) == old


def test_different_copies_same_updated_at_keep_latest_received() -> None:
    wid = str(uuid.uuid4())
    early = workload(id=wid, phase="Pending")
    late = workload(id=wid, phase="Running")
    later_page = page([late], at=datetime(2024, 12, 20, 23, 5, tzinfo=UTC))
    res = workloads_of(later_page, page([early]))  # the later answer is read first
    assert res.rows["phase"].to_pylist() == ["Running"]
    assert res.rejected == 1
    assert json.loads(res.quarantine["raw_record"][0].as_py()) == early


def test_copy_with_unparsable_updated_at_loses_and_is_not_also_a_field_issue() -> None:
    wid = str(uuid.uuid4())
    good = workload(id=wid, updatedAt="2024-01-01T00:00:00Z", phase="Pending")
    broken = workload(id=wid, updatedAt="tomorrow", phase="Running")
    res = workloads_of(page([good, broken]))
    assert res.rows["phase"].to_pylist() == ["Pending"]
    assert (res.rejected, res.field_issues) == (1, 0)
    assert "different content" in res.quarantine["reason"][0].as_py()


def test_batches_change_nothing_and_a_second_pass_reads_only_losers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records are typed a few at a time and a losing copy's text is read in a second pass:
    the result is the same as in one batch, whatever page the copies sit on."""
    from workloads_etl.lake.normalise import workloads as module

    wid = str(uuid.UUID(int=7))
    pages = [
        page([workload(id=str(uuid.UUID(int=i)), name=f"w{i}") for i in range(1, 7)]),
        page(
            [
                workload(id=str(uuid.UUID(int=8)), allocatedResources={"gpuMemory": "12 gigs"}),
                {"id": "not-a-uuid"},
                workload(id=wid, updatedAt="2024-01-01T00:00:00Z", phase="Pending"),
            ]
        ),
        page([workload(id=str(uuid.UUID(int=i))) for i in range(9, 14)]),
        page([workload(id=wid, updatedAt="2024-01-02T00:00:00Z", phase="Running")]),
    ]
    whole = workloads_of(*pages)

    class Twice:
        """Counts the passes over the pages."""

        passes = 0

        def __iter__(self) -> Any:
            Twice.passes += 1
            return iter(pages)

    monkeypatch.setattr(module, "BATCH_RECORDS", 2)
    batched = normalise_responses("workload_snapshots", Twice(), DAY, "r9")
    assert Twice.passes == 2  # one losing copy: its text is read again
    assert batched.rows.equals(whole.rows)
    assert batched.quarantine.equals(whole.quarantine)
    assert (batched.records, batched.rejected, batched.field_issues) == (15, 2, 1)
    assert batched.rows.num_rows == 13
    reasons = batched.quarantine["reason"].to_pylist()
    assert reasons[0] == "id is not a uuid"
    assert reasons[1].startswith(f"duplicate workload id {wid}")
    assert json.loads(batched.quarantine["raw_record"][1].as_py())["phase"] == "Pending"
    assert "12 gigs" in reasons[2]

    Twice.passes = 0
    del pages[3]  # no losing copy: one pass
    assert normalise_responses("workload_snapshots", Twice(), DAY, "r9").rows.num_rows == 13
    assert Twice.passes == 1


def test_unknown_enum_value_is_kept() -> None:
    assert "Hibernating" not in enum_values("Phase")
    rows, q = normalise_workloads([page([workload(phase="Hibernating")])], DAY, "r")
    assert rows["phase"].to_pylist() == ["Hibernating"]
    assert q.num_rows == 0


def test_timestamp_forms() -> None:
    ts, bad = parse_timestamps(
        pa.array(
            [
                "2024-12-20T14:30:00Z",
                "2023-06-06 12:09:18.211",
                "2024-12-20T14:30:00.123456789+02:00",
                None,
                "20/12/2024",
                "2024-02-30T00:00:00Z",
            ]
        )
    )
    assert ts.to_pylist() == [
        datetime(2024, 12, 20, 14, 30, tzinfo=UTC),
        datetime(2023, 6, 6, 12, 9, 18, 211000, tzinfo=UTC),
        datetime(2024, 12, 20, 12, 30, 0, 123456, tzinfo=UTC),
        None,
        None,
        None,
    ]
    assert bad.to_pylist() == [False, False, False, False, True, True]


# ----------------------------------------------------------------------------- metrics

WID = str(uuid.uuid4())


def metrics_resp(body: Any, wid: str = WID, n: str = "1440") -> RawResponse:
    text = body if isinstance(body, str) else json.dumps(body)
    return RawResponse(
        "get_workload_metrics",
        "GET",
        f"/api/v1/workloads/{wid}/metrics",
        {
            "start": "2024-12-20T00:00:00Z",
            "end": "2024-12-21T00:00:00Z",
            "numberOfSamples": n,
            "metricType": "GPU_UTILIZATION,CPU_USAGE_CORES",
        },
        {"workloadId": wid},
        200,
        AT,
        text,
    )


def test_metrics_long_rows_both_timestamp_forms() -> None:
    body = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "labels": {"gpu": "0", "a": "x"},
                "values": [
                    {"value": "85", "timestamp": "2024-12-20T14:30:00Z"},
                    {"value": "92.5", "timestamp": "2024-12-20 14:31:00.000"},
                    {"value": "1", "timestamp": "2024-12-21T00:00:00Z"},  # next day: out of window
                ],
            },
            {"type": "CPU_USAGE_CORES", "labels": None, "values": None},
            {
                "type": "CPU_USAGE_CORES",
                "values": [{"value": "0.5", "timestamp": "2024-12-20T00:00:00Z"}],
            },
        ]
    }
    rows, q = normalise_metrics([metrics_resp(body)], DAY, "m1")
    assert q.num_rows == 0
    assert rows.schema == WORKLOAD_METRICS
    got = sorted(rows.to_pylist(), key=lambda r: (r["metric_type"], r["ts"]))
    assert [(r["metric_type"], r["labels_json"], r["value"], r["step_seconds"]) for r in got] == [
        ("CPU_USAGE_CORES", None, 0.5, 60),
        ("GPU_UTILIZATION", '{"a":"x","gpu":"0"}', 85.0, 60),
        ("GPU_UTILIZATION", '{"a":"x","gpu":"0"}', 92.5, 60),
    ]
    assert got[2]["ts"] == datetime(2024, 12, 20, 14, 31, tzinfo=UTC)
    assert {r["workload_id"] for r in got} == {WID}
    assert {r["usage_date"] for r in got} == {DAY}


def test_metrics_quarantine_reasons() -> None:
    body = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "values": [
                    {"value": "85", "timestamp": "2024-12-20T01:00:00Z"},
                    {"value": "86", "timestamp": "2024-12-20T01:00:00Z"},
                    {"value": "abc", "timestamp": "2024-12-20T02:00:00Z"},
                    {"value": "NaN", "timestamp": "2024-12-20T03:00:00Z"},
                    {"value": "1", "timestamp": "noon"},
                    {"value": "1", "timestamp": None},
                ],
            },
            {"type": "X", "values": "oops"},
        ]
    }
    rows, q = normalise_metrics(
        [metrics_resp(body), metrics_resp("not json"), metrics_resp({"m": 1}, wid="nope")], DAY, "m"
    )
    assert rows["value"].to_pylist() == [85.0]
    reasons = q["reason"].to_pylist()
    for expected in (
        "different value",
        "not numeric",
        "not finite",
        "unparsable timestamp",
        "missing timestamp",
        "values is not an array",
        "body is not JSON",
        "workloadId path parameter is not a uuid",
    ):
        assert any(expected in r for r in reasons), expected
    assert len(reasons) == 8
    raw = dict(zip(reasons, q["raw_record"].to_pylist(), strict=True))
    (abc,) = [v for k, v in raw.items() if "not numeric" in k]
    assert json.loads(abc) == {"value": "abc", "timestamp": "2024-12-20T02:00:00Z"}


def test_metrics_duplicates_across_responses_mixed_forms_sorted_rows() -> None:
    wid2 = str(uuid.UUID(int=1))  # sorts before WID
    first = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "labels": {"gpu": "0"},
                "values": [
                    {"value": str(i), "timestamp": f"2024-12-20T{h:02d}:00:00Z"}
                    for i, h in enumerate([5, 3, 4])
                ],
            }
        ]
    }
    second = {  # the next window repeats 04:00 (same and other value) in the other form
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "labels": {"gpu": "0"},
                "values": [
                    {"value": "2", "timestamp": "2024-12-20 04:00:00"},
                    {"value": "7", "timestamp": "2024-12-20 05:00:00.000"},
                    {"value": "8", "timestamp": "2024-12-20 06:00:00"},
                    {"value": "9", "timestamp": "2024-02-30 06:00:00"},
                ],
            }
        ]
    }
    other = {
        "measurements": [
            {
                "type": "CPU_USAGE_CORES",
                "values": [{"value": "1.5", "timestamp": "2024-12-20T01:00:00Z"}],
            }
        ]
    }
    rows, q = normalise_metrics(
        [metrics_resp(first), metrics_resp(second), metrics_resp(other, wid=wid2)], DAY, "d"
    )
    assert [(r["workload_id"], r["ts"].hour, r["value"]) for r in rows.to_pylist()] == [
        (wid2, 1, 1.5),
        (WID, 3, 1.0),
        (WID, 4, 2.0),
        (WID, 5, 0.0),
        (WID, 6, 8.0),
    ]
    reasons = sorted(q["reason"].to_pylist())
    assert len(reasons) == 3
    assert "different value" in reasons[0]
    assert "identical copy" in reasons[1]
    assert reasons[2].startswith("unparsable timestamp")
    raws = [json.loads(r) for r in q["raw_record"].to_pylist()]
    assert {"value": "9", "timestamp": "2024-02-30 06:00:00"} in raws
    assert {"value": "7", "timestamp": "2024-12-20 05:00:00.000"} in raws


def test_metrics_bad_request_params_quarantine_response() -> None:
    rows, q = normalise_metrics([metrics_resp({"measurements": []}, n="0")], DAY, "m")
    assert rows.num_rows == 0
    assert "numberOfSamples=0" in q["reason"][0].as_py()


# --------------------------------------------------------------------------- telemetry


def telemetry_resp(body: Any, group_by: str | None = "department") -> RawResponse:
    params = {"telemetryType": "GPU_ALLOCATION"}
    if group_by:
        params["groupBy"] = group_by
    return RawResponse(
        "get_workloads_telemetry",
        "GET",
        "/api/v1/workloads/telemetry",
        params,
        {},
        200,
        AT,
        json.dumps(body),
    )


def test_telemetry_rows_and_quarantine() -> None:
    body = {
        "type": "GPU_ALLOCATION",
        "timestamp": "2023-06-06 12:09:18.211",
        "values": [
            {"value": "85", "groups": [{"key": "department", "value": "1", "name": "dep-A"}]},
            {"value": "3", "groups": [{"key": "department", "value": "2"}]},
            {"value": "x"},
            {"value": "1", "groups": [{}, {}, {}]},
        ],
    }
    rows, q = normalise_telemetry([telemetry_resp(body)], DAY, "t")
    assert rows.schema == TELEMETRY
    got = rows.to_pylist()
    assert [(r["group1_value"], r["group1_name"], r["value"]) for r in got] == [
        ("1", "dep-A", 85.0),
        ("2", None, 3.0),
    ]
    assert got[0]["timestamp"] == datetime(2023, 6, 6, 12, 9, 18, 211000, tzinfo=UTC)
    assert got[0]["group_by"] == "department"
    assert got[0]["fetched_at"] == AT
    assert q.num_rows == 2


# ------------------------------------------------------------------- property-based

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=8),
)
_json = st.recursive(
    _json_leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=3), st.dictionaries(st.text(max_size=5), c, max_size=3)
    ),
    max_leaves=6,
)
_ts = st.one_of(
    st.sampled_from(
        ["2024-12-20T14:30:00Z", "2023-06-06 12:09:18.211", "garbage", "2024-02-30T00:00:00Z"]
    ),
    _json_leaf,
)
_qty = st.one_of(st.sampled_from(["200Mi", "0B", "1e3", "1KiB", "x", "-1.5Gi"]), _json_leaf)
_field = st.sampled_from(
    [
        "id",
        "name",
        "priority",
        "createdAt",
        "updatedAt",
        "preemptible",
        "allocatedResources",
        "workloadRequestedResources",
        "images",
        "requestedPods",
        "phase",
        "extraThing",
        "idleAllocatedGpus",
    ]
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)  # not even an object
    ids = [str(uuid.UUID(int=i)) for i in range(4)]
    rec = workload(id=draw(st.sampled_from([*ids, "bad", None])))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(_field)
        if name in ("createdAt", "updatedAt"):
            rec[name] = draw(_ts)
        elif name in ("allocatedResources",):
            rec[name] = {"cpuMemory": draw(_qty), "gpu": draw(_json_leaf)}
        elif name == "workloadRequestedResources":
            rec[name] = draw(
                st.one_of(_json, st.builds(lambda q: {"gpuMemory": {"request": q}}, _qty))
            )
        else:
            rec[name] = draw(_json)
    if draw(st.booleans()):
        del rec["id"]
    return rec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(), max_size=12), st.integers(0, 12))
def test_property_workloads_account_for_every_record(recs: list[Any], cut: int) -> None:
    # Two pages, the second repeating the tail of the first, as drifted offset paging does.
    received = recs + recs[cut:]
    res = normalise_responses("workload_snapshots", [page(recs), page(recs[cut:])], DAY, "p")
    rows, q = res.rows, res.quarantine
    assert rows.schema == WORKLOAD_SNAPSHOTS
    assert q.schema == QUARANTINE
    assert res.records == len(received)
    # Every record is a row, a rejected record (quarantined) or a dropped identical repeat.
    assert rows.num_rows + res.rejected + res.duplicates_dropped == res.records
    assert q.num_rows == res.rejected + res.field_issues
    # Expected counts, worked out independently of the normaliser.
    uuids = {str(uuid.UUID(int=i)) for i in range(4)}
    usable = [r for r in received if isinstance(r, dict) and str(r.get("id")) in uuids]
    distinct = {json.dumps(r, sort_keys=True) for r in usable}
    ids = {r["id"] for r in usable}
    assert res.duplicates_dropped == len(usable) - len(distinct)
    assert res.rejected == (len(received) - len(usable)) + (len(distinct) - len(ids))
    assert sorted(rows["workload_id"].to_pylist()) == sorted(ids)
    # Every quarantine row has a reason and its raw record round-trips to an input record;
    # the field-issue rows belong to kept rows, one each.
    inputs = {json.dumps(r, sort_keys=True) for r in received}
    issue_ids = []
    for reason, raw in zip(q["reason"].to_pylist(), q["raw_record"].to_pylist(), strict=True):
        assert reason
        record = json.loads(raw)
        assert json.dumps(record, sort_keys=True) in inputs
        if FIELD_ISSUE_MARK in reason:
            issue_ids.append(record["id"])
    assert len(issue_ids) == res.field_issues == len(set(issue_ids))
    assert set(issue_ids) <= ids


_point = st.fixed_dictionaries(
    {
        "value": st.one_of(st.sampled_from(["1", "2.5", "1e3", "NaN", "x", ""]), _json_leaf),
        "timestamp": st.one_of(
            st.sampled_from(
                ["2024-12-20T00:00:00Z", "2024-12-20 10:00:00", "2024-12-21T00:00:00Z", "bad"]
            ),
            st.none(),
        ),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["GPU_UTILIZATION", "CPU_USAGE_CORES"]),
                "labels": st.one_of(
                    st.none(),
                    st.dictionaries(
                        st.sampled_from(["gpu", "pod"]), st.sampled_from(["0", "1"]), max_size=2
                    ),
                ),
                "values": st.lists(st.one_of(_point, _json_leaf), max_size=6),
            }
        ),
        max_size=4,
    )
)
def test_property_metrics_account_for_every_point(measurements: list[dict[str, Any]]) -> None:
    received = sum(len(m["values"]) for m in measurements)
    rows, q = normalise_metrics([metrics_resp({"measurements": measurements})], DAY, "p")
    out_of_window = sum(
        1
        for m in measurements
        for v in m["values"]
        if isinstance(v, dict) and v["timestamp"] == "2024-12-21T00:00:00Z"
    )
    assert rows.num_rows + q.num_rows + out_of_window == received
    assert all(q["reason"].to_pylist())
    inputs = [json.dumps(v, sort_keys=True) for m in measurements for v in m["values"]]
    for raw in q["raw_record"].to_pylist():
        assert json.dumps(json.loads(raw), sort_keys=True) in inputs


# ------------------------------------------------------------ physical bounds, text, depth


def _field_issues(q: pa.Table) -> dict[str, str]:
    """``{workload id: reason}`` of field-issue quarantine rows."""
    return {
        json.loads(raw)["id"]: reason
        for reason, raw in zip(q["reason"].to_pylist(), q["raw_record"].to_pylist(), strict=True)
        if FIELD_ISSUE_MARK in reason
    }


@pytest.mark.parametrize(
    ("over", "column", "reason"),
    [
        (
            {"allocatedResources": {"gpu": -1}},
            "allocated_gpu",
            "allocatedResources.gpu: -1 is negative",
        ),
        (
            {"allocatedResources": {"gpu": 1e308}},
            "allocated_gpu",
            "allocatedResources.gpu: 1e+308 is above the GPU ceiling",
        ),
        ({"totalRunningTimeSeconds": -1}, "total_running_time_seconds", "-1 is negative"),
        ({"runningPods": -3}, "running_pods", "runningPods: -3 is negative"),
        (
            {"workloadRequestedResources": {"cpuMemory": {"request": "-1Gi"}}},
            "requested_cpu_memory_request_bytes",
            "requested_cpu_memory_request_bytes: '-1Gi' is negative",
        ),
        ({"name": "job\ud800"}, "name", "name: invalid Unicode (a lone surrogate)"),
        ({"images": ["ok", "bad\udfff"]}, "images", "images: expected array of valid strings"),
    ],
)
def test_values_no_cluster_can_have_are_quarantined_and_the_row_kept(
    over: dict[str, Any], column: str, reason: str
) -> None:
    bad, good = workload(**over), workload(totalRunningTimeSeconds=60)
    res = workloads_of(page([bad, good]))
    rows = res.rows.to_pylist()
    assert [r["workload_id"] for r in rows] == [bad["id"], good["id"]]  # still listed, charged
    assert rows[0][column] is None and rows[1][column] is not None
    assert reason in _field_issues(res.quarantine)[bad["id"]]
    res.quarantine["raw_record"].to_pylist()[0].encode("utf-8")  # quarantine is valid UTF-8


def test_the_gpu_ceiling_is_a_setting() -> None:
    from workloads_etl.lake.bounds import Limits

    big = workload(allocatedResources={"gpu": 16})
    default = normalise_responses("workload_snapshots", [page([big])], DAY, "r")
    assert default.rows["allocated_gpu"].to_pylist() == [16.0]
    small = normalise_responses("workload_snapshots", [page([big])], DAY, "r", Limits(max_gpus=8))
    assert small.rows["allocated_gpu"].to_pylist() == [None]
    assert "16 is above the GPU ceiling" in small.quarantine["reason"][0].as_py()


def test_a_value_nested_too_deep_is_quarantined_at_any_depth() -> None:
    deep_ok = workload(additionalFields={"a": {"b": {"c": 1}}})
    nested = workload()
    text = json.dumps({"workloads": [deep_ok, nested], "next": 2})
    # 100,000 levels: beyond what the standard decoder takes.
    text = text.replace(
        '"id": "' + nested["id"] + '"',
        '"id": "' + nested["id"] + '", "hostile": ' + "[" * 100_000 + "]" * 100_000,
    )
    res = workloads_of(page([], text=text))
    assert res.rows.num_rows == 2
    assert res.rows["additional_fields_json"].to_pylist()[0] == '{"a":{"b":{"c":1}}}'
    issues = _field_issues(res.quarantine)
    assert list(issues) == [nested["id"]]
    assert "hostile: nested deeper than 32 levels" in issues[nested["id"]]


def test_a_json_field_with_a_lone_surrogate_is_kept_escaped() -> None:
    w = workload(additionalFields={"note": "x\ud800"})
    res = workloads_of(page([w]))
    kept = res.rows["additional_fields_json"].to_pylist()[0]
    assert json.loads(kept) == {"note": "x\ud800"} and kept.isascii()
    assert res.quarantine.num_rows == 0


def test_metric_values_outside_their_bounds_are_quarantined() -> None:
    body = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "values": [
                    {"value": "50", "timestamp": "2024-12-20T01:00:00Z"},
                    {"value": "150", "timestamp": "2024-12-20T01:01:00Z"},
                    {"value": "-1", "timestamp": "2024-12-20T01:02:00Z"},
                ],
            },
            {
                "type": "GPU_ALLOCATION",
                "values": [
                    {"value": "1e308", "timestamp": "2024-12-20T01:00:00Z"},
                    {"value": "2", "timestamp": "2024-12-20T01:01:00Z"},
                ],
            },
            {
                "type": "CPU_MEMORY_USAGE_BYTES",
                "values": [{"value": "-5", "timestamp": "2024-12-20T01:00:00Z"}],
            },
            {
                "type": "NEW_TYPE_OF_A_NEWER_API",
                "values": [{"value": "-7", "timestamp": "2024-12-20T01:00:00Z"}],
            },
        ]
    }
    rows, q = normalise_metrics([metrics_resp(body)], DAY, "m")
    kept = zip(rows["metric_type"].to_pylist(), rows["value"].to_pylist(), strict=True)
    assert sorted(kept) == [
        ("GPU_ALLOCATION", 2.0),
        ("GPU_UTILIZATION", 50.0),
        ("NEW_TYPE_OF_A_NEWER_API", -7.0),  # no declared bounds: kept as sent
    ]
    reasons = sorted(q["reason"].to_pylist())
    assert len(reasons) == 4
    assert any(r.startswith("value 150 is above 100 (") for r in reasons)
    assert any(r.startswith("value -1 is negative (") for r in reasons)
    assert any("value 1e+308 is above the GPU ceiling" in r for r in reasons)
    assert any("-5 is negative" in r and "CPU_MEMORY_USAGE_BYTES" in r for r in reasons)


def test_metric_labels_too_deep_or_with_bad_text_do_not_crash() -> None:
    deep: Any = "x"
    for _ in range(40):
        deep = {"k": deep}
    body = {
        "measurements": [
            {
                "type": "GPU_UTILIZATION",
                "labels": deep,
                "values": [{"value": "5", "timestamp": "2024-12-20T01:00:00Z"}],
            },
            {
                "type": "GPU_UTILIZATION",
                "labels": {"gpu": "0\ud800"},
                "values": [{"value": "6", "timestamp": "2024-12-20T01:00:00Z"}],
            },
            {"type": "GPU_\ud800", "values": [{"value": "7", "timestamp": "2024-12-20T01:00:00Z"}]},
        ]
    }
    rows, q = normalise_metrics([metrics_resp(body)], DAY, "m")
    assert rows["value"].to_pylist() == [6.0]
    assert json.loads(rows["labels_json"][0].as_py()) == {"gpu": "0\ud800"}
    reasons = q["reason"].to_pylist()
    assert any("labels nested deeper than 32 levels" in r for r in reasons)
    assert any("measurement type missing or not a valid string" in r for r in reasons)


def test_a_negative_telemetry_value_is_quarantined() -> None:
    body = {
        "type": "GPU_ALLOCATION",
        "timestamp": "2024-12-20T23:00:00Z",
        "values": [
            {"value": "3", "groups": [{"key": "department", "value": "d1", "name": "D1"}]},
            {"value": "-5", "groups": [{"key": "department", "value": "d2", "name": "D2"}]},
            {"value": "4", "groups": [{"key": "department", "value": "d\ud800", "name": "D3"}]},
        ],
    }
    rows, q = normalise_telemetry([telemetry_resp(body)], DAY, "t")
    assert rows["value"].to_pylist() == [3.0]
    assert sorted(q["reason"].to_pylist()) == [
        "groups.value: invalid Unicode (a lone surrogate)",
        "value -5 is negative",
    ]
