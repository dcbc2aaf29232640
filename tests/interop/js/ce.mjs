// Drives the official CloudEvents JavaScript SDK (npm "cloudevents") for tests/interop/test_js_sdk.py.
//
// stdin:  a JSON array of commands; stdout: a JSON array of results, one per command, in order.
// Bytes cross as Base64 so they stay exact.
//
//   {"op": "encode", "binding": "http"|"kafka", "mode": "binary"|"structured"|"batch",
//    "events": [{"attributes": {...}, "data": {"kind": "json"|"text"|"bytes", "value": ...}}]}
//     -> {"ok": true, "events": [<event>...], "headers": {...}, "body_base64": str|null, "key": str|null,
//         "body_type": <JS type of the SDK's body/value>, "wire_error": str|null}
//   {"op": "decode", "binding": "http"|"kafka", "headers": {...}, "body_base64": str|null, "key": str|null}
//     -> {"ok": true, "events": [<event>...]}   (one event, or the members of a batch)
//   any failure -> {"ok": false, "error": "..."}
//
// <event> is what the SDK holds: {"attributes": {name: value}, "data": <data>, "data_base64": str|null}
// with <data> = {"kind": "none"} | {"kind": "string", "value": s} | {"kind": "json", "value": v}
//             | {"kind": "bytes", "class": "Uint8Array"|..., "base64": the bytes of the view}.
//
// What goes on the wire is what Node would send: HTTP header values must pass
// http.validateHeaderValue and are sent as String(value); Kafka header values are sent as
// String(value) in UTF-8 and undefined ones are left out (as kafkajs does); a Kafka value that
// is a plain object is JSON.stringify'd (the SDK leaves it to the producer). A body the SDK
// leaves undefined is sent empty; "wire_error" says when Node's own http.request would refuse it.
//
// The SDK has no batch serializer (HTTP.binary and HTTP.structured only; HTTP.toEvent reads
// batches): "batch" sends JSON.stringify(events), the SDK's own toJSON() of each event.
import http from "node:http";
import { Buffer } from "node:buffer";
import sdk from "cloudevents";
import { describe, viewBytes } from "./describe.mjs";

const { CloudEvent, HTTP, Kafka } = sdk;
const BATCH_CONTENT_TYPE = "application/cloudevents-batch+json";

function typeName(value) {
  return value === undefined || value === null ? String(value) : value.constructor?.name ?? typeof value;
}

function toBytes(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return Buffer.from(value, "utf8");
  if (ArrayBuffer.isView(value)) return viewBytes(value);
  return Buffer.from(JSON.stringify(value), "utf8");
}

function build({ attributes, data }) {
  const properties = { ...attributes };
  if (data !== undefined && data !== null) {
    properties.data = data.kind === "bytes" ? new Uint8Array(Buffer.from(data.value, "base64")) : data.value;
  }
  return new CloudEvent(properties);
}

function httpWire(message) {
  const headers = {};
  for (const [name, value] of Object.entries(message.headers)) {
    http.validateHeaderName(name);
    http.validateHeaderValue(name, value); // throws ERR_INVALID_CHAR for what Node will not send
    headers[name] = String(value);
  }
  const body = message.body;
  const type = typeName(body);
  const writable = typeof body === "string" || body instanceof Uint8Array;
  return {
    headers,
    body_base64: body === undefined ? null : toBytes(body).toString("base64"),
    key: null,
    body_type: type,
    wire_error: writable ? null : `http.request().write() refuses a body of type ${type}`,
  };
}

function kafkaWire(message) {
  const headers = {};
  for (const [name, value] of Object.entries(message.headers)) {
    if (value !== undefined) headers[name] = String(value);
  }
  const value = toBytes(message.value);
  return {
    headers,
    body_base64: value === null ? null : value.toString("base64"),
    key: message.key === undefined || message.key === null ? null : String(message.key),
    body_type: typeName(message.value),
    wire_error: null,
  };
}

function encode({ binding, mode, events }) {
  const built = events.map(build);
  let wire;
  if (mode === "batch") {
    if (binding !== "http") throw new Error("the SDK reads Kafka batches but writes none");
    wire = httpWire({ headers: { "content-type": BATCH_CONTENT_TYPE }, body: JSON.stringify(built) });
  } else {
    const codec = binding === "http" ? HTTP : Kafka;
    const message = mode === "binary" ? codec.binary(built[0]) : codec.structured(built[0]);
    wire = binding === "http" ? httpWire(message) : kafkaWire(message);
  }
  return { ok: true, events: built.map(describe), ...wire };
}

// Text and JSON bodies reach a Node handler as strings, anything else as a Buffer; no body is undefined.
function bodyFor(contentType, bytes) {
  if (bytes === null || bytes.length === 0) return undefined;
  const type = (contentType || "").toLowerCase();
  return /json|^text\//.test(type) ? bytes.toString("utf8") : bytes;
}

function decode({ binding, headers, body_base64, key }) {
  const bytes = body_base64 === null ? null : Buffer.from(body_base64, "base64");
  const contentType = Object.entries(headers).find(([name]) => name.toLowerCase() === "content-type")?.[1];
  const body = bodyFor(contentType, bytes);
  const result =
    binding === "http"
      ? HTTP.toEvent({ headers, body })
      : Kafka.toEvent({ headers, key: key ?? undefined, value: body, body });
  return { ok: true, events: (Array.isArray(result) ? result : [result]).map(describe) };
}

function run(command) {
  try {
    if (command.op === "encode") return encode(command);
    if (command.op === "decode") return decode(command);
    throw new Error(`unknown op ${command.op}`);
  } catch (error) {
    const code = error?.code ? ` [${error.code}]` : "";
    return { ok: false, error: `${error?.name ?? "Error"}${code}: ${error?.message ?? error}` };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(run)));
});
