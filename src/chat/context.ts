// What the handler is told about a call besides its request, and what it tells in return: passed
// in explicitly for each call (as nice-grpc's middleware extends a CallContext), built by the
// composition root (src/server/call-context.ts). The handler knows nothing of logs, metrics,
// traces or budgets: it reports to `observer`, which does.
import type { status } from "@grpc/grpc-js";
import type { ChatResponse } from "../contract/chat.js";
import type { UpstreamObserver, UpstreamUsage } from "../upstream/port.js";

export interface CallContext {
  /** Envoy's `x-request-id` (or the caller's), else one generated for the call. */
  readonly requestId: string;
  /** Sent on every upstream HTTP request of the call (trace context, request id). */
  readonly upstreamHeaders: Readonly<Record<string, string>>;
  /** The caller key's name ("anonymous" with caller keys off): a stored conversation's owner. */
  readonly caller: string;
  readonly observer: CallObserver;
}

export interface CallObserver extends UpstreamObserver {
  /**
   * Each message written to the caller, when someone needs to see them (the token estimate, the
   * logged reply); undefined otherwise, so the data path pays nothing for it.
   */
  readonly sent: ((message: ChatResponse) => void) | undefined;
  /** Once, for a call refused before it became a stream (bad input, limits, draining). */
  refused(refusal: Refusal): void;
  /** Once, for an accepted stream when it has ended. */
  ended(summary: StreamSummary): void;
}

export interface Refusal {
  /** The model asked for, or the default. */
  model: string;
  code: status;
  /** Which row of the error table refused it. */
  cause: string;
  details: string;
}

export interface StreamSummary {
  model: string;
  code: status;
  /** Which row of the error table ended the stream, when it failed. */
  cause: string | undefined;
  /** Content events from the upstream: text, reasoning, refusal and tool-call pieces. */
  deltas: number;
  /** Milliseconds from the call's start to the first and the last delta. */
  firstDeltaMs: number | undefined;
  lastDeltaMs: number | undefined;
  durationMs: number;
  finishReason: string | undefined;
  usage: UpstreamUsage | undefined;
  /** The most delta text this stream ever had queued in the server, waiting for the caller. */
  peakBufferedChars: number;
}
