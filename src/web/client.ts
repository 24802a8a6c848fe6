// The typed HTTP client of the gateway, for browsers and Node: `import { streamChat } from
// "chat-gateway/web"`. It speaks to Envoy's `POST /chat` (server-sent events) and `GET /models`, and
// yields the same `ChatResponse` events the gRPC client does, decoded by the code generated from
// proto/ (src/gen/web: the same messages, without the grpc-js service stubs, so nothing here needs
// Node). Needs only fetch, streams and TextDecoderStream: every current browser, Node 18+.
import { EventSourceParserStream } from "eventsource-parser/stream";
import {
  ChatRequest,
  ChatResponse,
  Conversation,
  GetConversationResponse,
  ListConversationsResponse,
  ListModelsResponse,
  type DeepPartial,
} from "../contract/web.js";
import { ChatError, GrpcCode, errorFromResponse, type ChatErrorInit } from "./errors.js";
import { Outage, type Network, type ReconnectOptions } from "./reconnect.js";

export { ChatError, GrpcCode, grpcCodeName, type GrpcCodeName, type ChatErrorInit } from "./errors.js";
export { RECONNECT_DEFAULTS, type ReconnectOptions } from "./reconnect.js";
export type {
  ChatRequest,
  ChatResponse,
  ChatMessage,
  ContentPart,
  ImageUrl,
  Tool,
  FunctionDefinition,
  ToolChoice,
  ToolCall,
  FunctionCall,
  ResponseFormat,
  JsonSchema,
  Delta,
  ToolCallDelta,
  Heartbeat,
  Finish,
  Usage,
  StreamError,
  ListModelsResponse,
  Model,
  UnavailableUpstream,
  Conversation,
  Turn,
  ListConversationsResponse,
  GetConversationResponse,
  DeepPartial,
} from "../contract/web.js";

/** A request as written by hand: every field optional, as `ChatRequest.fromPartial` takes it. */
export type ChatRequestInit = DeepPartial<ChatRequest>;

export interface ClientOptions {
  /** Where the gateway's HTTP side (Envoy) is, e.g. `http://localhost:8080`. Default: the page's own origin; required outside a browser page. */
  baseUrl?: string | undefined;
  /** A caller key (with `AUTH=keys`), sent as `authorization: Bearer <key>`. */
  apiKey?: string | undefined;
  /** Aborting it closes the request at once (the gateway then closes the upstream's); the iteration throws the signal's reason. */
  signal?: AbortSignal | undefined;
  /** The fetch to use; default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch | undefined;
  /**
   * `streamChat` and `resumeChat`: survive a dropped connection (docs/resuming-clients.md). `true`,
   * or the retry settings, send the request `resumable`, and when the connection drops mid-stream
   * (a network error, or the body ending before the finish or error) re-attach with
   * `GET /chat/streams/{id}` and `Last-Event-ID`, backing off between attempts, and yield the events
   * after the last one yielded: no gap, no repeat. Leaving the loop early or aborting `signal` then
   * cancels the stream (`DELETE /chat/streams/{id}`, best effort), so its generation stops. Default:
   * on when the request is `resumable`, off otherwise; `false` keeps a `resumable` request's stream
   * id and positions for the caller to resume by hand.
   */
  resume?: boolean | ReconnectOptions | undefined;
}

/**
 * Streams one chat reply: each `ChatResponse` as it arrives, ending after `finish`. Throws a
 * `ChatError` when the gateway refuses the request (its HTTP status and gRPC code), after yielding
 * an in-band `error` event (as the gRPC client yields it, then fails with its status), when the
 * stream ends without a final event, or when the gateway cannot be reached. Leaving the loop early
 * (`break`, an exception) closes the request, as aborting `signal` does.
 *
 * With `resume` (or a `resumable` request) the stream survives a dropped connection: the loop sees
 * one stream, each event once, whatever happened to the connections under it (see `ClientOptions.resume`).
 */
export async function* streamChat(
  request: ChatRequestInit,
  options: ClientOptions = {},
): AsyncGenerator<ChatResponse, void, undefined> {
  const message = ChatRequest.fromPartial(request);
  const resume = resumeSettings(options.resume, message.resumable);
  if (resume) message.resumable = true;
  const body = JSON.stringify(ChatRequest.toJSON(message));
  yield* withRequest(options, (signal) =>
    follow(options, signal, resume, { streamId: undefined, sequence: 0 }, (connection) =>
      send(options, "/chat", { method: "POST", body, signal: connection }, SSE),
    ),
  );
}

/**
 * Re-attaches to a resumable stream (`GET /chat/streams/{streamId}` with `Last-Event-ID: after`):
 * the events after `after` (the last `sequence` seen; 0 for all of them), then the live tail, then
 * its finish or error, as `streamChat` yields them; it resumes again if this connection drops
 * (unless `resume: false`). NOT_FOUND for an unknown, expired or another caller's stream;
 * OUT_OF_RANGE when those events are no longer kept. Leaving the loop early cancels the stream.
 */
export async function* resumeChat(
  streamId: string,
  after = 0,
  options: ClientOptions = {},
): AsyncGenerator<ChatResponse, void, undefined> {
  const resume = resumeSettings(options.resume, true);
  yield* withRequest(options, (signal) =>
    follow(options, signal, resume, { streamId, sequence: after }, (connection) =>
      attach(options, streamId, after, connection),
    ),
  );
}

/**
 * `DELETE /chat/streams/{streamId}`: stops a resumable stream's generation at once (readers
 * attached get its CANCELLED error). NOT_FOUND as `resumeChat`'s; a stream that has ended is left as it is.
 */
export async function cancelChat(streamId: string, options: ClientOptions = {}): Promise<void> {
  await requestJson(options, "DELETE", streamPath(streamId));
}

const SSE = "text/event-stream";

/** Where a resumable stream is: its id (from its first event) and the last position yielded. */
interface Position {
  streamId: string | undefined;
  sequence: number;
}

/** The settings to resume with, or undefined not to. */
function resumeSettings(option: ClientOptions["resume"], resumable: boolean): ReconnectOptions | undefined {
  if (option === false) return undefined;
  if (option === true) return {};
  return option ?? (resumable ? {} : undefined);
}

/**
 * The stream's events across its connections: `open`'s response first, and after each drop (a
 * network error while reading, or a body that ends before the finish or error) a re-attach from
 * the last position yielded, with `reconnect`'s backoff, until the stream's final event.
 */
async function* follow(
  options: ClientOptions,
  signal: AbortSignal,
  reconnect: ReconnectOptions | undefined,
  position: Position,
  open: (connection: AbortSignal) => Promise<Response>,
): AsyncGenerator<ChatResponse> {
  // Each connection can be dropped on its own (the browser going offline) without ending the stream.
  let connection = new AbortController();
  // Until the first event names the stream, a caller who leaves has nothing to cancel it by: the
  // first connection then outlives the caller's signal until that event comes, and cancels it.
  const unnamed = reconnect !== undefined && position.streamId === undefined;
  const opening = open(unnamed ? connection.signal : AbortSignal.any([signal, connection.signal]));
  let response: Response;
  try {
    response = await untilAborted(opening, signal);
  } catch (error) {
    if (unnamed && signal.aborted)
      void cancelOnceNamed(
        options,
        connection,
        opening.then((r) => r.headers.get("chat-stream-id") ?? streamIdOf(r.body!)),
      );
    else connection.abort();
    throw error;
  }
  // A resumable stream's id is in its headers as well as on its first event: a caller who leaves
  // after they came can cancel it at once.
  if (reconnect) position.streamId ??= response.headers.get("chat-stream-id") ?? undefined;
  let body = response.body!;
  let stopNaming: () => void = () => undefined;
  if (unnamed) {
    const [main, sentinel] = body.tee();
    body = main;
    const named = streamIdOf(sentinel);
    const first = connection;
    const onAbort = () => {
      if (position.streamId === undefined) void cancelOnceNamed(options, first, named);
      else first.abort();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    stopNaming = () => signal.removeEventListener("abort", onAbort);
  }
  let outage: Outage | undefined;
  let ended = false;
  let resumed = false;
  try {
    for (;;) {
      let lost: ChatError;
      // A browser that says it went offline will not get this response's next bytes (Chromium
      // leaves the read hanging): drop it now, and re-attach once it is back online.
      const current = connection;
      const unwatch = reconnect
        ? browserNetwork.whenOffline(() => current.abort(new Error("offline")))
        : () => undefined;
      try {
        for await (const event of read(body, response, signal)) {
          if (event.sequence !== undefined) {
            // The gateway sends nothing at or before Last-Event-ID; this keeps "each event once" if it did.
            if (event.sequence <= position.sequence) continue;
            position.sequence = event.sequence;
          }
          if (event.streamId) {
            position.streamId ??= event.streamId;
            // The caller sees one stream: its id once, on its first event.
            if (resumed) event.streamId = undefined;
          }
          if (outage) {
            outage = undefined;
            reconnect?.onReconnected?.();
          }
          const kind = event.event?.$case;
          ended = kind === "finish" || kind === "error";
          yield event;
          if (kind === "error") {
            const { code, message } = (event.event as { value: { code: number; message: string } }).value;
            throw new ChatError({ code, message, ...where(response), inBand: true });
          }
          if (kind === "finish") return;
        }
        lost = new ChatError({
          code: GrpcCode.UNAVAILABLE,
          message: "the stream ended without a finish event",
          ...where(response),
          inBand: true,
        });
      } catch (error) {
        if (!(error instanceof Dropped) || signal.aborted) throw error;
        lost = error.error;
      } finally {
        unwatch();
      }
      const { streamId, sequence } = position;
      if (!reconnect || streamId === undefined) throw lost;
      outage ??= new Outage(reconnect, browserNetwork);
      connection = new AbortController();
      const both = AbortSignal.any([signal, connection.signal]);
      response = await reattach(options, signal, both, { streamId, sequence }, outage, lost);
      body = response.body!;
      resumed = true;
    }
  } finally {
    stopNaming();
    // Left early (break, abort, a failure to resume): the generation would go on for nobody.
    if (!ended && reconnect && position.streamId !== undefined) await cancelQuietly(options, position.streamId);
  }
}

/** Tries to re-attach until it does, the outage's attempts or time are spent, or an answer says it never will. */
async function reattach(
  options: ClientOptions,
  signal: AbortSignal,
  connection: AbortSignal,
  position: { streamId: string; sequence: number },
  outage: Outage,
  lost: ChatError,
): Promise<Response> {
  let last: unknown = lost;
  for (;;) {
    const spent = outage.spent();
    if (spent)
      throw new ChatError({
        code: GrpcCode.UNAVAILABLE,
        message: `the connection to the gateway was lost mid-stream; ${spent}`,
        httpStatus: lost.httpStatus,
        requestId: lost.requestId,
        inBand: true,
        cause: last,
      });
    await outage.wait(last, signal);
    try {
      return await attach(options, position.streamId, position.sequence, connection);
    } catch (error) {
      if (signal.aborted || !worthRetrying(error)) throw error;
      last = error;
    }
  }
}

function attach(options: ClientOptions, streamId: string, after: number, signal: AbortSignal): Promise<Response> {
  return send(options, streamPath(streamId), { method: "GET", signal }, SSE, { "last-event-id": String(after) });
}

const streamPath = (streamId: string) => `/chat/streams/${encodeURIComponent(streamId)}`;

/**
 * A re-attach that failed for a reason that may pass: no answer (the network), or UNAVAILABLE (a
 * replica restarting, the store down), but not "the generation was lost" (its replica died: the
 * stream will never finish). NOT_FOUND, OUT_OF_RANGE, UNAUTHENTICATED and the rest are final.
 */
function worthRetrying(error: unknown): boolean {
  if (!(error instanceof ChatError)) return false;
  if (error.httpStatus === undefined) return true;
  if (error.code !== GrpcCode.UNAVAILABLE) return false;
  return !error.details?.some((d) => (d as { reason?: unknown } | null)?.reason === "GENERATION_LOST");
}

/** Best effort, bounded: the caller is leaving and must not wait on a gateway it cannot reach. */
async function cancelQuietly(options: ClientOptions, streamId: string): Promise<void> {
  const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
  try {
    // keepalive: a page being closed still sends it.
    const response = await send(
      options,
      streamPath(streamId),
      { method: "DELETE", signal, keepalive: true },
      "application/json",
    );
    await response.text();
  } catch {
    // Not reachable, or already gone: the gateway stops it after RESUME_GRACE_MS anyway.
  }
}
const CANCEL_TIMEOUT_MS = 2_000;

/**
 * A browser's word on the network (`navigator.onLine`, the `online` and `offline` events); under
 * Node, which has none, nothing is ever offline and nothing wakes a backoff early.
 */
const browserNetwork: Network & { whenOffline(then: () => void): () => void } = {
  offline: () => (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false,
  online: (signal) =>
    new Promise((resolve) => {
      const stop = listen("online", () => {
        stop();
        resolve();
      });
      signal.addEventListener("abort", stop, { once: true });
    }),
  whenOffline: (then) => listen("offline", then),
};

/** Listens to a window event where there is a window; returns how to stop. */
function listen(type: "online" | "offline", listener: () => void): () => void {
  // A browser window (or worker) has `ononline`; Node's globalThis is an EventTarget without it.
  const target = globalThis as unknown as Partial<EventTarget> & { ononline?: unknown };
  if (!("ononline" in target) || !target.addEventListener || !target.removeEventListener) return () => undefined;
  target.addEventListener(type, listener);
  return () => target.removeEventListener?.(type, listener);
}

/** A connection lost while reading: the stream may be re-attached. */
class Dropped extends Error {
  constructor(readonly error: ChatError) {
    super(error.message);
  }
}

const where = (response: Response) => ({
  httpStatus: response.status,
  requestId: response.headers.get("x-request-id") ?? undefined,
});

/**
 * One response's events, decoded; a network error while reading is thrown as `Dropped`, and
 * `signal` aborting as its reason (at once, though this body's connection may be kept open).
 */
async function* read(body: Body, response: Response, signal: AbortSignal): AsyncGenerator<ChatResponse> {
  const events = sse(body).getReader();
  try {
    for (;;) {
      let next: Awaited<ReturnType<typeof events.read>>;
      try {
        next = await untilAborted(events.read(), signal);
      } catch (error) {
        if (signal.aborted) throw error;
        throw new Dropped(
          new ChatError({
            code: GrpcCode.UNAVAILABLE,
            message: "the connection to the gateway was lost mid-stream",
            ...where(response),
            inBand: true,
            cause: error,
          }),
        );
      }
      if (next.done) return;
      yield ChatResponse.fromJSON(parseJson(next.value.data, { ...where(response), inBand: true }));
    }
  } finally {
    void events.cancel().catch(() => undefined);
  }
}

/** A response's body (the type fetch gives, which TextDecoderStream takes). */
type Body = NonNullable<Response["body"]>;

const sse = (body: Body) =>
  body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream({ onError: "terminate" }));

/** `promise`, or `signal`'s reason as soon as it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** The stream id its first event names (undefined if it ends first); reads nothing after it. */
async function streamIdOf(body: Body): Promise<string | undefined> {
  const events = sse(body).getReader();
  try {
    for (;;) {
      const next = await events.read();
      if (next.done) return undefined;
      const id = (JSON.parse(next.value.data) as { streamId?: unknown }).streamId;
      return typeof id === "string" ? id : undefined;
    }
  } catch {
    return undefined;
  } finally {
    void events.cancel().catch(() => undefined);
  }
}

/**
 * The caller left before the first event named the stream: keep its first connection until that
 * event comes (at most NAMING_WAIT_MS), then cancel the stream, so the generation does not run on
 * for nobody; then close the connection.
 */
async function cancelOnceNamed(
  options: ClientOptions,
  connection: AbortController,
  named: Promise<string | undefined>,
): Promise<void> {
  const timer = setTimeout(() => connection.abort(), NAMING_WAIT_MS);
  try {
    const id = await named;
    if (id !== undefined) await cancelQuietly(options, id);
  } catch {
    // The connection failed first: nothing to cancel by.
  } finally {
    clearTimeout(timer);
    connection.abort();
  }
}
/**
 * How long a caller who left before the stream was named keeps its first connection. The gateway
 * stops a generation whose caller left before anything was written to it; this covers the other
 * case, a first event already on its way when the caller left (the gateway counts it as seen), which
 * then names the stream to cancel. A model silent past it is stopped by the gateway once the
 * connection closes.
 */
const NAMING_WAIT_MS = 1_000;

/** `GET /models`: every model the gateway routes to, and the upstreams that could not list theirs. */
export async function listModels(options: ClientOptions = {}): Promise<ListModelsResponse> {
  const response = await send(
    options,
    "/models",
    { method: "GET", ...(options.signal && { signal: options.signal }) },
    "application/json",
  );
  return ListModelsResponse.fromJSON(
    parseJson(await response.text(), {
      httpStatus: response.status,
      requestId: response.headers.get("x-request-id") ?? undefined,
    }),
  );
}

/** `POST /conversations`: a new stored conversation of this caller (docs/conversations.md). */
export async function createConversation(
  init: { title?: string; systemPrompt?: string } = {},
  options: ClientOptions = {},
): Promise<Conversation> {
  const body = { title: init.title ?? "", system_prompt: init.systemPrompt ?? "" };
  const { conversation } = await requestJson(options, "POST", "/conversations", body);
  return Conversation.fromJSON(conversation);
}

/** `GET /conversations`: this caller's conversations, newest first, a page at a time. */
export async function listConversations(
  page: { pageSize?: number; pageToken?: string } = {},
  options: ClientOptions = {},
): Promise<ListConversationsResponse> {
  const query = new URLSearchParams();
  if (page.pageSize) query.set("page_size", String(page.pageSize));
  if (page.pageToken) query.set("page_token", page.pageToken);
  const search = query.toString();
  const path = `/conversations${search ? `?${search}` : ""}`;
  return ListConversationsResponse.fromJSON(await requestJson(options, "GET", path));
}

/** `GET /conversations/{id}`: the conversation and every stored turn. */
export async function getConversation(id: string, options: ClientOptions = {}): Promise<GetConversationResponse> {
  return GetConversationResponse.fromJSON(
    await requestJson(options, "GET", `/conversations/${encodeURIComponent(id)}`),
  );
}

/** `PATCH /conversations/{id}`: a new title. */
export async function renameConversation(
  id: string,
  title: string,
  options: ClientOptions = {},
): Promise<Conversation> {
  const { conversation } = await requestJson(options, "PATCH", `/conversations/${encodeURIComponent(id)}`, { title });
  return Conversation.fromJSON(conversation);
}

/** `DELETE /conversations/{id}`: the conversation and its turns, for good. */
export async function deleteConversation(id: string, options: ClientOptions = {}): Promise<void> {
  await requestJson(options, "DELETE", `/conversations/${encodeURIComponent(id)}`);
}

/** One unary JSON request; resolves with the parsed body, or throws its ChatError. */
async function requestJson(
  options: ClientOptions,
  method: string,
  path: string,
  body?: unknown,
  // biome-ignore lint/suspicious/noExplicitAny: the JSON as it came, read by each message's fromJSON
): Promise<any> {
  const init: RequestInit = { method, ...(options.signal && { signal: options.signal }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await send(options, path, init, "application/json");
  return parseJson(await response.text(), {
    httpStatus: response.status,
    requestId: response.headers.get("x-request-id") ?? undefined,
  });
}

/**
 * Runs `body` with a signal of its own, aborted when the caller's is and whenever the iteration ends
 * (normally, by `break`, or by an exception), so an unfinished response is never left open.
 */
async function* withRequest<T>(
  options: ClientOptions,
  body: (signal: AbortSignal) => AsyncGenerator<T>,
): AsyncGenerator<T> {
  const outer = options.signal;
  outer?.throwIfAborted();
  const controller = new AbortController();
  const abort = () => controller.abort(outer?.reason);
  outer?.addEventListener("abort", abort, { once: true });
  try {
    yield* body(controller.signal);
  } catch (error) {
    // fetch and the body's reader reject with the signal's reason; say so whichever step it hit.
    if (outer?.aborted) throw outer.reason;
    throw error;
  } finally {
    outer?.removeEventListener("abort", abort);
    controller.abort();
  }
}

/** Sends one request; resolves with a 2xx response of the expected type, or throws its ChatError. */
async function send(
  options: ClientOptions,
  path: string,
  init: RequestInit,
  accept: string,
  extraHeaders: Record<string, string> = {},
): Promise<Response> {
  const headers: Record<string, string> = { accept, ...extraHeaders };
  if (init.body !== undefined) headers["content-type"] = "application/json";
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  let response: Response;
  try {
    response = await fetchImpl(endpoint(options.baseUrl, path), { ...init, headers });
  } catch (error) {
    if (init.signal?.aborted) throw error;
    throw new ChatError({
      code: GrpcCode.UNAVAILABLE,
      message: `could not reach the gateway: ${(error as Error).message}`,
      cause: error,
    });
  }
  if (!response.ok) throw await errorFromResponse(response);
  const type = response.headers.get("content-type") ?? "";
  if (!type.startsWith(accept) || !response.body) {
    void response.body?.cancel().catch(() => undefined);
    throw new ChatError({
      code: GrpcCode.UNKNOWN,
      message: `the gateway answered ${response.status} with ${type || "no content type"}, not ${accept}`,
      httpStatus: response.status,
      requestId: response.headers.get("x-request-id") ?? undefined,
    });
  }
  return response;
}

function endpoint(baseUrl: string | undefined, path: string): string {
  const base = baseUrl ?? (globalThis as { location?: { origin: string } }).location?.origin;
  if (!base) throw new TypeError("baseUrl is required outside a browser page (e.g. http://localhost:8080)");
  return base.replace(/\/+$/, "") + path;
}

function parseJson(text: string, where: Pick<ChatErrorInit, "httpStatus" | "requestId" | "inBand">): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ChatError({
      code: GrpcCode.INTERNAL,
      message: "the gateway sent data that is not JSON",
      ...where,
      cause: error,
    });
  }
}
