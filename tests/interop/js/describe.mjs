// How the interop scripts show a CloudEvent the official JavaScript SDK holds, as JSON for the tests:
//   {"attributes": {name: value}, "data": <data>, "data_base64": str|null}
//   <data> = {"kind": "none"} | {"kind": "string", "value": s} | {"kind": "json", "value": v}
//          | {"kind": "bytes", "class": "Uint8Array"|..., "base64": the bytes of the view}.
import { Buffer } from "node:buffer";

export function viewBytes(view) {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function describeData(data) {
  if (data === undefined) return { kind: "none" };
  if (ArrayBuffer.isView(data)) {
    return { kind: "bytes", class: data.constructor.name, base64: viewBytes(data).toString("base64") };
  }
  if (typeof data === "string") return { kind: "string", value: data };
  return { kind: "json", value: data };
}

export function describe(event) {
  const attributes = {};
  for (const name of Object.getOwnPropertyNames(event)) {
    const value = event[name];
    if (name === "data" || name === "data_base64" || value === undefined) continue;
    attributes[name] = ArrayBuffer.isView(value) ? { bytes: viewBytes(value).toString("base64") } : value;
  }
  return { attributes, data: describeData(event.data), data_base64: event.data_base64 ?? null };
}
