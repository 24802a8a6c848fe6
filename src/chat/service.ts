// The ChatService handler: request → validate → upstream → events → write. Each stream gets the
// upstream's events one message each (text, reasoning, refusal, tool-call pieces), and ends with
// exactly one finish or error. The units around the data path are each in a file of their own:
// streams.ts (admission, stop conditions, drain), outbox.ts (writes, backpressure, merging),
// watchdog.ts (the upstream's silences and the caller's heartbeats), errors.ts (the error table).
import { status } from "@grpc/grpc-js";
import type { ChatRequest, ChatServiceServer } from "../contract/chat.js";
import type { ChatUpstream, UpstreamCall, UpstreamFinish } from "../upstream/port.js";
import type { Logger } from "pino";
import type { CallContext } from "./context.js";
import type { ConversationHistory, ReplyRecorder } from "./history.js";
import { CallRefused, toGatewayStatus, type GatewayStatus } from "./errors.js";
import { Outbox, type AnyCall, type Call, type Presenter } from "./outbox.js";
import type { DecodedChatRequest } from "./decode.js";
import { errorTrailers, requestIdMetadata } from "./status-details.js";
import { OpenStreams } from "./streams.js";
import { toUpstreamRequest, type BodyKeys, type RequestLimits } from "./validate.js";
import { StreamWatchdog } from "./watchdog.js";

export { MAX_MERGED_CHARS } from "./outbox.js";

export interface StreamLimits extends RequestLimits {
  maxConcurrentStreams: number;
  /** Silence from the upstream between chunks, once it sent its first token, that ends the attempt (0: none). */
  idleTimeoutMs: number;
  /** The wait from the upstream's response headers to its first token that ends the attempt (0: none). */
  firstTokenTimeoutMs: number;
  /** Silence from the upstream after which the caller gets a heartbeat, and again every as long (0: none). */
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
  /** The upstream body's keys a request's own fields fill, so extra_body may not set them too. */
  bodyKeys: BodyKeys;
  /** Stored conversations, for requests that name one (`conversation_id`); refused when absent. */
  history?: ConversationHistory;
}

export interface ChatService {
  /** The handler, given each call's context by the composition root. */
  chat(call: Call, context: CallContext): Promise<void>;
  /**
   * The same stream for another API's call (src/api/): its request already decoded into chat.v1's
   * ChatRequest (then validated here, as Chat's), its messages written through `presenter`.
   * `problem`: the request could not be decoded; the call is refused with it, as invalid.
   * `history`: this call's own history and recorder (a stored response's), opened in place of the
   * conversations' for `conversation_id`.
   */
  serve(
    call: AnyCall,
    context: CallContext,
    request: DecodedChatRequest,
    presenter: Presenter,
    problem?: string,
    history?: ConversationHistory,
  ): Promise<void>;
  /** Streams in flight now. */
  readonly active: number;
  /**
   * Refuses new streams, lets the open ones finish for up to `graceMs`, then ends the rest with an
   * in-band error. Resolves when no stream is open.
   */
  drain(graceMs: number): Promise<void>;
}

/** The grpc-js implementation of ChatService's Chat, each call given its context by `contextOf`. */
export function chatImplementation(
  service: ChatService,
  contextOf: (call: Call, request: ChatRequest) => CallContext,
  logger: Logger,
): Pick<ChatServiceServer, "chat"> {
  return {
    chat: (call: Call) => {
      service
        .chat(call, contextOf(call, call.request))
        .catch((error: unknown) => logger.error({ err: error }, "chat handler failed"));
    },
  };
}

// The handler is one function on purpose: the data path (validate → upstream → events → write)
// reads top to bottom, and everything else it uses is a unit of its own.
export function createChatService(deps: ChatServiceDeps): ChatService {
  const { upstream, limits } = deps;
  const streams = new OpenStreams(limits);
  const watchdogLimits = {
    idleMs: limits.idleTimeoutMs,
    firstTokenMs: limits.firstTokenTimeoutMs,
    heartbeatMs: limits.heartbeatIntervalMs,
  };

  async function chat(
    call: AnyCall,
    context: CallContext,
    decoded: DecodedChatRequest,
    presenter?: Presenter,
    problem?: string,
    ownHistory?: ConversationHistory,
  ): Promise<void> {
    const model = decoded.model || deps.defaultModel;
    if (problem !== undefined) return refuse(call, context, model, "invalid", problem);
    const refused = streams.refusal();
    if (refused) return refuse(call, context, model, refused.why, refused.detail);
    const validated = toUpstreamRequest(decoded, deps.defaultModel, limits, deps.bodyKeys);
    if (!validated.ok) return refuse(call, context, model, "invalid", validated.problem);
    let request = validated.request;
    // A stored conversation: its history goes before the request's turns, which are stored now
    // (before the upstream is called); the reply is recorded in memory and stored once it ends.
    let reply: ReplyRecorder | undefined;
    let trimmedTurns = 0;
    if (ownHistory) {
      const opened = await ownHistory.open(decoded.conversationId, context.caller, request);
      if (!opened.ok) return refuse(call, context, model, opened.why, opened.detail);
      ({ request, trimmedTurns, reply } = opened);
    } else if (decoded.conversationId !== "") {
      if (!deps.history)
        return refuse(call, context, model, "invalid", "conversation_id: conversations are not kept here");
      const opened = await deps.history.open(decoded.conversationId, context.caller, request);
      if (!opened.ok) return refuse(call, context, model, opened.why, opened.detail);
      ({ request, trimmedTurns, reply } = opened);
    }

    const started = performance.now();
    const stream = streams.start(call, started);
    const outbox = new Outbox(call, context.requestId, context.observer.sent, presenter);
    // The upstream's silences, and heartbeats to the caller while it says nothing; it also keeps
    // the time of the last chunk, so a delta's time is the time its chunk arrived.
    const watchdog = new StreamWatchdog(watchdogLimits, (waitedMs) => outbox.heartbeat(waitedMs));
    const upstreamCall = callFor(context, stream.signal, watchdog);
    const timing = {
      deltas: 0,
      firstDeltaMs: undefined as number | undefined,
      lastDeltaMs: undefined as number | undefined,
    };
    let outcome: GatewayStatus | undefined;
    let finish: UpstreamFinish | undefined;
    try {
      for await (const batch of upstream.stream(request, upstreamCall)) {
        // A batch is what one read of the upstream carried: handled without an await, unless the
        // caller is so far behind that the gateway stops pulling (below).
        for (let i = 0; i < batch.length; i++) {
          const event = batch[i]!;
          if (event.type === "finish") {
            watchdog.close();
            finish = event;
            reply?.event(event);
            outbox.finish(event, trimmedTurns);
            continue;
          }
          const at = watchdog.lastChunkAt - started;
          if (timing.deltas++ === 0) timing.firstDeltaMs = at;
          timing.lastDeltaMs = at;
          reply?.event(event);
          if (outbox.push(event)) {
            // Far behind: stop pulling from the upstream until the transport has taken what is
            // queued. The upstream's silence meanwhile is the caller's doing, not the upstream's.
            watchdog.pause();
            await outbox.drained(stream.signal);
            watchdog.resume();
          }
        }
      }
      // Stored before the stream ends, so the caller's next request on the conversation finds it
      // (and the conversation free): one write per stream, never on the token path.
      await reply?.end(status.OK, undefined);
      call.end(requestIdMetadata(context.requestId));
    } catch (error: unknown) {
      outcome = toGatewayStatus(stream.signal.aborted ? stream.signal.reason : error, deps.secrets);
      await reply?.end(outcome.code, outcome.cause);
      if (!call.cancelled) {
        outbox.fail(outcome);
        if (outbox.failsInBand) {
          call.end(requestIdMetadata(context.requestId));
        } else {
          const metadata = errorTrailers(outcome, { requestId: context.requestId, upstream: upstreamCall.upstream });
          call.emit("error", { code: outcome.code, details: outcome.details, metadata });
        }
      }
    } finally {
      // Whatever happened above, the conversation is given back (end is once only: a no-op when done).
      void reply?.end(status.INTERNAL, "internal");
      watchdog.close();
      outbox.close();
      stream.close();
    }

    context.observer.ended({
      model: request.model,
      code: outcome?.code ?? status.OK,
      cause: outcome?.cause,
      ...timing,
      durationMs: performance.now() - started,
      finishReason: finish?.finishReason,
      usage: finish?.usage,
      peakBufferedChars: outbox.peakBuffered,
    });
  }

  return {
    chat: (call, context) => chat(call as AnyCall, context, call.request),
    serve: (call, context, request, presenter, problem, history) =>
      chat(call, context, request, presenter, problem, history),
    get active() {
      return streams.active;
    },
    drain: (graceMs) => streams.drain(graceMs),
  };
}

/** Ends a call before anything was written: a trailers-only response Envoy can map to an HTTP status. */
function refuse(call: AnyCall, context: CallContext, model: string, why: CallRefused["why"], detail: string): void {
  const outcome = toGatewayStatus(new CallRefused(why, detail));
  const metadata = errorTrailers(outcome, { requestId: context.requestId });
  call.emit("error", { code: outcome.code, details: outcome.details, metadata });
  context.observer.refused({
    model,
    code: outcome.code,
    cause: outcome.cause,
    details: outcome.details,
  });
}

/**
 * What the upstream is handed for this call; it also keeps the name of the upstream that served
 * (or last tried) it, named in the error details when the call fails.
 */
function callFor(
  context: CallContext,
  signal: AbortSignal,
  watch: StreamWatchdog,
): UpstreamCall & { upstream: string } {
  const observer = context.observer;
  const call = {
    signal,
    watch,
    headers: context.upstreamHeaders,
    upstream: "default",
    observer: {
      routed(name: string) {
        call.upstream = name;
        observer.routed(name);
      },
      fellBack(cause: string) {
        call.upstream = "fallback";
        observer.fellBack(cause);
      },
      retried: () => observer.retried(),
    },
  };
  return call;
}
