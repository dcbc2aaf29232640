"""The httptools protocol's answers that need no server: the detail of a 400 for what llhttp refused."""

from __future__ import annotations

import httptools
import pytest

from eventaudit import httptoolsprotocol


@pytest.mark.parametrize(
    "error",
    [
        None,
        httptools.HttpParserCallbackError("the on_url callback failed"),  # a callback's, not the parser's
        httptools.HttpParserError("Invalid header value \x01 char"),  # not the shape of an llhttp phrase
        httptools.HttpParserError(""),
    ],
)
def test_a_reason_that_is_not_llhttps_own_phrase_gets_the_generic_detail(error: Exception | None) -> None:
    assert httptoolsprotocol._malformed(error) == httptoolsprotocol._MALFORMED


def test_llhttps_phrases_with_quoted_names_are_kept() -> None:
    for reason in ("Request has invalid `Transfer-Encoding`", "Data after `Connection: close`"):
        detail = httptoolsprotocol._malformed(httptools.HttpParserError(reason))
        assert detail == f"the HTTP request could not be parsed: {reason}"
