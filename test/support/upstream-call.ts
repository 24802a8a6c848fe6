// A provider called directly, as the chat service would call it, with nothing watching: a short
// request and an UpstreamCall whose watchdog, observer and headers do nothing.
import type { UpstreamCall, UpstreamRequest } from "../../src/upstream/port.js";

export const shortRequest: UpstreamRequest = { model: "demo", messages: [{ role: "user", content: "hi" }] };

export function callWith(signal: AbortSignal): UpstreamCall {
  return {
    signal,
    headers: {},
    watch: { begin: (parent) => parent, opened() {}, chunk() {}, end() {} },
    observer: { routed() {}, fellBack() {}, retried() {} },
  };
}
