"""The HTTP limits both services share, in a module that imports nothing: the protocols, the flags and
the settings all read them here."""

from __future__ import annotations

from typing import Final

MAX_HEADER_BYTES: Final = 16 * 1024
"""The most a request line and its headers may take together (16 KiB, h11's own limit)."""

REQUEST_TIMEOUT: Final = 30.0
"""Seconds a request (line, headers and body) may take to arrive, from its first byte, by default; then
408 and close. The one default of ``--request-timeout``, both services' settings and the HTTP protocol."""
