"""The audit service answers as its own OpenAPI document (``/openapi.json``) says, whatever it is sent.

Schemathesis generates requests from the document, valid ones and invalid ones, sends them to a
running service over loopback and checks every answer: never a 5xx, each status, content type,
header and body as the document has it. Not checked: that every request the document allows is
accepted (schemathesis's ``positive_data_acceptance``). The document cannot say all the rules:
a cursor is one the service gave out, a CloudEvent's binary mode needs ``ce-`` header fields, an
attribute holds no control characters.
"""

from __future__ import annotations

import pytest
import schemathesis

from tests.integration.audit.conftest import READ_TOKEN, AuditServer
from tests.integration.openapi import answers_as_documented


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=str)
def test_every_answer_is_as_the_openapi_document_says(
    shared_audit: AuditServer, mode: schemathesis.GenerationMode
) -> None:
    # The live tail never ends, so it is left out here: tests/integration/audit/test_api.py reads it.
    checked = answers_as_documented(
        shared_audit.url, mode, headers={"Authorization": f"Bearer {READ_TOKEN}"}, skip={"/v1/events/stream"}
    )
    expected = {"POST /", "GET /v1/events", "GET /v1/events/export", "GET /v1/stats"}
    if mode is schemathesis.GenerationMode.POSITIVE:
        expected |= {"OPTIONS /", "GET /healthz", "GET /readyz", "GET /metrics"}
    assert checked >= expected
