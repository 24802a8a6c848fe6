// A small, real OpenAI-compatible chat-completions server: `POST /v1/chat/completions` answering in
// the streaming SSE wire format (role chunk, content chunks, finish chunk, usage chunk, `[DONE]`),
// and `GET /v1/models` listing its models. Besides plain text it streams the shapes real servers
// send (see `wire`): reasoning before the answer, tool calls (parallel, interleaved, without
// `index`, with a reused `index`), refusals, usage with its details; or replays a recorded stream
// as it is, a few bytes at a time.
// `npm start` runs it as the demo upstream when no real one is configured; the tests and the
// benchmark run the same code with knobs, so the real `openai` SDK is exercised end to end.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";

export interface RecordedRequest {
  readonly index: number;
  readonly headers: IncomingMessage["headers"];
  readonly body: ChatCompletionBody;
}

export interface ChatCompletionBody {
  model?: string;
  /** `content` is a string, a list of content parts, or null beside tool calls. */
  messages?: { role: string; content: string | { type: string; text?: string }[] | null; [key: string]: unknown }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  [key: string]: unknown;
}

/** One chunk's `choices[0].delta`, as a server writes it (see `wire` for the shapes). */
export type WireDelta = Record<string, unknown>;

/** What the server does with one request. Every field is optional; the defaults stream a short reply. */
export interface Reply {
  /** Deltas in real servers' shapes (`wire.*`), one chunk each, sent before `tokens`. */
  deltas?: readonly WireDelta[];
  /** The content deltas, in order, after `deltas`. */
  tokens?: readonly string[];
  /** Delay before the first step (delta or token), and between steps after it (0: as fast as possible). */
  firstTokenDelayMs?: number;
  tokenDelayMs?: number;
  /**
   * Awaited before step `index` is written (`deltas` first, then `tokens`), and with `index` equal to
   * the number of steps before the stream ends: lets a test hold the stream at a chosen point.
   */
  gate?: (index: number) => Promise<void> | undefined;
  finishReason?: string;
  /** Send the usage chunk when the client asks for it (`stream_options.include_usage`). Default true. */
  usage?: boolean;
  /** Added to the usage: `completion_tokens_details: {reasoning_tokens}`, `prompt_tokens_details: {cached_tokens}`, ... */
  usageDetails?: Record<string, unknown>;
  /**
   * A recorded SSE body (`data: {...}` events, `[DONE]` included), sent as it is instead of
   * everything above, `writeBytes` bytes per write with a turn of the event loop between writes
   * (default: all at once). 1 sends it byte by byte: every chunk and JSON value split everywhere.
   */
  sse?: string;
  writeBytes?: number;
  /** Wait this long before sending the response headers. */
  headersDelayMs?: number;
  /** Awaited before the response headers are sent: a test's way to hang the upstream before it answers. */
  holdHeaders?: Promise<void>;
  /** Send the first chunk, `delta: {role: "assistant", content: ""}`. Default true. */
  roleChunk?: boolean;
  /**
   * Chunks sent after the role chunk and before step `before` (default 0, the first), one every
   * `everyMs` until `forMs` have passed on this server's clock: what a model sends while it reasons,
   * calls a tool, or keeps the connection busy (reasoning and tool-call fillers reach the caller as
   * events; the others carry nothing).
   */
  fillers?: { kind: FillerKind; everyMs: number; forMs: number; before?: number };
  /** Answer with this HTTP status and an OpenAI-style error body instead of streaming. */
  status?: number;
  errorMessage?: string;
  headers?: Record<string, string>;
  /**
   * How the stream ends after the tokens: normally; the connection cut; an SSE error event
   * (`errorEvent`); garbage; valid JSON that is no chunk (no `choices`); or a clean close with no
   * finish reason and no `[DONE]`.
   */
  end?: "done" | "cut" | "error-event" | "malformed" | "no-choices" | "quiet";
  /** The data of the `error-event` end. Default `{"error": {"message": "the model crashed", "type": "server_error"}}`. */
  errorEvent?: Record<string, unknown>;
  /** Refuse requests that carry `stream_options`, like some older compatible servers do. */
  rejectStreamOptions?: boolean;
}

/**
 * Chunks in the shapes real servers send while no text comes: `reasoning_content` deltas (DeepSeek,
 * vLLM), a repeated role, an empty delta, a tool call's argument fragments, usage with no choices.
 */
export type FillerKind = "reasoning" | "role" | "empty" | "tool-call" | "usage";

/** The deltas real servers stream, for `Reply.deltas`. */
export const wire = {
  /** The first chunk of most servers. */
  role: (): WireDelta => ({ role: "assistant", content: "" }),
  content: (text: string): WireDelta => ({ content: text }),
  /** `reasoning_content` (DeepSeek, vLLM, QwQ) or `reasoning` (OpenRouter, newer vLLM, Ollama). */
  reasoning: (text: string, field: "reasoning_content" | "reasoning" = "reasoning_content"): WireDelta => ({ content: null, [field]: text }),
  /** Structured outputs' refusal (OpenAI). */
  refusal: (text: string): WireDelta => ({ content: null, refusal: text }),
  /** A tool call's first piece: its id, name and maybe first arguments. `index` undefined leaves it out (Gemini). */
  toolCall: (index: number | undefined, id: string, name: string, args = ""): WireDelta => ({
    tool_calls: [{ ...(index !== undefined && { index }), id, type: "function", function: { name, arguments: args } }],
  }),
  /** More of a tool call's arguments: no id, no name. */
  toolArgs: (index: number | undefined, args: string): WireDelta => ({
    tool_calls: [{ ...(index !== undefined && { index }), function: { arguments: args } }],
  }),
};

/** What `GET /v1/models` answers. */
export interface ModelsReply {
  /** Model ids listed, in order. Default: `demo`. */
  ids?: readonly string[];
  /** `owned_by` of every model listed. */
  ownedBy?: string;
  /** Answer with this HTTP status and an OpenAI-style error body instead of the list. */
  status?: number;
  errorMessage?: string;
  /** Answer 200 with this body, as is, instead of the list. */
  body?: string;
  /** Awaited before answering: lets a test hold the listing. */
  gate?: Promise<void>;
}

export interface FakeUpstreamOptions {
  /** Decides the reply to each request; defaults to the demo reply echoing the last user message. */
  reply?: (request: RecordedRequest) => Reply;
  /** Decides what each `GET /v1/models` answers; defaults to listing `demo`. */
  models?: () => ModelsReply;
  host?: string;
  port?: number;
}

export interface FakeUpstream {
  /** Base URL for the openai SDK, ending in `/v1`. */
  readonly baseURL: string;
  readonly requests: RecordedRequest[];
  /** The headers of each `GET /v1/models` received, in order. */
  readonly listings: IncomingMessage["headers"][];
  /** Request index → how its response ended: `finished` when fully written, `closed` when cut early. */
  readonly outcomes: Map<number, "finished" | "closed">;
  /** Resolves when the response to request `index` has ended either way. */
  ended(index: number): Promise<"finished" | "closed">;
  /** Resolves when request `index` has arrived. */
  received(index: number): Promise<RecordedRequest>;
  /** Resolves the first time the response to request `index` could not be written (the reader is full). */
  blocked(index: number): Promise<void>;
  /**
   * Bytes of the response body to request `index` handed to its socket so far. The server honours
   * backpressure, so this runs at most one write (plus Node's 16 KiB buffer) ahead of what the
   * kernel took: a reader that stops makes it stop growing once every buffer between is full.
   */
  bytesWritten(index: number): number;
  close(): Promise<void>;
}

/**
 * The demo's answer: the fixed reply, word by word. Asked with `reasoning_effort`, it "thinks" aloud
 * first; offered tools, it calls the first one (string arguments filled with what the user said);
 * given a tool's result, it repeats it. So every event of docs/api.md can be tried on `npm start`.
 */
export function demoReply(request: RecordedRequest): Reply {
  const messages = request.body.messages ?? [];
  const last = [...messages].reverse().find((m) => m.role === "user");
  const said = textOf(last?.content).trim().slice(0, 200);
  const words = (text: string) => text.split(/(?<= )/);
  const deltas: WireDelta[] = request.body.reasoning_effort
    ? words("The demo upstream does not think, but this is how a model's reasoning streams, before its answer.").map((w) => wire.reasoning(w))
    : [];
  const tool = (request.body.tools as DemoTool[] | undefined)?.[0]?.function;
  const result = messages.at(-1);
  if (result?.role === "tool") {
    return { deltas, tokens: words(`The tool answered: ${textOf(result.content).slice(0, 200)}`), tokenDelayMs: 40 };
  }
  if (tool?.name && request.body.tool_choice !== "none") {
    const properties = tool.parameters?.properties ?? {};
    const args = JSON.stringify(
      Object.fromEntries(Object.entries(properties).flatMap(([key, schema]) => (schema?.type === "string" ? [[key, said.slice(0, 60)]] : []))),
    );
    const pieces = args.match(/.{1,8}/g) ?? [];
    deltas.push(wire.toolCall(0, "call_demo", tool.name), ...pieces.map((piece) => wire.toolArgs(0, piece)));
    return { deltas, tokens: [], tokenDelayMs: 40, finishReason: "tool_calls" };
  }
  const text =
    `This is the demo upstream of chat-gateway. You said: "${said}". ` +
    "Set OPENAI_BASE_URL and OPENAI_API_KEY to talk to a real model; until then every reply is this one, " +
    "streamed word by word so you can watch it arrive.";
  return { deltas, tokens: words(text), tokenDelayMs: 40 };
}

interface DemoTool {
  function?: { name?: string; parameters?: { properties?: Record<string, { type?: string } | undefined> } };
}

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const decide = options.reply ?? demoReply;
  const requests: RecordedRequest[] = [];
  const listings: IncomingMessage["headers"][] = [];
  const outcomes = new Map<number, "finished" | "closed">();
  const written = new Map<number, number>();
  const waiters = new Map<number, ((o: "finished" | "closed") => void)[]>();
  const arrivals = new Map<number, ((r: RecordedRequest) => void)[]>();
  const blockages = new Map<number, { promise: Promise<void>; resolve: () => void }>();
  const blockage = (index: number) => {
    let entry = blockages.get(index);
    if (!entry) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      entry = { promise, resolve };
      blockages.set(index, entry);
    }
    return entry;
  };

  const settle = (index: number, outcome: "finished" | "closed") => {
    if (outcomes.has(index)) return;
    outcomes.set(index, outcome);
    for (const w of waiters.get(index) ?? []) w(outcome);
    waiters.delete(index);
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 60_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET" && req.url?.split("?")[0]?.endsWith("/models")) {
      listings.push(req.headers);
      await listModels(res, options.models?.() ?? {});
      return;
    }
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      sendError(res, 404, `no route for ${req.method} ${req.url}`);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    let body: ChatCompletionBody;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ChatCompletionBody;
    } catch {
      sendError(res, 400, "request body is not JSON");
      return;
    }
    const recorded: RecordedRequest = { index: requests.length, headers: req.headers, body };
    requests.push(recorded);
    for (const w of arrivals.get(recorded.index) ?? []) w(recorded);
    arrivals.delete(recorded.index);
    res.on("close", () => settle(recorded.index, res.writableFinished ? "finished" : "closed"));

    const reply = decide(recorded);
    if (reply.headersDelayMs) await sleep(reply.headersDelayMs);
    await reply.holdHeaders;
    if (res.destroyed) return;
    if (reply.rejectStreamOptions && body.stream_options !== undefined) {
      sendError(res, 400, "Unrecognized request argument supplied: stream_options");
      return;
    }
    if (reply.status !== undefined) {
      sendError(res, reply.status, reply.errorMessage ?? `fake upstream error ${reply.status}`, reply.headers);
      return;
    }
    await stream(res, body, reply, {
      onWrite: (bytes) => written.set(recorded.index, (written.get(recorded.index) ?? 0) + bytes),
      onBlocked: () => blockage(recorded.index).resolve(),
    });
  }

  async function stream(
    res: ServerResponse,
    body: ChatCompletionBody,
    reply: Reply,
    { onWrite, onBlocked }: { onWrite: (bytes: number) => void; onBlocked: () => void },
  ): Promise<void> {
    const model = body.model ?? "demo";
    const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices, ...extra })}\n\n`;
    // Honours TCP backpressure, so a slow gateway slows this server down like a real one.
    const write = (data: string | Buffer): Promise<void> | undefined => {
      onWrite(Buffer.byteLength(data));
      if (res.write(data)) return undefined;
      onBlocked();
      return drainedOrClosed(res);
    };

    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...reply.headers });
    res.flushHeaders();
    if (reply.sse !== undefined) {
      await replay(res, reply.sse, reply.writeBytes, write);
      return;
    }
    if (reply.roleChunk !== false) await write(chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]));

    const fill = async () => {
      if (!reply.fillers) return;
      const { kind, everyMs, forMs } = reply.fillers;
      const until = performance.now() + forMs;
      while (performance.now() < until) {
        await sleep(everyMs);
        if (res.destroyed) return;
        await write(filler(kind, chunk));
      }
    };

    const tokens = reply.tokens ?? ["Hello", " world", "!"];
    const steps: WireDelta[] = [...(reply.deltas ?? []), ...tokens.map((token) => wire.content(token))];
    for (let i = 0; i < steps.length; i++) {
      if (i === (reply.fillers?.before ?? 0)) await fill();
      if (res.destroyed) return;
      const delay = i === 0 ? reply.firstTokenDelayMs : reply.tokenDelayMs;
      if (delay) await sleep(delay);
      await reply.gate?.(i);
      if (res.destroyed) return;
      await write(chunk([{ index: 0, delta: steps[i], finish_reason: null }]));
    }

    if ((reply.fillers?.before ?? 0) >= steps.length) await fill();
    await reply.gate?.(steps.length);
    if (res.destroyed) return;
    switch (reply.end ?? "done") {
      case "cut":
        res.destroy();
        return;
      case "error-event":
        await write(`data: ${JSON.stringify(reply.errorEvent ?? { error: { message: "the model crashed", type: "server_error" } })}\n\n`);
        res.end();
        return;
      case "no-choices":
        await write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model })}\n\n`);
        res.end();
        return;
      case "malformed":
        await write("data: {this is not json\n\n");
        res.end();
        return;
      case "quiet":
        res.end();
        return;
      case "done":
        break;
    }
    await write(chunk([{ index: 0, delta: {}, finish_reason: reply.finishReason ?? "stop" }]));
    if (body.stream_options?.include_usage && reply.usage !== false) {
      const promptChars = (body.messages ?? []).reduce((n, m) => n + textOf(m.content).length, 0);
      const usage = {
        prompt_tokens: Math.ceil(promptChars / 4),
        completion_tokens: steps.length,
        total_tokens: Math.ceil(promptChars / 4) + steps.length,
        ...reply.usageDetails,
      };
      await write(chunk([], { usage }));
    }
    const done = "data: [DONE]\n\n";
    onWrite(Buffer.byteLength(done));
    res.end(done);
  }

  async function listModels(res: ServerResponse, reply: ModelsReply): Promise<void> {
    await reply.gate;
    if (res.destroyed) return;
    if (reply.status !== undefined) {
      sendError(res, reply.status, reply.errorMessage ?? `fake upstream error ${reply.status}`);
      return;
    }
    if (reply.body !== undefined) {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(reply.body);
      return;
    }
    const created = Math.floor(Date.now() / 1000);
    const data = (reply.ids ?? ["demo"]).map((id) => ({ id, object: "model", created, owned_by: reply.ownedBy ?? "chat-gateway-demo" }));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "list", data }));
  }

  server.listen(options.port ?? 0, options.host ?? "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    listings,
    outcomes,
    ended(index) {
      const known = outcomes.get(index);
      if (known) return Promise.resolve(known);
      return new Promise((resolve) => waiters.set(index, [...(waiters.get(index) ?? []), resolve]));
    },
    blocked(index) {
      return blockage(index).promise;
    },
    bytesWritten(index) {
      return written.get(index) ?? 0;
    },
    received(index) {
      const known = requests[index];
      if (known) return Promise.resolve(known);
      return new Promise((resolve) => arrivals.set(index, [...(arrivals.get(index) ?? []), resolve]));
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close").catch(() => undefined);
    },
  };
}

function filler(kind: FillerKind, chunk: (choices: unknown[], extra?: Record<string, unknown>) => string): string {
  switch (kind) {
    case "reasoning":
      return chunk([{ index: 0, delta: { content: null, reasoning_content: "Let me think. " }, finish_reason: null }]);
    case "role":
      return chunk([{ index: 0, delta: { role: "assistant" }, finish_reason: null }]);
    case "empty":
      return chunk([{ index: 0, delta: {}, finish_reason: null }]);
    case "tool-call":
      return chunk([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"q' } }] }, finish_reason: null }]);
    case "usage":
      return chunk([], { usage: { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 } });
  }
}

/** Writes a recorded SSE body `size` bytes at a time, each write in a turn of the event loop of its own. */
async function replay(res: ServerResponse, body: string, size: number | undefined, write: (data: string | Buffer) => Promise<void> | undefined): Promise<void> {
  const bytes = Buffer.from(body, "utf8");
  const step = size && size > 0 ? size : bytes.length;
  for (let at = 0; at < bytes.length; at += step) {
    if (res.destroyed) return;
    await write(bytes.subarray(at, at + step));
    if (step < bytes.length) await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}

/** The text of a message's content: the string, or its text parts joined. */
function textOf(content: string | { type: string; text?: string }[] | null | undefined): string {
  if (typeof content === "string") return content;
  return (content ?? []).map((part) => (part.type === "text" ? (part.text ?? "") : "")).join("");
}

function sendError(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", code: null } });
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(body);
}

/** Resolves at the response's next 'drain', or when it closes: a writer honouring backpressure. */
export function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}
