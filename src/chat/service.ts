// The ChatService implementation: validates a request, streams the upstream's events to the caller
// one message each (text, reasoning, refusal, tool-call pieces), and ends every stream with exactly
// one finish or error.
import { status, type Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse, ChatServiceServer } from "../gen/chat/v1/chat.js";
import type { ChatUpstream, UpstreamEvent, UpstreamFinish, UpstreamUsage } from "../upstream/openai.js";
import { CallRefused, StreamStopped, toGatewayStatus, type GatewayStatus } from "./errors.js";
import { errorTrailers, requestIdMetadata } from "./status-details.js";
import type { Logger } from "../observability/logger.js";
import { StreamWatchdog } from "../upstream/watchdog.js";
import { toUpstreamRequest, type RequestLimits } from "./validate.js";

export interface StreamLimits extends RequestLimits {
  maxConcurrentStreams: number;
  /** Silence from the upstream between chunks, once it sent its first token, that ends the attempt (0: none). */
  idleTimeoutMs: number;
  /** The wait from the upstream's response headers to its first token that ends the attempt (0: none). */
  firstTokenTimeoutMs: number;
  /** Silence from the upstream after which the caller gets a heartbeat event, and again every as long (0: none). */
  heartbeatIntervalMs: number;
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
  /**
   * The call's request id (sent back as `x-request-id` in the response's headers and trailers) and
   * the upstream serving it (named in error details), read when the call starts; `upstream` may
   * change later (routing, fallback), and is read again when the call fails.
   */
  callInfo?: () => CallInfo | undefined;
}

export interface CallInfo {
  readonly requestId: string;
  readonly upstream: string;
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

/** Held text beyond which the gateway stops reading the upstream until the caller catches up. */
export const MAX_MERGED_CHARS = 1024;
/**
 * Held messages beyond which it stops too: events that cannot be merged (text after reasoning,
 * pieces of two tool calls in turn) are held one message each.
 */
const MAX_HELD_MESSAGES = 64;

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
    const metadata = errorTrailers(outcome, { requestId: deps.callInfo?.()?.requestId });
    call.emit("error", { code: outcome.code, details: outcome.details, metadata });
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
    const info = deps.callInfo?.();
    const controller = new AbortController();
    const stop = (why: StreamStopped["why"], afterMs = performance.now() - started) => {
      if (!controller.signal.aborted) controller.abort(new StreamStopped(why, afterMs));
    };
    open.add(stop);
    const onCancelled = () => stop(deadlinePassed(call) ? "deadline" : "cancelled");
    call.on("cancelled", onCancelled);

    // The upstream's silences (before its first token, between chunks after it), and heartbeats to
    // the caller while the upstream says nothing; it also keeps the time of the last chunk, so a
    // delta's time is the time its chunk arrived.
    const watchdog = new StreamWatchdog(
      { idleMs: limits.idleTimeoutMs, firstTokenMs: limits.firstTokenTimeoutMs, heartbeatMs: limits.heartbeatIntervalMs },
      (waitedMs) => heartbeat(waitedMs),
    );
    const durationTimer =
      limits.maxStreamDurationMs > 0
        ? setTimeout(() => stop("max-duration", limits.maxStreamDurationMs), limits.maxStreamDurationMs)
        : undefined;

    let deltas = 0;
    // Characters of event text held by the gateway: merged, or handed to grpc-js and not yet
    // written to the connection.
    let buffered = 0;
    let peakBuffered = 0;
    // The response's headers go out with its first message, never before: until then a failure is
    // a trailers-only status, which Envoy turns into an HTTP error status.
    let responding = false;
    const write = (message: ChatResponse, size: number): void => {
      if (!responding) {
        responding = true;
        call.sendMetadata(requestIdMetadata(info?.requestId));
      }
      call.write(message, () => {
        buffered -= size;
      });
    };
    // While grpc-js holds a full queue for this call (write() said false: the caller or the
    // connection is behind), arriving events are held here and sent at the next 'drain', each
    // merged into the one before it when both are of the same kind (and, for tool calls, the same
    // call): never text into reasoning, never pieces of two calls, and the order across kinds is
    // kept. A caller that keeps up gets every event as its own message, at once; merging only joins
    // what could not have left sooner, and saves a message's cost per event when behind.
    const held: ChatResponse[] = [];
    let heldChars = 0;
    const flushHeld = () => {
      call.off("drain", flushHeld);
      if (held.length === 0) return;
      const messages = held.splice(0);
      heldChars = 0;
      for (const message of messages) write(message, sizeOf(message));
    };
    // A heartbeat goes out only when nothing is waiting to be sent: it is never merged, never put
    // before content, and a caller that has data to read (the gateway holding the upstream back for
    // it) is not idle. None once the stream has ended (the watchdog is closed then).
    const heartbeat = (waitedMs: number) => {
      if (held.length > 0 || call.writableNeedDrain || call.cancelled) return;
      write({ event: { $case: "heartbeat", value: { waitedMs: Math.min(Math.round(waitedMs), 0xffffffff) } } }, 0);
    };
    const hold = (event: ContentEvent, size: number) => {
      heldChars += size;
      const last = held[held.length - 1];
      if (last !== undefined && mergeInto(last, event)) return;
      if (held.length === 0) call.on("drain", flushHeld);
      held.push(messageOf(event));
    };
    let firstDeltaMs: number | undefined;
    let lastDeltaMs: number | undefined;
    let outcome: GatewayStatus | undefined;
    let finish: UpstreamFinish | undefined;
    try {
      for await (const batch of upstream.stream(request, controller.signal, watchdog)) {
        // A batch is what one read of the upstream carried: handled without an await, unless the
        // caller is so far behind that the gateway stops pulling (below).
        for (let i = 0; i < batch.length; i++) {
          const event = batch[i]!;
          if (event.type === "finish") {
            watchdog.close();
            flushHeld();
            finish = event;
            write({ event: { $case: "finish", value: { finishReason: event.finishReason, model: event.model, usage: event.usage } } }, 0);
            continue;
          }
          const at = watchdog.lastChunkAt - started;
          if (deltas++ === 0) firstDeltaMs = at;
          lastDeltaMs = at;
          const size = event.type === "tool_call" ? event.arguments.length + event.id.length + event.name.length : event.text.length;
          buffered += size;
          if (buffered > peakBuffered) peakBuffered = buffered;
          if (held.length === 0 && !call.writableNeedDrain) {
            write(messageOf(event), size);
          } else {
            hold(event, size);
            if (heldChars >= MAX_MERGED_CHARS || held.length >= MAX_HELD_MESSAGES) {
              // Far behind: stop pulling from the upstream until the transport has taken what is
              // queued, so memory stays bounded. The upstream's silence meanwhile is the caller's doing.
              watchdog.pause();
              await drained(call, controller.signal);
              watchdog.resume();
            }
          }
        }
      }
      call.end(requestIdMetadata(info?.requestId));
    } catch (error: unknown) {
      outcome = toGatewayStatus(controller.signal.aborted ? controller.signal.reason : error, deps.secrets);
      if (!call.cancelled) {
        flushHeld();
        // Once a message went out, the HTTP status through Envoy is already 200: the error must
        // travel inside the stream too, or an HTTP client would see a clean end.
        if (responding) {
          write({ event: { $case: "error", value: { code: outcome.code, status: status[outcome.code], message: outcome.details } } }, 0);
        }
        const metadata = errorTrailers(outcome, { requestId: info?.requestId, upstream: info?.upstream });
        call.emit("error", { code: outcome.code, details: outcome.details, metadata });
      }
    } finally {
      // grpc-js emits 'cancelled' when the HTTP/2 stream closes, after a normal end too: aborting
      // then would build an error and abort a finished upstream request for nothing.
      call.off("cancelled", onCancelled);
      call.off("drain", flushHeld);
      watchdog.close();
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

type ContentEvent = Exclude<UpstreamEvent, UpstreamFinish>;

function messageOf(event: ContentEvent): ChatResponse {
  switch (event.type) {
    case "text":
      return { event: { $case: "delta", value: { text: event.text } } };
    case "reasoning":
      return { event: { $case: "reasoning", value: { text: event.text } } };
    case "refusal":
      return { event: { $case: "refusal", value: { text: event.text } } };
    case "tool_call":
      return { event: { $case: "toolCall", value: { index: event.index, id: event.id, name: event.name, arguments: event.arguments } } };
  }
}

/** Joins `event` to the held message `last` when both are of one kind (and one tool call); false otherwise. */
function mergeInto(last: ChatResponse, event: ContentEvent): boolean {
  const held = last.event;
  switch (event.type) {
    case "text":
      if (held?.$case !== "delta") return false;
      held.value.text += event.text;
      return true;
    case "reasoning":
      if (held?.$case !== "reasoning") return false;
      held.value.text += event.text;
      return true;
    case "refusal":
      if (held?.$case !== "refusal") return false;
      held.value.text += event.text;
      return true;
    case "tool_call":
      // A call's first piece (its id and name) is never merged into anything before it.
      if (held?.$case !== "toolCall" || held.value.index !== event.index || event.id !== "" || event.name !== "") return false;
      held.value.arguments += event.arguments;
      return true;
  }
}

/** The characters a content message holds (for the gateway's buffer accounting). */
function sizeOf(message: ChatResponse): number {
  const event = message.event;
  if (event?.$case === "toolCall") return event.value.arguments.length + event.value.id.length + event.value.name.length;
  if (event?.$case === "delta" || event?.$case === "reasoning" || event?.$case === "refusal") return event.value.text.length;
  return 0;
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

