// The HTTP bodies the OpenAI routes write, as google.api.HttpBody messages: Envoy's transcoder sends
// each one's bytes as they are, and takes the response's content-type from the first.
import type { HttpBody } from "../../contract/chat.js";

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
