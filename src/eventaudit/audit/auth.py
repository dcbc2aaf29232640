"""Bearer tokens: compared in constant time, never logged."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from eventaudit.problems import ProblemError


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    return bearer_of(request.headers.get("authorization"))


def bearer_of(header: str | None) -> str | None:
    """The token of an ``Authorization`` header value of the Bearer scheme, if it is one."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def accepts(presented: str | None, tokens: tuple[str, ...]) -> bool:
    """Whether ``presented`` is one of ``tokens``; every token is compared, in constant time."""
    if presented is None:
        return False
    given = presented.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


def require(request: Request, tokens: tuple[str, ...], what: str) -> None:
    """Raise a 401 problem unless the request carries one of ``tokens``."""
    require_header(request.headers.get("authorization"), tokens, what)


def require_header(authorization: str | None, tokens: tuple[str, ...], what: str) -> None:
    """Raise a 401 problem unless the ``Authorization`` header value carries one of ``tokens``."""
    if not accepts(bearer_of(authorization), tokens):
        raise ProblemError(
            401,
            f"{what} needs Authorization: Bearer <token>; the token was missing or wrong",
            slug="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="eventaudit"'},
        )
