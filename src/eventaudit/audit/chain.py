"""The hash chain: what each record's hash covers, computed the same way on write and verify.

``hash(n) = SHA-256(hash(n-1) || seq(n) as 8 bytes || recordedtime(n) as 8 bytes || canonical(n))``
with ``hash(0)`` 32 zero bytes. ``canonical`` is the event in the JSON event format,
compact, members sorted: the exact bytes stored in the ``event`` column.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format

GENESIS: Final = bytes(32)
_SEQ_AND_TIME: Final = struct.Struct(">qq")  # both as 8 bytes, big-endian, signed
#: Copied for each link: a copy costs less than a new hash object (OpenSSL's context set-up), ~0.35 µs a record.
_SHA256: Final = hashlib.sha256()


def canonical(event: CloudEvent) -> bytes:
    """The canonical bytes of ``event``: JSON event format, compact, members sorted."""
    return json_format.encode_sorted(event)


def link(previous: bytes, seq: int, recordedtime: int, canonical_event: bytes) -> bytes:
    """The hash of record ``seq`` given the hash before it.

    Raises:
        struct.error: ``seq`` or ``recordedtime`` is not an integer of 8 bytes.
    """
    digest = _SHA256.copy()
    digest.update(previous + _SEQ_AND_TIME.pack(seq, recordedtime) + canonical_event)
    return digest.digest()
