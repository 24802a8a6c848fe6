// The fetch the openai SDK uses: it reports the SDK's own retries (it numbers each attempt in the
// `x-stainless-retry-count` header) to the call that made them. The call arrives in the request's
// init under CALL_OPTION, put there through the SDK's per-request `fetchOptions`, which the SDK
// copies into every attempt's init: passed explicitly, with no ambient per-call state.
import type { UpstreamCall } from "../../upstream/port.js";

export const CALL_OPTION = Symbol("chat-gateway.upstream-call");

export function upstreamFetch(base: typeof fetch): typeof fetch {
  return (input, init) => {
    const call = (init as { [CALL_OPTION]?: UpstreamCall } | undefined)?.[CALL_OPTION];
    if (call !== undefined && retriesOf(init) > 0) call.observer.retried();
    return base(input, init);
  };
}

/** How many times the SDK had tried before this attempt (its `x-stainless-retry-count`). */
export function retriesOf(init: RequestInit | undefined): number {
  // The SDK passes a Headers: read as it is rather than copied, once per request.
  const headers = init?.headers instanceof Headers ? init.headers : new Headers(init?.headers);
  return Number(headers.get("x-stainless-retry-count") ?? 0);
}
