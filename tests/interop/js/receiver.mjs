// An HTTP receiver built on the official CloudEvents JavaScript SDK (npm "cloudevents"), for
// tests/interop/test_relay_to_js.py: the users service's relay delivers to it.
//
//   node receiver.mjs [PORT]      (PORT 0 or none: any free port on 127.0.0.1)
//
// stdout, one JSON object per line:
//   {"listening": port}                                       once, when it accepts connections
//   {"mode": "binary"|"structured"|"batch", "events": [<event>...]}   per request the SDK decoded
//   {"error": "...", "content_type": "..."}                 per request it could not decode
// Every request goes to HTTP.toEvent (binary, structured, and batches, which the SDK reads);
// decoded: 204; not decoded: 400 application/problem+json naming the SDK's error.
//
// <event> is what the SDK holds, as describe.mjs shows it:
//   {"attributes": {name: value}, "data": <data>, "data_base64": str|null}
//   <data> = {"kind": "none"} | {"kind": "string", "value": s} | {"kind": "json", "value": v}
//          | {"kind": "bytes", "class": "Uint8Array"|..., "base64": the bytes of the view}.
import http from "node:http";
import { Buffer } from "node:buffer";
import sdk from "cloudevents";
import { describe } from "./describe.mjs";

const { HTTP } = sdk;

// Text and JSON bodies reach a Node handler as strings, anything else as a Buffer; no body is undefined.
function bodyFor(contentType, bytes) {
  if (bytes.length === 0) return undefined;
  return /json|^text\//.test((contentType || "").toLowerCase()) ? bytes.toString("utf8") : bytes;
}

function modeOf(contentType) {
  const type = (contentType || "").toLowerCase();
  if (type.startsWith("application/cloudevents-batch+json")) return "batch";
  if (type.startsWith("application/cloudevents+json")) return "structured";
  return "binary";
}

function print(line) {
  process.stdout.write(JSON.stringify(line) + "\n");
}

const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const contentType = request.headers["content-type"];
    try {
      const result = HTTP.toEvent({ headers: request.headers, body: bodyFor(contentType, Buffer.concat(chunks)) });
      const events = Array.isArray(result) ? result : [result];
      print({ mode: modeOf(contentType), events: events.map(describe) });
      response.writeHead(204).end();
    } catch (error) {
      const detail = `${error?.name ?? "Error"}: ${error?.message ?? error}`;
      print({ error: detail, content_type: contentType ?? null });
      response
        .writeHead(400, { "content-type": "application/problem+json" })
        .end(JSON.stringify({ type: "about:blank", title: "Bad Request", status: 400, detail }));
    }
  });
});

server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => print({ listening: server.address().port }));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections(); // the relay keeps its connections alive
  });
}
