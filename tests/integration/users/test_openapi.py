"""The users service answers as its own OpenAPI document (``/openapi.json``) says, whatever it is sent.

As for the audit service (tests/integration/audit/test_openapi.py): every answer is checked against
the document, except that a request the document allows may still be refused, because the document
cannot say every rule: a cursor is one the service gave out, a name holds no control characters or
noncharacters.
"""

from __future__ import annotations

import pytest
import schemathesis

from tests.integration.openapi import answers_as_documented
from tests.integration.users.conftest import UsersServer


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_every_answer_is_as_the_openapi_document_says(
    shared_users: UsersServer, mode: schemathesis.GenerationMode
) -> None:
    checked = answers_as_documented(shared_users.url, mode)
    expected = {"POST /v1/users", "POST /v1/user", "GET /v1/users", "PATCH /v1/users/{user_id}"}
    if mode is schemathesis.GenerationMode.POSITIVE:  # (schemathesis makes no invalid path parameters)
        expected |= {"GET /v1/users/{user_id}", "DELETE /v1/users/{user_id}"}
        expected |= {"GET /healthz", "GET /readyz", "GET /metrics"}
    assert checked >= expected
