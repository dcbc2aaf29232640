"""A request's header fields as httptools hands them over: :class:`HeaderPairs`, the protocol's ``on_header``.

httptools calls ``on_header`` once per field of every request, so its cost is paid about ten times
per request. :class:`HeaderPairs` is the reference; when the optional C extension ``_httpspeedups``
was built, :data:`header_pairs` is its C twin, held to this class by tests/unit/test_httpheaders.py.
``EVENTAUDIT_PURE_PYTHON=1`` (read once, at import) keeps the Python class, as it does for the codec.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from eventaudit.events._accel import PURE_PYTHON_VARIABLE

__all__ = ["HeaderPairs", "header_pairs"]

Pair = tuple[bytes, bytes]


class HeaderPairs:
    """Counts a request head's bytes against ``limit`` and keeps its fields as ``(name.lower(), value)``.

    Called as ``on_header(name, value)``: a field counts its name, its value and 4 bytes (``": "``
    and CRLF), as h11 counts them. Once the count is over ``limit``, ``too_large()`` is called before
    the field is kept; it is expected to raise. :meth:`reset` starts the next request.

    It also notes what the protocol checks once the head is complete: how many ``Host`` fields came
    (``hosts``), whether an ``Expect`` field said ``100-continue`` in any case (``expect_continue``),
    and the ``Transfer-Encoding`` fields' values joined with ``b","`` (``transfer_codings``, or ``None``).
    ``first`` maps each of the ``noted`` names (lower-case) that came to its first field's value, so that
    the protocol and its routes look them up instead of walking the fields again (a Python loop over a
    request's ten fields costs more than the rest of the lookups together).
    """

    __slots__ = (
        "_noted",
        "_too_large",
        "expect_continue",
        "first",
        "hosts",
        "limit",
        "pairs",
        "size",
        "transfer_codings",
    )

    def __init__(self, limit: int, too_large: Callable[[], object], noted: tuple[bytes, ...] = ()) -> None:
        if not callable(too_large):
            raise TypeError("too_large must be callable")
        if not isinstance(noted, tuple) or not all(type(name) is bytes for name in noted):
            raise TypeError("noted must be a tuple of bytes")
        if any(name != name.lower() for name in noted):
            raise ValueError("noted names must be lower-case, as the fields' names are compared lowered")
        self.limit = limit
        self._too_large = too_large
        self._noted = frozenset(noted)
        self.reset()

    def reset(self) -> list[Pair]:
        """A new, empty list of pairs (returned) and the count and notes back to nothing, for the next request.

        ``first`` becomes a new dict too: whoever holds the last one keeps that request's.
        """
        self.first: dict[bytes, bytes] = {}
        self.pairs: list[Pair] = []
        self.size = 0
        self.hosts = 0
        self.expect_continue = False
        self.transfer_codings: bytes | None = None
        return self.pairs

    def count(self, n: int, /) -> None:
        """``n`` more bytes of the request head (its target, say); past the limit, ``too_large()`` is called."""
        if n < 0:
            raise ValueError("count() takes a number of bytes, not a negative number")
        self.size += n
        if self.size > self.limit:
            self._too_large()

    def __call__(self, name: bytes, value: bytes, /) -> None:
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise TypeError("a header field's name and value must be bytes")
        self.size += len(name) + len(value) + 4
        if self.size > self.limit:
            self._too_large()
        name = name.lower()
        if name == b"host":
            self.hosts += 1
        elif name == b"expect":
            if value.lower() == b"100-continue":
                self.expect_continue = True
        elif name == b"transfer-encoding":
            codings = self.transfer_codings
            self.transfer_codings = value if codings is None else codings + b"," + value
        if name in self._noted and name not in self.first:
            self.first[name] = value
        self.pairs.append((name, value))


def _chosen() -> type[HeaderPairs]:
    if os.environ.get(PURE_PYTHON_VARIABLE, "").strip() not in ("", "0"):
        return HeaderPairs
    try:
        from eventaudit import _httpspeedups
    except ImportError:  # built without a C compiler: the Python class runs
        return HeaderPairs
    return _httpspeedups.HeaderPairs


header_pairs: Final = _chosen()
"""``HeaderPairs`` or its C twin: ``header_pairs(limit, too_large, noted=())``."""
