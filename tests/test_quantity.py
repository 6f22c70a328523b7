from __future__ import annotations

import pyarrow as pa
import pytest

from workloads_etl.lake.quantity import QuantityError, parse_quantity, parse_quantity_array


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("+2", 2.0),
        ("-3", -3.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("100n", 100e-9),
        ("250u", 250e-6),
        ("500m", 0.5),
        ("2k", 2000.0),
        ("1K", 1000.0),  # Run:ai leniency: the contract's pattern admits an uppercase K
        ("1.5K", 1500.0),
        ("-2K", -2000.0),
        ("200M", 200e6),
        ("2G", 2e9),
        ("1T", 1e12),
        ("1P", 1e15),
        ("3E", 3e18),
        ("1Ki", 1024.0),
        ("200Mi", 200 * 2**20),
        ("1.5Gi", 1.5 * 2**30),
        ("2Ti", 2 * 2**40),
        ("1Pi", 2**50),
        ("1Ei", 2**60),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("12e+6", 12e6),
        ("-1.5e2", -150.0),
        ("0B", 0.0),
        ("512B", 512.0),
    ],
)
def test_valid_quantities(text: str, expected: float) -> None:
    assert parse_quantity(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "Mi",
        "1KiB",
        "2GB",
        "1KB",
        "1KK",
        "Ki",
        "1e",
        "1.2.3",
        "abc",
        "1Mi2",
        "--1",
        "1x",
        "1e3Mi",
        "1e999",
        "0x10",
        "nan",
        "Inf",
    ],
)
def test_invalid_quantities(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_non_string_is_rejected() -> None:
    with pytest.raises(QuantityError):
        parse_quantity(5)  # type: ignore[arg-type]


def test_column_parse_keeps_nulls_and_flags_invalid() -> None:
    values, invalid = parse_quantity_array(pa.array(["1Gi", None, "bad", "1Gi", "500m"]))
    assert values.to_pylist() == [2**30, None, None, 2**30, 0.5]
    assert invalid.to_pylist() == [False, False, True, False, False]


def test_uppercase_k_is_decimal_and_ki_stays_binary() -> None:
    values, invalid = parse_quantity_array(pa.array(["1K", "1k", "1Ki", "1KiB"]))
    assert values.to_pylist() == [1000.0, 1000.0, 1024.0, None]
    assert invalid.to_pylist() == [False, False, False, True]


def test_column_parse_empty() -> None:
    values, invalid = parse_quantity_array(pa.array([], pa.string()))
    assert len(values) == 0
    assert len(invalid) == 0
