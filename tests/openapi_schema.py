"""Schema validation for the model-level tests, by way of :mod:`spec_conformance`.

``schema_errors(instance, "Workload")`` (or a ``#/...`` JSON pointer into the spec) lists
what does not conform, with the same strict OAS 3.0 validator the HTTP tests use, so
there is one reading of the contract across the test suite.
"""

from __future__ import annotations

from spec_conformance import schema_errors

__all__ = ["schema_errors"]
