"""The relay's events, read by a receiver built on the official JavaScript SDK (issue 4, item 5).

``js/receiver.mjs`` is a Node HTTP server that hands every request to the SDK's ``HTTP.toEvent``
and prints what it decoded. The users service (SQLite and PostgreSQL) runs its relay with
``--sink`` pointed at it, in each content mode the SDK reads (binary, structured, batch); users
are created, renamed, given a new password and deleted, and every outbox event must come out of
the SDK whole (type, subject, id, source, sequence, partitionkey, time, data), in per-user
order, with no password anywhere in what the SDK saw.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from eventaudit.events.formats import json as json_format
from tests.conftest import require
from tests.integration.audit.conftest import wait_until
from tests.integration.conftest import db_url, pg_url, sqlite_url  # noqa: F401 - fixtures: SQLite and PostgreSQL
from tests.integration.users.conftest import SECRET, UsersServer, start_users
from tests.interop.test_js_sdk import JS_DIR, SETUP, js_view, our_view

pytestmark = pytest.mark.interop


@dataclass
class Receiver:
    """``node receiver.mjs`` on a free port; ``lines`` is everything it printed, decoded."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.append(json.loads(line))

    def decoded(self, since: int = 0) -> list[tuple[str, dict[str, Any]]]:
        """Every event the SDK decoded (from line ``since`` on), in arrival order, with its content mode."""
        return [(line["mode"], e) for line in self.lines[since:] if "events" in line for e in line["events"]]

    def errors(self, since: int = 0) -> list[dict[str, Any]]:
        return [line for line in self.lines[since:] if "error" in line]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    node = shutil.which("node")
    require(node is not None, f"node is not on PATH; {SETUP}")
    require((JS_DIR / "node_modules" / "cloudevents" / "package.json").is_file(), f"no node_modules; {SETUP}")
    assert node is not None
    proc = subprocess.Popen([node, "receiver.mjs", "0"], cwd=JS_DIR, stdout=subprocess.PIPE, text=True)
    js = Receiver(proc)
    reader = threading.Thread(target=js.read, daemon=True)
    reader.start()
    try:
        port = wait_until(lambda: js.lines and js.lines[0].get("listening"), timeout=30, what="node to listen")
        js.url = f"http://127.0.0.1:{port}/"
        yield js
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()


def change_users(users: UsersServer) -> list[str]:
    """Three users: one renamed and given a new password, one deleted, one left; their ids."""
    kept = users.create("Ozzy Osbourne", SECRET)
    changed = users.create("Tony Iommi", SECRET)
    gone = users.create("Bill Ward", SECRET)
    users.patch(changed["id"], name="Tony")
    users.patch(changed["id"], password=SECRET + "-2")
    users.patch(changed["id"], name="Anthony Iommi", password=SECRET + "-3")
    assert users.client.delete(f"/v1/users/{gone['id']}").status_code == 204
    return [kept["id"], changed["id"], gone["id"]]


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_the_js_sdk_decodes_every_event_the_relay_sends(receiver: Receiver, db_url: str, mode: str) -> None:  # noqa: F811
    since = len(receiver.lines)
    with start_users(db_url, relay=True, sink=receiver.url, sink_mode=mode, source=f"/interop/js/{mode}") as users:
        ids = change_users(users)
        outbox = users.outbox_rows()
        assert len(outbox) == 7
        wanted = {row["event"]["id"] for row in outbox}
        wait_until(
            lambda: wanted <= {event["attributes"]["id"] for _, event in receiver.decoded(since)},
            timeout=30,
            what=f"the SDK to decode all {len(wanted)} events",
        )

        def all_sent() -> list[dict[str, Any]]:
            rows = users.outbox_rows()
            return rows if all(row["state"] == "sent" for row in rows) else []

        sent = wait_until(all_sent, what="the relay to mark every event sent")

    assert receiver.errors(since) == []
    mine = [(m, event) for m, event in receiver.decoded(since) if event["attributes"]["id"] in wanted]
    assert {m for m, _ in mine} == {mode}
    by_id = {event["attributes"]["id"]: event for _, event in mine}
    for row in sent:
        ours = json_format.from_dict(row["event"])
        theirs = by_id[ours.id]
        assert js_view(theirs, as_strings=True) == our_view(ours, as_strings=True)
        attributes = theirs["attributes"]
        assert attributes["subject"] == attributes["partitionkey"] == row["user_id"]
        assert int(attributes["sequence"]) == row["sequence"]
        assert attributes["source"] == f"/interop/js/{mode}"
    types = {uid: [e["attributes"]["type"] for _, e in mine if e["attributes"]["subject"] == uid] for uid in ids}
    assert types == {
        ids[0]: ["user.created"],
        ids[1]: ["user.created", "user.updated", "user.updated", "user.updated"],
        ids[2]: ["user.created", "user.deleted"],
    }
    for uid in ids:  # each user's events came in the order of their sequence: 1, 2, 3, …
        sequences = [int(e["attributes"]["sequence"]) for _, e in mine if e["attributes"]["subject"] == uid]
        assert sequences == list(range(1, len(sequences) + 1)), (uid, sequences)
    deleted = [e for _, e in mine if e["attributes"]["type"] == "user.deleted"]
    assert [e["data"] for e in deleted] == [{"kind": "json", "value": {"id": ids[2]}}]
    assert all(e["data"]["kind"] == "json" and "password" not in e["data"]["value"] for _, e in mine)
    assert not any(SECRET in line for line in receiver.raw)


def test_the_receiver_answers_400_to_what_the_sdk_cannot_decode(receiver: Receiver) -> None:
    since = len(receiver.lines)
    response = httpx.post(receiver.url, content=b'{"id": "1"}', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    errors = wait_until(lambda: receiver.errors(since), what="the receiver to report the error")
    assert errors[0]["content_type"] == "application/json"
    assert receiver.decoded(since) == []
