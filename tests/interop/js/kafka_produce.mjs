// Produces CloudEvents to Kafka the way a JavaScript service would: the official SDK (npm "cloudevents")
// makes the records (Kafka.binary / Kafka.structured), kafkajs writes them. For tests/interop/test_kafkajs.py.
//
//   node kafka_produce.mjs HOST:PORT TOPIC < events.json
//
// stdin:  a JSON array of {"mode": "binary"|"structured", "attributes": {...}, "data": <JSON value>}
//         ("data" left out: an event without data).
// stdout: a JSON array, one entry per event, in order: {"key": str|null, "headers": {name: value}}
//         as written to the topic. Log lines of kafkajs go to stderr.
//
// The SDK leaves two things to the producer: a binary record's value is the event's data as it
// is (a plain object for JSON data), so it is JSON.stringify'd as the SDK's own HTTP binding does;
// header values may be undefined or not strings, so undefined ones are left out and the others
// sent as String(value), which is what kafkajs would do with them anyway.
import { Buffer } from "node:buffer";
import sdk from "cloudevents";
import kafkajs from "kafkajs";

const { CloudEvent, Kafka: KafkaBinding } = sdk;
const { Kafka, Partitioners, logLevel } = kafkajs;

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on("data", (chunk) => chunks.push(chunk));
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    process.stdin.on("error", reject);
  });
}

function value(data) {
  if (data === undefined || data === null) return null;
  if (typeof data === "string" || Buffer.isBuffer(data)) return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return JSON.stringify(data);
}

function headers(raw) {
  const out = {};
  for (const [name, v] of Object.entries(raw)) {
    if (v !== undefined && v !== null) out[name] = String(v);
  }
  return out;
}

function record({ mode, attributes, data }) {
  const properties = { ...attributes };
  if (data !== undefined) properties.data = data;
  const event = new CloudEvent(properties);
  const message = mode === "binary" ? KafkaBinding.binary(event) : KafkaBinding.structured(event);
  return { key: message.key ?? null, headers: headers(message.headers), value: value(message.value) };
}

function stderrLogger() {
  return ({ namespace, level, log }) => {
    const { message, ...extra } = log;
    process.stderr.write(`kafkajs ${level} ${namespace}: ${message} ${JSON.stringify(extra)}\n`);
  };
}

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  if (!bootstrap || !topic) {
    process.stderr.write("usage: node kafka_produce.mjs HOST:PORT TOPIC < events.json\n");
    process.exit(2);
  }
  const records = JSON.parse(await readStdin()).map(record);
  const kafka = new Kafka({
    clientId: "eventaudit-interop-kafkajs",
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    logCreator: stderrLogger,
    retry: { retries: 5 },
  });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: records });
  } finally {
    await producer.disconnect();
  }
  process.stdout.write(JSON.stringify(records.map(({ key, headers }) => ({ key, headers }))));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
