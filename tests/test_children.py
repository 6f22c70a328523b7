from __future__ import annotations

import logging
import os

import pytest

from workloads_etl.children import ChildError, call_in_child
from workloads_etl.failures import describe


def test_a_call_in_a_child_returns_its_result_with_messages_and_logs_on_the_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages: list[object] = []
    with caplog.at_level(logging.INFO, logger="workloads_etl"):
        result = call_in_child("tests.child_targets:echo", (3,), messages.append)
    assert result["n"] == 3
    assert result["pid"] != os.getpid()
    assert messages == [("step", 0), ("step", 1), ("step", 2)]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("workloads_etl.test_child", logging.WARNING, "halfway there: 3")
    ]


def test_an_error_of_the_child_is_explained_where_it_happened() -> None:
    with pytest.raises(ChildError) as info:
        call_in_child("tests.child_targets:refused", (), lambda m: None)
    err = info.value
    assert err.kind == "credentials"
    assert "HTTP 401" in err.line
    assert describe(err) == err.line
    assert "AuthenticationError" in err.trace


def test_a_child_that_dies_is_an_error_naming_its_exit_code() -> None:
    messages: list[object] = []
    with pytest.raises(RuntimeError, match=r"ended without an answer \(exit code 7\)"):
        call_in_child("tests.child_targets:crash", (), messages.append)
    assert messages == ["about to die"]


def test_a_child_makes_arrays_of_lists_without_importing_pandas() -> None:
    """pyarrow would import pandas (about 0.7 CPU-s a child) to ask whether a list is a pandas
    object; children refuse it, and the arrays are the same."""
    result = call_in_child("tests.child_targets:arrays_from_lists", (), lambda m: None)
    assert result == {"pandas": False, "arrays": [[1.5, None], ["a", None], [[1], []]]}
