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

export { ChatError, GrpcCode, grpcCodeName, type GrpcCodeName, type ChatErrorInit } from "./errors.js";
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
}

/**
 * Streams one chat reply: each `ChatResponse` as it arrives, ending after `finish`. Throws a
 * `ChatError` when the gateway refuses the request (its HTTP status and gRPC code), after yielding
 * an in-band `error` event (as the gRPC client yields it, then fails with its status), when the
 * stream ends without a final event, or when the gateway cannot be reached. Leaving the loop early
 * (`break`, an exception) closes the request, as aborting `signal` does.
 */
export async function* streamChat(
  request: ChatRequestInit,
  options: ClientOptions = {},
): AsyncGenerator<ChatResponse, void, undefined> {
  const body = JSON.stringify(ChatRequest.toJSON(ChatRequest.fromPartial(request)));
  yield* withRequest(options, async function* (signal) {
    const response = await send(options, "/chat", { method: "POST", body, signal }, "text/event-stream");
    const requestId = response.headers.get("x-request-id") ?? undefined;
    const events = response
      .body!.pipeThrough(new TextDecoderStream())
      .pipeThrough(new EventSourceParserStream({ onError: "terminate" }))
      .getReader();
    let last: ChatResponse["event"];
    for (;;) {
      let next: Awaited<ReturnType<typeof events.read>>;
      try {
        next = await events.read();
      } catch (error) {
        if (signal.aborted) throw error;
        throw new ChatError({
          code: GrpcCode.UNAVAILABLE,
          message: "the connection to the gateway was lost mid-stream",
          httpStatus: response.status,
          requestId,
          inBand: true,
          cause: error,
        });
      }
      if (next.done) break;
      const event = ChatResponse.fromJSON(
        parseJson(next.value.data, { httpStatus: response.status, requestId, inBand: true }),
      );
      last = event.event;
      yield event;
    }
    if (last?.$case === "error") {
      const { code, message } = last.value;
      throw new ChatError({ code, message, httpStatus: response.status, requestId, inBand: true });
    }
    if (last?.$case !== "finish") {
      throw new ChatError({
        code: GrpcCode.UNAVAILABLE,
        message: "the stream ended without a finish event",
        httpStatus: response.status,
        requestId,
        inBand: true,
      });
    }
  });
}

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
async function send(options: ClientOptions, path: string, init: RequestInit, accept: string): Promise<Response> {
  const headers: Record<string, string> = { accept };
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
