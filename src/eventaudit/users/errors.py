"""The users service's errors: one base error carrying its HTTP status, mapped to problem+json."""

from __future__ import annotations

from typing import Any

from eventaudit.problems import ProblemError


class UsersError(ProblemError):
    """Any error of the users service a client sees, with its HTTP status."""


class UserNotFoundError(UsersError):
    """No user has this id (or the id is not one this service gives out)."""

    def __init__(self, user_id: str) -> None:
        shown = (
            user_id if len(user_id) <= 64 and user_id.isprintable() else user_id[:64].encode("unicode_escape").decode()
        )
        super().__init__(404, f"there is no user {shown!r}", slug="user-not-found")


class InvalidFieldsError(UsersError):
    """The body is JSON, but some fields are missing, unknown or invalid; ``errors`` names each."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        detail = "; ".join(f"{e['field']}: {e['rule']}" for e in errors)
        super().__init__(422, detail, slug="invalid-fields", errors=errors)


class UnavailableError(UsersError):
    """The database is unavailable or stays locked; a change was not stored."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail, slug="unavailable", headers={"Retry-After": "1"})
