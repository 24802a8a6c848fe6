// The ChatService implementation: validates a request, streams the upstream's deltas to the caller
// one message each, and ends every stream with exactly one finish or error.
import { status, type Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse, ChatServiceServer } from "../gen/chat/v1/chat.js";
import type { ChatUpstream, UpstreamEvent, UpstreamUsage } from "../upstream/openai.js";
import { CallRefused, StreamStopped, toGatewayStatus, trailersFor, type GatewayStatus } from "../errors.js";
import type { Logger } from "../logger.js";
import { IdleWatchdog } from "../upstream/watchdog.js";
import { toUpstreamRequest, type RequestLimits } from "./validate.js";

export interface StreamLimits extends RequestLimits {
  maxConcurrentStreams: number;
  /** Silence from the upstream between chunks, from its response headers on, that ends the attempt (0: none). */
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
  /** Called once per call refused before it became a stream (bad input, limits, draining). */
  onRefused?: (refusal: Refusal) => void;
}

export interface Refusal {
  metadata: Metadata;
  /** The model asked for, or the default. */
  model: string;
  code: status;
  /** Which row of the error table refused it. */
  cause: string;
  details: string;
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
  readonly implementation: Pick<ChatServiceServer, "chat">;
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
  let drainEnd: Promise<void> | undefined;
  let drainStopAt = Infinity;
  let drainTimer: NodeJS.Timeout | undefined;

  /** Ends a call before anything was written: a trailers-only response Envoy can map to an HTTP status. */
  function refuse(call: Call, why: CallRefused["why"], detail = ""): void {
    const outcome = toGatewayStatus(new CallRefused(why, detail));
    call.emit("error", { code: outcome.code, details: outcome.details });
    deps.onRefused?.({
      metadata: call.metadata,
      model: call.request.model || deps.defaultModel,
      code: outcome.code,
      cause: outcome.cause,
      details: outcome.details,
    });
  }

  async function chat(call: Call): Promise<void> {
    if (draining) return refuse(call, "draining");
    if (open.size >= limits.maxConcurrentStreams) {
      return refuse(call, "concurrency", `too many concurrent streams (limit ${limits.maxConcurrentStreams}); retry later`);
    }
    const validated = toUpstreamRequest(call.request, deps.defaultModel, limits);
    if (!validated.ok) return refuse(call, "invalid", validated.problem);
    const request = validated.request;

    const started = performance.now();
    const controller = new AbortController();
    const stop = (why: StreamStopped["why"], afterMs = performance.now() - started) => {
      if (!controller.signal.aborted) controller.abort(new StreamStopped(why, afterMs));
    };
    open.add(stop);
    const onCancelled = () => stop(deadlinePassed(call) ? "deadline" : "cancelled");
    call.on("cancelled", onCancelled);

    // Silence from the upstream between chunks, once a response has started; it also keeps the time
    // of the last chunk, so a delta's time is the time its chunk arrived.
    const watchdog = new IdleWatchdog(limits.idleTimeoutMs);
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
      for await (const event of upstream.stream(request, controller.signal, watchdog)) {
        if (event.type === "delta") {
          const at = watchdog.lastChunkAt - started;
          if (deltas++ === 0) firstDeltaMs = at;
          lastDeltaMs = at;
          buffered += event.text.length;
          if (buffered > peakBuffered) peakBuffered = buffered;
          if (!call.writableNeedDrain) {
            send(event.text);
          } else {
            if (merged === "") call.on("drain", flushMerged);
            merged += event.text;
            if (merged.length >= MAX_MERGED_CHARS) {
              // Far behind: stop pulling from the upstream until the transport has taken what is
              // queued, so memory stays bounded. The upstream's silence meanwhile is the caller's doing.
              watchdog.pause();
              await drained(call, controller.signal);
              watchdog.resume();
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
                // Reasoning and cached-prompt counts are not read from the upstream yet: 0 is omitted.
                usage: event.usage && { reasoningTokens: 0, cachedPromptTokens: 0, ...event.usage },
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
      watchdog.end();
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
    drain(graceMs) {
      draining = true;
      // One drain however often it is asked for (SIGTERM then SIGINT, say): every caller waits for
      // the same end, and the earliest deadline asked for is the one kept.
      drainEnd ??= new Promise<void>((resolve) => {
        allClosed = resolve;
        if (open.size === 0) resolve();
      }).finally(() => clearTimeout(drainTimer));
      const stopAt = performance.now() + graceMs;
      if (open.size > 0 && stopAt < drainStopAt) {
        drainStopAt = stopAt;
        clearTimeout(drainTimer);
        drainTimer = setTimeout(() => {
          for (const stop of open) stop("shutdown");
        }, graceMs);
      }
      return drainEnd;
    },
  };
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

