// The ChatService implementation: validates a request, streams the upstream's deltas to the caller
// one message each, and ends every stream with exactly one finish or error.
import { status, type Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse, ChatServiceServer } from "../gen/chat/v1/chat.js";
import type { ChatUpstream, UpstreamEvent, UpstreamUsage } from "../upstream/openai.js";
import { StreamStopped, toGatewayStatus, trailersFor, type GatewayStatus } from "../errors.js";
import type { Logger } from "../logger.js";
import { toUpstreamRequest, type RequestLimits } from "./validate.js";

export interface StreamLimits extends RequestLimits {
  maxConcurrentStreams: number;
  /** No data from the upstream for this long ends the stream (0: never). */
  idleTimeoutMs: number;
  /** A stream still open after this long is ended (0: never). */
  maxStreamDurationMs: number;
}

export interface ChatServiceDeps {
  upstream: ChatUpstream;
  defaultModel: string;
  limits: StreamLimits;
  logger: Logger;
  /** Strings that must never reach a caller (API keys), scrubbed from upstream messages. */
  secrets: readonly string[];
  /** Called once per accepted stream when it has ended, for logs and metrics. */
  onStreamEnd?: (summary: StreamSummary) => void;
}

export interface StreamSummary {
  metadata: Metadata;
  model: string;
  code: status;
  /** Which row of the error table ended the stream, when it failed. */
  cause: string | undefined;
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

export interface ChatService {
  readonly implementation: ChatServiceServer;
  /** Streams in flight now. */
  readonly active: number;
  /**
   * Refuses new streams, lets the open ones finish for up to `graceMs`, then ends the rest with an
   * in-band error. Resolves when no stream is open.
   */
  drain(graceMs: number): Promise<void>;
}

type Call = ServerWritableStream<ChatRequest, ChatResponse>;

/** Merged delta text beyond which the gateway stops reading the upstream until the caller catches up. */
export const MAX_MERGED_CHARS = 1024;

export function createChatService(deps: ChatServiceDeps): ChatService {
  const { upstream, limits, logger } = deps;
  const open = new Set<(why: StreamStopped["why"]) => void>();
  let draining = false;
  let allClosed: (() => void) | undefined;

  async function chat(call: Call): Promise<void> {
    if (draining) return refuse(call, status.UNAVAILABLE, "gateway is shutting down; retry");
    if (open.size >= limits.maxConcurrentStreams) {
      return refuse(call, status.RESOURCE_EXHAUSTED, `too many concurrent streams (limit ${limits.maxConcurrentStreams}); retry later`);
    }
    const validated = toUpstreamRequest(call.request, deps.defaultModel, limits);
    if (!validated.ok) return refuse(call, status.INVALID_ARGUMENT, validated.problem);
    const request = validated.request;

    const started = performance.now();
    const controller = new AbortController();
    const stop = (why: StreamStopped["why"], afterMs = performance.now() - started) => {
      if (!controller.signal.aborted) controller.abort(new StreamStopped(why, afterMs));
    };
    open.add(stop);
    const onCancelled = () => stop(deadlinePassed(call) ? "deadline" : "cancelled");
    call.on("cancelled", onCancelled);

    let lastActivity = started;
    let idleTimer: NodeJS.Timeout | undefined;
    if (limits.idleTimeoutMs > 0) {
      // Checked lazily, so the per-delta cost is one assignment rather than a timer reset.
      const checkIdle = () => {
        const quiet = performance.now() - lastActivity;
        if (quiet >= limits.idleTimeoutMs) stop("idle", limits.idleTimeoutMs);
        else idleTimer = setTimeout(checkIdle, limits.idleTimeoutMs - quiet);
      };
      idleTimer = setTimeout(checkIdle, limits.idleTimeoutMs);
    }
    const durationTimer =
      limits.maxStreamDurationMs > 0
        ? setTimeout(() => stop("max-duration", limits.maxStreamDurationMs), limits.maxStreamDurationMs)
        : undefined;

    let deltas = 0;
    // Characters of delta text held by the gateway: merged, or handed to grpc-js and not yet
    // written to the connection.
    let buffered = 0;
    let peakBuffered = 0;
    // While grpc-js holds a full queue for this call (write() said false: the caller or the
    // connection is behind), arriving deltas are merged here and sent as one message at the next
    // 'drain'. A caller that keeps up gets every delta as its own message, at once; merging only
    // joins text that could not have left sooner, and saves a message's cost per delta when behind.
    let merged = "";
    const send = (text: string): boolean => {
      const size = text.length;
      return call.write({ event: { $case: "delta", value: { text } } }, () => {
        buffered -= size;
      });
    };
    const flushMerged = () => {
      call.off("drain", flushMerged);
      if (merged === "") return;
      const text = merged;
      merged = "";
      send(text);
    };
    let firstDeltaMs: number | undefined;
    let lastDeltaMs: number | undefined;
    let outcome: GatewayStatus | undefined;
    let finish: Extract<UpstreamEvent, { type: "finish" }> | undefined;
    try {
      for await (const event of upstream.stream(request, controller.signal)) {
        lastActivity = performance.now();
        if (event.type === "delta") {
          if (deltas++ === 0) firstDeltaMs = lastActivity - started;
          lastDeltaMs = lastActivity - started;
          buffered += event.text.length;
          if (buffered > peakBuffered) peakBuffered = buffered;
          if (!call.writableNeedDrain) {
            send(event.text);
          } else {
            if (merged === "") call.on("drain", flushMerged);
            merged += event.text;
            if (merged.length >= MAX_MERGED_CHARS) {
              // Far behind: stop pulling from the upstream until the transport has taken what is
              // queued, so memory stays bounded.
              await drained(call, controller.signal);
              lastActivity = performance.now();
            }
          }
        } else {
          flushMerged();
          finish = event;
          call.write({
            event: {
              $case: "finish",
              value: {
                finishReason: event.finishReason,
                model: event.model,
                usage: event.usage,
              },
            },
          });
        }
      }
      call.end();
    } catch (error: unknown) {
      outcome = toGatewayStatus(controller.signal.aborted ? controller.signal.reason : error, deps.secrets);
      if (!call.cancelled) {
        flushMerged();
        // Once a message went out, the HTTP status through Envoy is already 200: the error must
        // travel inside the stream too, or an HTTP client would see a clean end.
        if (deltas > 0) {
          call.write({ event: { $case: "error", value: { code: outcome.code, status: status[outcome.code], message: outcome.details } } });
        }
        call.emit("error", { code: outcome.code, details: outcome.details, metadata: trailersFor(outcome) });
      }
    } finally {
      // grpc-js emits 'cancelled' when the HTTP/2 stream closes, after a normal end too: aborting
      // then would build an error and abort a finished upstream request for nothing.
      call.off("cancelled", onCancelled);
      clearTimeout(idleTimer);
      clearTimeout(durationTimer);
      open.delete(stop);
      if (open.size === 0) allClosed?.();
    }

    deps.onStreamEnd?.({
      metadata: call.metadata,
      model: request.model,
      code: outcome?.code ?? status.OK,
      cause: outcome?.cause,
      deltas,
      firstDeltaMs,
      lastDeltaMs,
      durationMs: performance.now() - started,
      finishReason: finish?.finishReason,
      usage: finish?.usage,
      peakBufferedChars: peakBuffered,
    });
  }

  return {
    implementation: {
      chat: (call: Call) => {
        chat(call).catch((error: unknown) => logger.error({ err: error }, "chat handler failed"));
      },
    },
    get active() {
      return open.size;
    },
    async drain(graceMs) {
      draining = true;
      if (open.size === 0) return;
      const closed = new Promise<void>((resolve) => (allClosed = resolve));
      const timer = setTimeout(() => {
        for (const stop of open) stop("shutdown");
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** Ends a call before anything was written: a trailers-only response Envoy can map to an HTTP status. */
function refuse(call: Call, code: status, details: string): void {
  call.emit("error", { code, details });
}

function drained(call: Call, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason as Error);
      else resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

function deadlinePassed(call: Call): boolean {
  const deadline = call.getDeadline();
  return (deadline instanceof Date ? deadline.getTime() : deadline) <= Date.now();
}

