"""The original write-up's Python receiver: Flask's server + the official SDK's from_http, storing nothing.

python bench/ingest/baseline_flask.py PORT
"""

import sys

from cloudevents.v1.http import from_http
from flask import Flask, request

app = Flask(__name__)


@app.route("/", methods=["POST"])
def home() -> tuple[str, int]:
    event = from_http(request.headers, request.get_data())
    _ = event["id"], event["source"], event.data  # read it, as the write-up's print does
    return "", 204


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
