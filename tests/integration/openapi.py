"""A running service against its own OpenAPI document, with schemathesis as the oracle."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

EXAMPLES = 25
"""Requests per operation and generation mode."""

_CONFIG = SchemathesisConfig.from_dict(
    # An invalid request may also be refused as too large: its body (413) or its head, a long query string (431).
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": [*map(str, (400, 401, 404, 405, 413, 415, 422, 431))]}
        }
    }
)


def answers_as_documented(
    url: str,
    mode: schemathesis.GenerationMode,
    *,
    headers: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
) -> set[str]:
    """Send ``mode`` requests generated from ``url``'s ``/openapi.json`` to each operation (but the paths in
    ``skip``) and check every answer against the document; returns the operations checked (an operation
    without parameters or body has no invalid requests to send).

    Every check of schemathesis but ``positive_data_acceptance``: a document cannot state every rule a
    service applies (each test module says which of its service's it cannot).

    Raises:
        AssertionError: naming the operation, for the first answer that is not as documented.
    """
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=_CONFIG)
    checked: set[str] = set()
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            raise AssertionError(f"the OpenAPI document of {url} is not valid: {result.err()}")
        operation = result.ok()
        if operation.path in skip:
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answer_as_documented(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=dict(headers or {}), timeout=30, excluded_checks=[positive_data_acceptance])

        try:
            answer_as_documented()
        except Unsatisfiable:  # nothing to make invalid
            continue
        except Exception as exc:
            raise AssertionError(f"{operation.label} ({mode.value} requests): {exc}") from exc
        checked.add(operation.label)
    return checked
