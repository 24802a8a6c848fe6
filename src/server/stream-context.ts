// What the operations side knows about the stream being served: who asked, under which request id
// and trace, and which upstream answered. One per call, carried with AsyncLocalStorage from the
// handler through the upstream's fetch to the end-of-stream hook, so the streaming loop needs no
// knowledge of logs, metrics or tracing.
import { AsyncLocalStorage } from "node:async_hooks";
import type { StreamSpan } from "../observability/tracing.js";

export interface StreamContext {
  /** Envoy's `x-request-id` (or the caller's), else one generated here. */
  readonly requestId: string;
  /** The caller key's name; `anonymous` when caller keys are off. */
  readonly caller: string;
  readonly span: StreamSpan;
  /** The upstream that served (or last tried) the stream, set by the router and the fallback. */
  upstream: string;
  /** Upstream HTTP requests repeated after a failure: by the SDK, or by the gateway (an error inside the stream). */
  retries: number;
  /** UTF-8 bytes of the request's text and of the model text sent to the caller: the tokens estimate when the upstream reports no usage. */
  promptBytes: number;
  sentBytes: number;
  /** Prompt and reply text, collected only when LOG_PROMPTS is on. */
  prompt?: string;
  reply?: string;
}

export const streamContext = new AsyncLocalStorage<StreamContext>();

/** Metadata key under which the auth interceptor names the caller to the handler. */
export const CALLER_METADATA_KEY = "x-chat-gateway-caller";
