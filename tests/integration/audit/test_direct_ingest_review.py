"""The direct route for ``POST /`` against what the ASGI path answers, byte for byte over a socket.

Each test sends the same bytes to ``/`` (the HTTP protocol answers it itself) and to ``/?via=asgi``
(the same endpoint through ASGI): the two must agree, and both keep to HTTP/1.1 and the promises
(answers in order, no hang, every error a problem document).
"""

from __future__ import annotations

import pytest

from tests.integration.audit.conftest import AuditServer, unique_source
from tests.integration.audit.test_direct_ingest import Reader, connect, event_body, post

TARGETS = [pytest.param(b"/", id="direct"), pytest.param(b"/?via=asgi", id="asgi")]


@pytest.mark.parametrize("target", TARGETS)
def test_a_long_pipeline_answered_at_once_is_answered_in_full(shared_audit: AuditServer, target: bytes) -> None:
    # Requests refused as soon as their turn comes, queued behind one being stored: each answer
    # starts the next request, and hundreds of them must not nest one call in the other.
    count = 400
    with connect(shared_audit) as sock:
        sock.settimeout(5)
        sock.sendall(
            post(event_body(unique_source("long-pipeline")), target=target) + post(b"{}", target=target) * count
        )
        reader = Reader(sock)
        statuses = [reader.answer()[0] for _ in range(count + 1)]
    assert statuses == [200] + [400] * count
