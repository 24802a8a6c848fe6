// The port every upstream provider implements, in the gateway's own terms: a validated request
// (request.ts) goes in, the reply's events (events.ts) come out, failures are the classes of
// errors.ts. Nothing here knows a provider's SDK or wire format; a provider is a folder of its own
// under src/providers/ that implements ChatUpstream.
import type { UpstreamEvent } from "./events.js";
import type { UpstreamRequest } from "./request.js";

export type { ImageDetail, ReasoningEffort, UpstreamContentPart, UpstreamMessage, UpstreamRequest } from "./request.js";
export type { UpstreamResponseFormat, UpstreamTool, UpstreamToolCall, UpstreamToolChoice } from "./request.js";
export type { ToolCallPiece, UpstreamEvent, UpstreamFinish, UpstreamUsage } from "./events.js";

/**
 * One streamed completion: its events as they arrive, then exactly one finish. Aborting
 * `call.signal` ends it. Events come in batches, each what one network read of the upstream carried
 * (never empty): the consumer handles a whole batch per await, and the next read waits until it
 * asks for more. Each attempt at the upstream begins and ends on `call.watch`, says when its
 * response headers arrived, and reports every chunk.
 */
export interface ChatUpstream {
  stream(request: UpstreamRequest, call: UpstreamCall): AsyncIterable<UpstreamBatch>;
}

/** Events in order; the consumer may keep the array (it is not reused). */
export type UpstreamBatch = readonly UpstreamEvent[];

/** What one call hands its upstream besides the request: passed down explicitly, never ambient. */
export interface UpstreamCall {
  readonly signal: AbortSignal;
  readonly watch: UpstreamWatch;
  /** Sent on every HTTP request of this call (trace context, request id). */
  readonly headers: Readonly<Record<string, string>>;
  /** Told where the call went and what it took; every method is optional to call. */
  readonly observer: UpstreamObserver;
}

export interface UpstreamObserver {
  /** The named upstream a router sent the call to. */
  routed(name: string): void;
  /** The primary failed before its first token (`cause`: the error table's) and the fallback is asked. */
  fellBack(cause: string): void;
  /** An upstream HTTP request was repeated after a failure (by the SDK, or by the provider itself). */
  retried(): void;
}

/** What an upstream tells the stream's watchdog, for each attempt it makes. */
export interface UpstreamWatch {
  /** A new attempt: the returned signal aborts with `parent`'s reason, or with a stall once armed. */
  begin(parent: AbortSignal): AbortSignal;
  /** The attempt's response headers arrived: from now on, silence counts. */
  opened(): void;
  /** A chunk arrived, carrying `events` events of content (0 for role-only, empty, usage-only chunks). */
  chunk(events: number): void;
  /** The attempt is over: ended, failed or abandoned. */
  end(): void;
}

/** A model an upstream lists. */
export interface ListedModel {
  id: string;
  /** Empty when the upstream does not say. */
  ownedBy: string;
}

/** An upstream that can list its models (ListModels asks each one). */
export interface ModelLister {
  listModels(timeoutMs: number): Promise<ListedModel[]>;
}
