"""The hash chain: canonical bytes (compact, sorted, stable) and the link that covers every input."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventaudit.audit import chain
from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format

BASE: dict[str, Any] = {"specversion": "1.0", "id": "id-1", "source": "/users", "type": "user.created"}


@pytest.mark.parametrize(
    ("extra", "canonical"),
    [
        ({}, b'{"id":"id-1","source":"/users","specversion":"1.0","type":"user.created"}'),
        (
            {
                "time": "2024-01-01T10:00:00+02:00",
                "subject": "42",
                "zeta": 1,
                "alpha": True,
                "datacontenttype": "application/json",
                "data": {"name": "Ann", "id": "42", "nested": {"b": [1, 2], "a": None}},
            },
            b'{"alpha":true,"data":{"id":"42","name":"Ann","nested":{"a":null,"b":[1,2]}},'
            b'"datacontenttype":"application/json","id":"id-1","source":"/users","specversion":"1.0",'
            b'"subject":"42","time":"2024-01-01T10:00:00+02:00","type":"user.created","zeta":1}',
        ),
        (
            {"datacontenttype": "application/octet-stream", "data": b"\x00\xff", "bin": b"\x01"},
            b'{"bin":"AQ==","data_base64":"AP8=","datacontenttype":"application/octet-stream","id":"id-1",'
            b'"source":"/users","specversion":"1.0","type":"user.created"}',
        ),
        (
            {"datacontenttype": "text/plain", "data": 'héllo "wörld"\n', "dataschema": "https://example.com/s"},
            '{"data":"héllo \\"wörld\\"\\n","datacontenttype":"text/plain","dataschema":"https://example.com/s",'
            '"id":"id-1","source":"/users","specversion":"1.0","type":"user.created"}'.encode(),
        ),
    ],
)
def test_canonical_is_the_compact_json_format_with_members_sorted(extra: dict[str, Any], canonical: bytes) -> None:
    core = {name: value for name, value in extra.items() if name in CloudEvent.__struct_fields__}
    extensions = {name: value for name, value in extra.items() if name not in CloudEvent.__struct_fields__}
    event = CloudEvent(**BASE, **core, extensions=extensions)

    assert chain.canonical(event) == canonical


_names = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True).filter(lambda n: n not in CloudEvent.__struct_fields__)
_chars = st.characters(exclude_categories=("Cs", "Cc")).filter(
    lambda c: not (0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE)
)
_strings = st.text(_chars, min_size=1, max_size=8)  # the CloudEvents String type
_values = st.one_of(_strings, st.booleans(), st.integers(-(2**31), 2**31 - 1))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(extensions=st.dictionaries(_names, _values, max_size=6), data=_json, subject=st.none() | _strings)
def test_canonical_is_stable(extensions: dict[str, Any], data: Any, subject: str | None) -> None:
    event = CloudEvent(**BASE, subject=subject, extensions=extensions, data=data)
    reordered = CloudEvent(**BASE, subject=subject, extensions=dict(reversed(extensions.items())), data=data)
    canonical = chain.canonical(event)

    assert chain.canonical(reordered) == canonical  # the order extensions came in does not matter
    assert chain.canonical(json_format.decode(canonical)) == canonical  # what verify reads back encodes the same
    assert chain.canonical(event) == canonical
    text = json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert text.encode() == canonical  # compact, sorted at every level, UTF-8 unescaped


def _formula(previous: bytes, seq: int, recordedtime: int, canonical: bytes) -> bytes:
    """The module docstring's definition, written out."""
    return hashlib.sha256(
        previous + seq.to_bytes(8, "big", signed=True) + recordedtime.to_bytes(8, "big", signed=True) + canonical
    ).digest()


@pytest.mark.parametrize(
    ("previous", "seq", "recordedtime", "canonical"),
    [
        (chain.GENESIS, 1, 1_700_000_000_000_000, b"{}"),
        (bytes(range(32)), 2**63 - 1, -1, b'{"a":1}'),
        (b"\xff" * 32, 12345, 0, b""),
    ],
)
def test_link_is_the_documented_formula(previous: bytes, seq: int, recordedtime: int, canonical: bytes) -> None:
    digest = chain.link(previous, seq, recordedtime, canonical)

    assert digest == _formula(previous, seq, recordedtime, canonical)
    assert len(digest) == 32


def test_genesis_is_32_zero_bytes() -> None:
    assert chain.GENESIS == b"\x00" * 32


@pytest.mark.parametrize(
    "changed",
    [
        {"previous": b"\x01" + bytes(31)},
        {"seq": 8},
        {"seq": -7},
        {"recordedtime": 1_700_000_000_000_001},
        {"seq": 7},  # the same inputs: a control, the digest stays
        {"canonical": b'{"id":"2"}'},
        {"canonical": b'{"id":"1"} '},
    ],
)
def test_link_depends_on_every_input(changed: dict[str, Any]) -> None:
    inputs: dict[str, Any] = {"previous": bytes(32), "seq": 7, "recordedtime": 1_700_000_000_000_000}
    inputs["canonical"] = b'{"id":"1"}'
    original = chain.link(inputs["previous"], inputs["seq"], inputs["recordedtime"], inputs["canonical"])
    new = {**inputs, **changed}
    digest = chain.link(new["previous"], new["seq"], new["recordedtime"], new["canonical"])

    assert (digest != original) is (new != inputs)


def test_seq_and_recordedtime_are_not_interchangeable() -> None:
    assert chain.link(chain.GENESIS, 1, 2, b"{}") != chain.link(chain.GENESIS, 2, 1, b"{}")


@pytest.mark.parametrize(("seq", "recordedtime"), [(2**63, 0), (0, -(2**63) - 1), (1.0, 0)])
def test_link_refuses_what_does_not_fit_8_bytes(seq: Any, recordedtime: Any) -> None:
    with pytest.raises(struct.error):
        chain.link(chain.GENESIS, seq, recordedtime, b"{}")
