// The HTTP bodies the OpenAI routes write, as google.api.HttpBody messages: Envoy's transcoder sends
// each one's bytes as they are, and takes the response's content-type from the first.
import { HttpBody } from "../../contract/chat.js";
import { varintSize, writeVarint } from "../../contract/varint.js";

/** Server-sent events text (one or more `data:` events, or a comment line). */
export function sseBody(text: string): HttpBody {
  return { contentType: "text/event-stream", data: Buffer.from(text), extensions: [] };
}

/** One JSON object: a reply sent whole, or a listing. */
export function jsonBody(value: unknown): HttpBody {
  return { contentType: "application/json", data: Buffer.from(JSON.stringify(value)), extensions: [] };
}

/** A heartbeat as an SSE comment line, which the SDKs' parsers skip. */
export function heartbeatBody(waitedMs: number): HttpBody {
  return sseBody(`: waiting for the model (${waitedMs} ms)\n\n`);
}

/**
 * The OpenAI routes' serializer: HttpBody.encode's bytes (content_type = 1, data = 2) in one
 * allocation for a body without extensions, which is every body the routes write; the generated
 * encoder otherwise. One message per streamed event, so it is on every token's path: the generated
 * one wrote through a BinaryWriter and Buffer.from copied it again (test/unit/encode.test.ts
 * compares the bytes).
 */
export function encodeHttpBody(body: HttpBody): Buffer {
  if (body.extensions.length > 0) return Buffer.from(HttpBody.encode(body).finish());
  const typeBytes = body.contentType === "" ? 0 : Buffer.byteLength(body.contentType, "utf8");
  const data = body.data;
  const size =
    (typeBytes === 0 ? 0 : 1 + varintSize(typeBytes) + typeBytes) +
    (data.length === 0 ? 0 : 1 + varintSize(data.length) + data.length);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (typeBytes > 0) {
    out[at++] = 10;
    at = writeVarint(out, at, typeBytes);
    at += out.write(body.contentType, at, typeBytes, "utf8");
  }
  if (data.length > 0) {
    out[at++] = 18;
    at = writeVarint(out, at, data.length);
    out.set(data, at);
  }
  return out;
}
