"""The ceiling of the audit service's HTTP stack: the same uvicorn protocol, an app that stores nothing.

python bench/ingest/noop_asgi.py PORT

Reads each request's body and answers 200 with a 2-byte JSON body: no access log, no
decode, no commit. Whatever the audit service does per request comes on top of this.
"""

import sys
from typing import Any

import uvicorn

from eventaudit.httptoolsprotocol import protocol


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] != "/healthz":
        while (await receive()).get("more_body"):
            pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http=protocol(),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
