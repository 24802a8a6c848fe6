// The fetch the openai SDK uses for one upstream: it adds the stream's trace context and request id
// to each upstream request, and reports the SDK's own retries (it numbers each attempt in the
// `x-stainless-retry-count` header).
import { streamContext } from "../server/stream-context.js";

export function upstreamFetch(onRetry: () => void): typeof fetch {
  return (input, init) => {
    const context = streamContext.getStore();
    const headers = new Headers(init?.headers);
    if (context) {
      headers.set("traceparent", context.span.traceparent);
      if (context.span.tracestate) headers.set("tracestate", context.span.tracestate);
      headers.set("x-request-id", context.requestId);
    }
    if (Number(headers.get("x-stainless-retry-count") ?? 0) > 0) onRetry();
    return fetch(input, { ...init, headers });
  };
}
