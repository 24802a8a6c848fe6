// The ChatService handler: request → validate → upstream → events → write. Each stream gets the
// upstream's events one message each (text, reasoning, refusal, tool-call pieces), and ends with
// exactly one finish or error. The units around the data path are each in a file of their own:
// streams.ts (admission, stop conditions, drain), outbox.ts (writes, backpressure, merging),
// watchdog.ts (the upstream's silences and the caller's heartbeats), errors.ts (the error table).
import { status, type Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse, ChatServiceServer, ResumeChatRequest } from "../contract/chat.js";
import type { ChatUpstream, UpstreamCall, UpstreamFinish, UpstreamRequest } from "../upstream/port.js";
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
import { LogRefused, type EventLog, type LogReader, type LogWriter } from "../resume/log.js";
import type { RunHandle, Runs } from "../resume/runs.js";
import { replay } from "./replay.js";
import { messageOf, type ContentEvent } from "./outbox.js";

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
  /** Resumable streams: their event log and this process's generations (src/resume/). */
  resume: { log: EventLog; runs: Runs };
}

/** A resumable stream another API starts under an id of its own (the OpenAI API's background responses). */
export interface ChosenStream {
  /** The stream's id in the log (a UUID). */
  streamId: string;
  /**
   * No first reader: once the generation runs, `started` is called (the call is the API's to
   * answer and end), and the generation holds itself attached, so no grace runs out while nobody
   * reads it (a client polling for the result never attaches). Cancel and the maximum duration
   * still stop it.
   */
  detached?: { started(): void };
}

/** A caller of ResumeChat or CancelChat: its key's name and the call's request id. */
export interface StreamCaller {
  caller: string;
  requestId: string;
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
    chosen?: ChosenStream,
  ): Promise<void>;
  /**
   * ResumeChat: the stream's events after `after` written to `call`, then its live tail and end.
   * `presenter`: another API's shape, as in `serve`; `notFound`: its NOT_FOUND message, when it
   * knows better why there is no stream (a background response past its retention window).
   */
  resume(
    call: AnyCall,
    who: StreamCaller,
    streamId: string,
    after: number,
    presenter?: Presenter,
    notFound?: string,
  ): Promise<void>;
  /** CancelChat: stops the stream's generation; false when `caller` has no such stream (NOT_FOUND). */
  cancel(streamId: string, caller: string): Promise<boolean>;
  /** Streams in flight now. */
  readonly active: number;
  /**
   * Refuses new streams, lets the open ones finish for up to `graceMs`, then ends the rest with an
   * in-band error. Resolves when no stream is open.
   */
  drain(graceMs: number): Promise<void>;
}

/** The grpc-js implementation of ChatService's Chat, ResumeChat and CancelChat, each call given its context by `contextOf`, its caller by `whoOf`. */
export function chatImplementation(
  service: ChatService,
  contextOf: (call: Call, request: ChatRequest) => CallContext,
  whoOf: (metadata: Metadata) => StreamCaller,
  logger: Logger,
): Pick<ChatServiceServer, "chat" | "resumeChat" | "cancelChat"> {
  return {
    chat: (call: Call) => {
      service
        .chat(call, contextOf(call, call.request))
        .catch((error: unknown) => logger.error({ err: error }, "chat handler failed"));
    },
    resumeChat: (call: ServerWritableStream<ResumeChatRequest, ChatResponse>) => {
      const who = whoOf(call.metadata);
      const problem = resumeProblem(call.request, call.metadata);
      if (typeof problem === "string") {
        endRefused(call, "invalid", problem, who.requestId);
        return;
      }
      service
        .resume(call as AnyCall, who, call.request.streamId, problem.after)
        .catch((error: unknown) => logger.error({ err: error }, "resume handler failed"));
    },
    cancelChat: (call, callback) => {
      const who = whoOf(call.metadata);
      const streamId = call.request.streamId;
      if (streamId === "") return callback({ code: status.INVALID_ARGUMENT, details: "stream_id: required" });
      service.cancel(streamId, who.caller).then(
        (found) =>
          found
            ? callback(null, {}, requestIdMetadata(who.requestId))
            : callback({ code: status.NOT_FOUND, details: "stream not found" }),
        (error: unknown) => {
          logger.error({ err: error }, "cancel handler failed");
          callback({ code: status.UNAVAILABLE, details: "resumable stream store unavailable; retry" });
        },
      );
    },
  };
}

/**
 * ResumeChat's position: `Last-Event-ID` (HTTP's EventSource header, passed on by Envoy as
 * metadata) when present, else `after`; or what is wrong with the request.
 */
function resumeProblem(request: ResumeChatRequest, metadata: Metadata): { after: number } | string {
  if (request.streamId === "") return "stream_id: required";
  const header = metadata.get("last-event-id")[0];
  if (header === undefined) return { after: request.after };
  const text = String(header).trim();
  const after = Number(text);
  if (!/^\d{1,10}$/.test(text) || after > 0xffffffff) return "Last-Event-ID: not a sequence number";
  return { after };
}

// The handler is one function on purpose: the data path (validate → upstream → events → write)
// reads top to bottom, and everything else it uses is a unit of its own.
export function createChatService(deps: ChatServiceDeps): ChatService {
  const { upstream, limits, resume } = deps;
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
    chosen?: ChosenStream,
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
    if (decoded.resumable) return resumable(call, context, request, { reply, trimmedTurns }, presenter, chosen);

    const started = performance.now();
    const stream = streams.start(call, started);
    const outbox = new Outbox(call, context.requestId, context.observer.sent, presenter);
    // The upstream's silences, and heartbeats to the caller while it says nothing; it also keeps
    // the time of the last chunk, so a delta's time is the time its chunk arrived.
    const watchdog = new StreamWatchdog(watchdogLimits, (waitedMs) => outbox.heartbeat(waitedMs));
    const upstreamCall = callFor(context, stream.signal, watchdog);
    const timing: Timing = { deltas: 0, firstDeltaMs: undefined, lastDeltaMs: undefined };
    let outcome: GatewayStatus | undefined;
    let finish: UpstreamFinish | undefined;
    try {
      finish = await pump(request, upstreamCall, watchdog, outbox, { reply, trimmedTurns }, stream.signal, {
        started,
        timing,
      });
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

    reportEnded(context, request.model, { outcome, finish, timing, started, peakBufferedChars: outbox.peakBuffered });
  }

  /**
   * The data path: the upstream's events, batch by batch, to `sink` (the caller's outbox, or a
   * resumable stream's log), the stored conversation's reply alongside. Returns the finish.
   */
  async function pump(
    request: UpstreamRequest,
    upstreamCall: UpstreamCall,
    watchdog: StreamWatchdog,
    sink: EventSink,
    stored: { reply: ReplyRecorder | undefined; trimmedTurns: number },
    signal: AbortSignal,
    clock: { started: number; timing: Timing },
  ): Promise<UpstreamFinish | undefined> {
    const { reply } = stored;
    const { timing, started } = clock;
    let finish: UpstreamFinish | undefined;
    for await (const batch of upstream.stream(request, upstreamCall)) {
      // A batch is what one read of the upstream carried: handled without an await, unless the
      // caller is so far behind that the gateway stops pulling (below).
      for (let i = 0; i < batch.length; i++) {
        const event = batch[i]!;
        if (event.type === "finish") {
          watchdog.close();
          finish = event;
          reply?.event(event);
          sink.finish(event, stored.trimmedTurns);
          continue;
        }
        const at = watchdog.lastChunkAt - started;
        if (timing.deltas++ === 0) timing.firstDeltaMs = at;
        timing.lastDeltaMs = at;
        reply?.event(event);
        if (sink.push(event)) {
          // Far behind: stop pulling from the upstream until the transport has taken what is
          // queued. The upstream's silence meanwhile is the caller's doing, not the upstream's.
          watchdog.pause();
          await sink.drained(signal);
          watchdog.resume();
        }
      }
    }
    return finish;
  }

  /**
   * A resumable stream: its generation runs detached from this call, into the stream's log, and
   * this call is its first reader. The call leaving does not stop the generation (see Runs).
   */
  async function resumable(
    call: AnyCall,
    context: CallContext,
    request: UpstreamRequest,
    stored: { reply: ReplyRecorder | undefined; trimmedTurns: number },
    presenter: Presenter | undefined,
    chosen: ChosenStream | undefined,
  ): Promise<void> {
    let writer: LogWriter;
    // The store failing under the generation stops it: what came next could not be kept without a gap.
    let stop: ((why: "store") => void) | undefined;
    try {
      writer = await resume.log.create(
        context.caller,
        (error) => {
          deps.logger.error({ err: error }, "resumable stream store failed mid-stream");
          stop?.("store");
        },
        chosen?.streamId,
      );
    } catch (error: unknown) {
      await stored.reply?.end(status.UNAVAILABLE, "resume_store");
      const full = error instanceof LogRefused && error.why === "full";
      if (!full) deps.logger.error({ err: error }, "resumable stream store failed");
      return refuse(
        call,
        context,
        request.model,
        full ? "resume_full" : "resume_unavailable",
        full ? error.message : "resumable stream store unavailable; retry, or start the stream without resumable",
      );
    }
    // The writer's own reader: no owner lookup, so no round trip that could fail after the start.
    const reader = resume.log.reader(writer.streamId);
    const started = performance.now();
    const stream = streams.startDetached(started);
    stop = stream.stop;
    const run = resume.runs.register(writer.streamId, (why, afterMs) => stream.stop(why, afterMs));
    const attached = run.attach();
    void generate(writer, run, context, request, stored, stream, started).finally(() => run.close());
    if (chosen?.detached) {
      // Attached for its whole run (see ChosenStream), as a reader that has seen everything: it
      // holds off the grace, never the generation. run.close() forgets it.
      attached.at(Number.MAX_SAFE_INTEGER);
      chosen.detached.started();
      return;
    }
    try {
      await replay(call, reader, {
        streamId: writer.streamId,
        after: 0,
        requestId: context.requestId,
        heartbeatMs: limits.heartbeatIntervalMs,
        presenter,
        onReadError: logReadError,
        onProgress: attached.at,
        // Left before its first byte (Stop while the model was silent): nobody knows the stream's
        // id, so no one could resume it; the generation stops as a plain stream's would.
        onLeftUnanswered: () => resume.runs.cancel(writer.streamId),
      });
    } finally {
      attached.detach();
    }
  }

  /** A resumable stream's generation: the upstream into its log, ended with its finish or error. */
  async function generate(
    writer: LogWriter,
    run: RunHandle,
    context: CallContext,
    request: UpstreamRequest,
    stored: { reply: ReplyRecorder | undefined; trimmedTurns: number },
    stream: { signal: AbortSignal; close(): void },
    started: number,
  ): Promise<void> {
    const sink = logSink(writer, run, context.observer.sent);
    // Heartbeats are each reader's (replay.ts): they say the connection is alive, not the stream.
    const watchdog = new StreamWatchdog({ ...watchdogLimits, heartbeatMs: 0 }, () => undefined);
    const upstreamCall = callFor(context, stream.signal, watchdog);
    const timing: Timing = { deltas: 0, firstDeltaMs: undefined, lastDeltaMs: undefined };
    let outcome: GatewayStatus | undefined;
    let finish: UpstreamFinish | undefined;
    try {
      finish = await pump(request, upstreamCall, watchdog, sink, stored, stream.signal, { started, timing });
      await stored.reply?.end(status.OK, undefined);
      if (finish === undefined) throw new Error("upstream ended without a finish");
    } catch (error: unknown) {
      outcome = toGatewayStatus(stream.signal.aborted ? stream.signal.reason : error, deps.secrets);
      await stored.reply?.end(outcome.code, outcome.cause);
      const value = { code: outcome.code, status: status[outcome.code], message: outcome.details };
      writer.end({ event: { $case: "error", value } }, { ...outcome, upstream: upstreamCall.upstream });
    } finally {
      void stored.reply?.end(status.INTERNAL, "internal");
      watchdog.close();
      stream.close();
    }
    // A reader's merging is its own (replay.ts): the generation buffers nothing for a caller.
    reportEnded(context, request.model, { outcome, finish, timing, started, peakBufferedChars: 0 });
  }

  async function resumeStream(
    call: AnyCall,
    who: StreamCaller,
    streamId: string,
    after: number,
    presenter?: Presenter,
    notFound = "stream not found",
  ): Promise<void> {
    let reader: LogReader | undefined;
    try {
      reader = await resume.log.open(streamId, who.caller);
    } catch (error: unknown) {
      logReadError(error);
      endRefused(call, "resume_unavailable", "resumable stream store unavailable; retry", who.requestId);
      return;
    }
    if (!reader) {
      endRefused(call, "not_found", notFound, who.requestId);
      return;
    }
    // Attached to a generation running here holds its grace; one running elsewhere is not told.
    const attached = resume.runs.attach(streamId);
    try {
      await replay(call, reader, {
        streamId,
        after,
        requestId: who.requestId,
        heartbeatMs: limits.heartbeatIntervalMs,
        presenter,
        onReadError: logReadError,
        onProgress: attached?.at,
      });
    } finally {
      attached?.detach();
    }
  }

  function logReadError(error: unknown): void {
    deps.logger.error({ err: error }, "resumable stream store failed under a reader");
  }

  async function cancel(streamId: string, caller: string): Promise<boolean> {
    // The owner check is the log's: a generation is stopped only for its own caller.
    if (!(await resume.log.open(streamId, caller))) return false;
    if (!resume.runs.cancel(streamId)) await resume.log.cancelElsewhere(streamId);
    return true;
  }

  return {
    chat: (call, context) => chat(call as AnyCall, context, call.request),
    serve: (call, context, request, presenter, problem, history, chosen) =>
      chat(call, context, request, presenter, problem, history, chosen),
    get active() {
      return streams.active;
    },
    resume: resumeStream,
    cancel,
    drain: (graceMs) => streams.drain(graceMs),
  };
}

/** What the data path reports of the stream's content events, for the stream's summary. */
/** The stream's line in the log, metrics, budget and trace (the call's observer), once it has ended. */
function reportEnded(
  context: CallContext,
  model: string,
  ended: {
    outcome: GatewayStatus | undefined;
    finish: UpstreamFinish | undefined;
    timing: Timing;
    started: number;
    peakBufferedChars: number;
  },
): void {
  context.observer.ended({
    model,
    code: ended.outcome?.code ?? status.OK,
    cause: ended.outcome?.cause,
    ...ended.timing,
    durationMs: performance.now() - ended.started,
    finishReason: ended.finish?.finishReason,
    usage: ended.finish?.usage,
    peakBufferedChars: ended.peakBufferedChars,
  });
}

interface Timing {
  deltas: number;
  firstDeltaMs: number | undefined;
  lastDeltaMs: number | undefined;
}

/** Where the data path writes: the caller's Outbox, or a resumable stream's log (logSink). */
interface EventSink {
  /** True when the producer must wait for `drained` before more. */
  push(event: ContentEvent): boolean;
  finish(event: UpstreamFinish, historyTrimmedTurns: number): void;
  drained(signal: AbortSignal): Promise<void>;
}

/**
 * A resumable stream's events go to its log; the generation waits only for readers attached in this
 * process that fell far behind (Runs), never for an absent one, and the log's bounds cap what is kept.
 */
function logSink(writer: LogWriter, run: RunHandle, sent: ((message: ChatResponse) => void) | undefined): EventSink {
  let last = 0;
  return {
    push(event) {
      const message = messageOf(event);
      sent?.(message);
      last = writer.append(message);
      return run.behind(last);
    },
    finish(event, historyTrimmedTurns) {
      const value = {
        finishReason: event.finishReason,
        model: event.model,
        usage: event.usage,
        ...(historyTrimmedTurns > 0 && { historyTrimmedTurns }),
      };
      const message: ChatResponse = { event: { $case: "finish", value } };
      sent?.(message);
      writer.end(message);
    },
    drained: (signal) => run.caughtUp(last, signal),
  };
}

/** Ends a call before anything was written, refused: a trailers-only response Envoy maps to an HTTP status. */
function endRefused(call: AnyCall, why: CallRefused["why"], detail: string, requestId: string): GatewayStatus {
  const outcome = toGatewayStatus(new CallRefused(why, detail));
  const metadata = errorTrailers(outcome, { requestId });
  call.emit("error", { code: outcome.code, details: outcome.details, metadata });
  return outcome;
}

/** A chat call refused before it became a stream: ended (endRefused) and told to its observer. */
function refuse(call: AnyCall, context: CallContext, model: string, why: CallRefused["why"], detail: string): void {
  const outcome = endRefused(call, why, detail, context.requestId);
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
