"""Columnar parsing of metrics answers and merging of windows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from workloads_etl.openapi import load_spec
from workloads_etl.runai.errors import MeasurementsParseError
from workloads_etl.runai.measurements import (
    MEASUREMENTS_SCHEMA,
    merge_windows,
    parse_measurements,
)

T0 = datetime(2024, 12, 20, 14, 30, tzinfo=UTC)


def _body(*series: tuple[str, dict[str, str] | None, list[tuple[str | None, str | None]]]) -> str:
    return json.dumps(
        {
            "measurements": [
                {
                    "type": t,
                    "labels": labels,
                    "values": [{"value": v, "timestamp": ts} for v, ts in values],
                }
                for t, labels, values in series
            ]
        }
    )


def test_spec_example_parses() -> None:
    example = load_spec()["components"]["schemas"]["MetricsCompositeResponse"]["example"]
    parsed = parse_measurements(example)
    assert parsed.rejects == []
    assert parsed.table.schema == MEASUREMENTS_SCHEMA
    rows = parsed.table.to_pylist()
    assert [r["value"] for r in rows] == [85.0, 92.0, 78.0]
    assert rows[0]["labels_json"] == '{"gpu":"0"}'
    assert rows[1]["ts"] == T0 + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-20T14:30:00Z", T0),
        ("2024-12-20T14:30:00.5Z", T0 + timedelta(milliseconds=500)),
        ("2024-12-20 14:30:00", T0),
        ("2023-06-06 12:09:18.211", datetime(2023, 6, 6, 12, 9, 18, 211000, tzinfo=UTC)),
        ("2024-12-20T16:30:00+02:00", T0),
        ("2024-12-20T14:30:00.123456789Z", T0 + timedelta(microseconds=123456)),
        ("2024-12-20T09:30:00-0500", T0),
    ],
)
def test_both_timestamp_forms(text: str, expected: datetime) -> None:
    parsed = parse_measurements(_body(("GPU_UTILIZATION", None, [("1.5", text)])))
    assert parsed.rejects == []
    assert parsed.table.column("ts").to_pylist() == [expected]
    assert parsed.table.column("labels_json").to_pylist() == [None]


def test_bad_samples_are_rejected_with_reasons_not_dropped() -> None:
    body = _body(
        (
            "CPU_USAGE_CORES",
            {"pod": "a", "container": "b"},
            [
                ("1", "2024-12-20T14:30:00Z"),
                ("one", "2024-12-20T14:31:00Z"),
                ("2", None),
                ("3", "yesterday"),
                ("4", "2024-02-30 10:00:00"),
                (None, "2024-12-20T14:32:00Z"),
                ("NaN", "2024-12-20T14:33:00Z"),
            ],
        )
    )
    parsed = parse_measurements(body)
    assert parsed.table.num_rows == 2
    vals = parsed.table.column("value").to_pylist()
    assert vals[0] == 1.0
    assert vals[1] != vals[1]  # NaN is a value, not a reject
    reasons = sorted(r["reason"] for r in parsed.rejects)
    assert reasons == [
        "null timestamp",
        "null value",
        "unparsable timestamp",
        "unparsable timestamp",
        "unparsable value",
    ]
    by_value = {r["record"]["value"]: r for r in parsed.rejects}
    assert by_value["one"]["record"]["timestamp"] == "2024-12-20T14:31:00Z"
    assert by_value["4"]["record"]["labels_json"] == '{"container":"b","pod":"a"}'


def test_numbers_instead_of_strings_are_accepted_and_junk_rejected() -> None:
    body = {
        "measurements": [
            {"type": "A", "values": [{"value": 5, "timestamp": "2024-12-20T14:30:00Z"}, "junk"]},
            {"type": "B", "values": None},
            {"labels": {}, "values": []},
        ]
    }
    parsed = parse_measurements(body)
    assert parsed.table.to_pylist() == [
        {"metric_type": "A", "labels_json": None, "ts": T0, "value": 5.0}
    ]
    assert parsed.types == ["A", "B"]
    assert {r["reason"] for r in parsed.rejects} == {
        "sample is not an object",
        "measurement type missing or not a valid string",
    }


def test_unreadable_body_raises_typed_error() -> None:
    with pytest.raises(MeasurementsParseError):
        parse_measurements("{not json")
    with pytest.raises(MeasurementsParseError):
        parse_measurements(b'{"histogram": []}')


def test_merge_windows_clips_dedups_keeps_first_and_sorts() -> None:
    t = [T0 + timedelta(minutes=i) for i in range(4)]

    def table(rows: list[tuple[str, str | None, datetime, float]]) -> pa.Table:
        return pa.Table.from_pylist(
            [{"metric_type": m, "labels_json": lj, "ts": ts, "value": v} for m, lj, ts, v in rows],
            schema=MEASUREMENTS_SCHEMA,
        )

    w1 = table([("B", None, t[1], 1.0), ("A", None, t[0], 2.0), ("A", None, t[1], 3.0)])
    w2 = table(
        [
            ("A", None, t[1], 99.0),  # repeated boundary sample: the first one wins
            ("A", '{"gpu":"1"}', t[1], 4.0),  # same ts, other labels: kept
            ("A", None, t[2], 5.0),
            ("A", None, t[3], 6.0),  # at end: clipped
        ]
    )
    merged = merge_windows([w1, w2], T0, t[3])
    assert merged.to_pylist() == [
        {"metric_type": "A", "labels_json": None, "ts": t[0], "value": 2.0},
        {"metric_type": "A", "labels_json": None, "ts": t[1], "value": 3.0},
        {"metric_type": "A", "labels_json": None, "ts": t[2], "value": 5.0},
        {"metric_type": "A", "labels_json": '{"gpu":"1"}', "ts": t[1], "value": 4.0},
        {"metric_type": "B", "labels_json": None, "ts": t[1], "value": 1.0},
    ]
    assert merge_windows([], T0, t[3]).num_rows == 0
    assert merge_windows([w1], t[3], t[3] + timedelta(minutes=1)).num_rows == 0


def test_mixed_timestamp_forms_in_one_answer() -> None:
    body = _body(
        ("A", None, [("1", "2024-12-20 14:30:00"), ("2", "2024-12-20T14:31:00Z")]),
        ("B", None, [("3", "2024-12-20T14:32:00.250+00:00"), ("4", "2024-12-20 14:33:00.5")]),
    )
    parsed = parse_measurements(body)
    assert parsed.rejects == []
    assert parsed.table.column("ts").to_pylist() == [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2, milliseconds=250),
        T0 + timedelta(minutes=3, milliseconds=500),
    ]
    assert parsed.table.column("value").to_pylist() == [1.0, 2.0, 3.0, 4.0]


def test_one_bad_sample_in_a_long_series_rejects_only_that_sample() -> None:
    values: list[tuple[str | None, str | None]] = [
        ("1.5", (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")) for i in range(3000)
    ]
    values[1234] = ("2", "2024-13-01T00:00:00Z")  # well shaped, impossible month
    values[2345] = ("1e", "2024-12-20T15:00:00Z")
    parsed = parse_measurements(_body(("GPU_UTILIZATION", {"gpu": "0"}, values)))
    assert parsed.table.num_rows == 2998
    assert parsed.table.column("ts").null_count == 0
    assert parsed.table.column("ts")[1234].as_py() == T0 + timedelta(seconds=1235)
    assert sorted((r["reason"], r["record"]["value"]) for r in parsed.rejects) == [
        ("unparsable timestamp", "2"),
        ("unparsable value", "1e"),
    ]
