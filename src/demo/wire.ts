// OpenAI's chat-completions wire format, as a server writes it: the request body it reads, the
// streamed SSE chunks (`data: {"object": "chat.completion.chunk", ...}`, then `data: [DONE]`), the
// model list, and the error body; and the HTTP server routing the two calls an OpenAI client makes. The demo upstream (./server.ts) is written with these; so is the
// tests' fake model (test/support/fake-model.ts), which adds the knobs a test needs on top.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";

export interface ChatCompletionBody {
  model?: string;
  /** `content` is a string, a list of content parts, or null beside tool calls. */
  messages?: { role: string; content: string | { type: string; text?: string }[] | null; [key: string]: unknown }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  [key: string]: unknown;
}

/** One chunk's `choices[0].delta`, as a server writes it. */
export type WireDelta = Record<string, unknown>;

/** Deltas in the shapes real servers stream. */
export const deltas = {
  /** The first chunk of most servers. */
  role: (): WireDelta => ({ role: "assistant", content: "" }),
  content: (text: string): WireDelta => ({ content: text }),
  /** `reasoning_content` (DeepSeek, vLLM, QwQ) or `reasoning` (OpenRouter, newer vLLM, Ollama). */
  reasoning: (text: string, field: "reasoning_content" | "reasoning" = "reasoning_content"): WireDelta => ({
    content: null,
    [field]: text,
  }),
  /** A tool call's first piece: its id, name and maybe first arguments. `index` undefined leaves it out (Gemini). */
  toolCall: (index: number | undefined, id: string, name: string, args = ""): WireDelta => ({
    tool_calls: [{ ...(index !== undefined && { index }), id, type: "function", function: { name, arguments: args } }],
  }),
  /** More of a tool call's arguments: no id, no name. */
  toolArgs: (index: number | undefined, args: string): WireDelta => ({
    tool_calls: [{ ...(index !== undefined && { index }), function: { arguments: args } }],
  }),
};

export interface Routes {
  /** `GET .../models` (query ignored). */
  models(req: IncomingMessage, res: ServerResponse): Promise<void> | void;
  /** `POST .../chat/completions`, its JSON body parsed (a body that is not JSON is answered 400). */
  completions(req: IncomingMessage, res: ServerResponse, body: ChatCompletionBody): Promise<void>;
}

export interface Served {
  /** Base URL for the openai SDK, ending in `/v1`. */
  readonly baseURL: string;
  close(): Promise<void>;
}

/** An HTTP server on `host:port` (default 127.0.0.1, any free port) answering the two routes; anything else is a 404. */
export async function serve(
  routes: Routes,
  options: { host?: string | undefined; port?: number | undefined } = {},
): Promise<Served> {
  const server = createServer((req, res) => {
    void handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 60_000;
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET" && req.url?.split("?")[0]?.endsWith("/models")) {
      await routes.models(req, res);
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
    await routes.completions(req, res, body);
  }
  server.listen(options.port ?? 0, options.host ?? "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close").catch(() => undefined);
    },
  };
}

/** The model list of `GET /v1/models`. */
export function sendModels(res: ServerResponse, ids: readonly string[], ownedBy: string): void {
  const created = Math.floor(Date.now() / 1000);
  const data = ids.map((id) => ({ id, object: "model", created, owned_by: ownedBy }));
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ object: "list", data }));
}

/** An OpenAI-style error: the status, and `{"error": {"message", "type", "code"}}`. */
export function sendError(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ error: { message, type: "invalid_request_error", code: null } });
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(body);
}

export interface CompletionStream {
  /** The `data:` event of a chunk of this completion: its id, object, created and model, and `fields`. */
  event(fields: Record<string, unknown>): string;
  /**
   * Writes to the response, honouring TCP backpressure (so a slow reader slows this server down like
   * a real one): undefined when written, or a promise to await when the socket is full.
   */
  write(data: string | Buffer): Promise<void> | undefined;
  delta(delta: WireDelta): Promise<void> | undefined;
  /** The finish chunk, the usage chunk when the client asked for it and `usage` is given, `[DONE]`, the end. */
  finish(
    finishReason: string,
    usage: { completionTokens: number; details?: Record<string, unknown> } | undefined,
  ): Promise<void>;
}

/**
 * Starts a streamed completion answering `body`: the 200 and the SSE headers sent at once. `onWrite`
 * and `onBlocked` see each write's bytes and each write the socket did not take.
 */
export function startCompletion(
  res: ServerResponse,
  body: ChatCompletionBody,
  options: {
    headers?: Record<string, string> | undefined;
    onWrite?: (bytes: number) => void;
    onBlocked?: () => void;
  } = {},
): CompletionStream {
  const model = body.model ?? "demo";
  const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
  const created = Math.floor(Date.now() / 1000);
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...options.headers });
  res.flushHeaders();
  const event = (fields: Record<string, unknown>) =>
    `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, ...fields })}\n\n`;
  const write = (data: string | Buffer): Promise<void> | undefined => {
    options.onWrite?.(Buffer.byteLength(data));
    if (res.write(data)) return undefined;
    options.onBlocked?.();
    return drainedOrClosed(res);
  };
  return {
    event,
    write,
    delta: (delta) => write(event({ choices: [{ index: 0, delta, finish_reason: null }] })),
    async finish(finishReason, usage) {
      await write(event({ choices: [{ index: 0, delta: {}, finish_reason: finishReason }] }));
      if (body.stream_options?.include_usage && usage) {
        const promptTokens = Math.ceil((body.messages ?? []).reduce((n, m) => n + textOf(m.content).length, 0) / 4);
        const { completionTokens: completion } = usage;
        await write(
          event({
            choices: [],
            usage: {
              prompt_tokens: promptTokens,
              completion_tokens: completion,
              total_tokens: promptTokens + completion,
              ...usage.details,
            },
          }),
        );
      }
      const done = "data: [DONE]\n\n";
      options.onWrite?.(Buffer.byteLength(done));
      res.end(done);
    },
  };
}

/** The text of a message's content: the string, or its text parts joined. */
export function textOf(content: string | { type: string; text?: string }[] | null | undefined): string {
  if (typeof content === "string") return content;
  return (content ?? []).map((part) => (part.type === "text" ? (part.text ?? "") : "")).join("");
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
