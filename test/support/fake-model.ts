// The tests' fake model: a small, real OpenAI-compatible chat-completions server, `POST
// /v1/chat/completions` answering in the streaming SSE wire format (role chunk, content chunks,
// finish chunk, usage chunk, `[DONE]`), and `GET /v1/models` listing its models. Besides plain text
// it streams the shapes real servers send (see `wire`): reasoning before the answer, tool calls
// (parallel, interleaved, without `index`, with a reused `index`), refusals, usage with its details;
// or replays a recorded stream as it is, a few bytes at a time. Every knob is a test's (`Reply`,
// `ModelsReply`): gates, delays, fillers, errors, cut or malformed ends, what it received and when
// its socket closed. The tests, the benchmark and the screenshot run it, so the real `openai` SDK
// is exercised end to end.
// `npm start`'s demo upstream is product code of its own (src/demo/server.ts); this shares only the
// wire format with it (src/demo/wire.ts), and does not answer as the demo does.
import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import {
  deltas,
  sendError,
  sendModels,
  serve,
  startCompletion,
  type ChatCompletionBody,
  type CompletionStream,
  type WireDelta,
} from "../../src/demo/wire.js";

export type { ChatCompletionBody, WireDelta };

export interface RecordedRequest {
  readonly index: number;
  readonly headers: IncomingMessage["headers"];
  readonly body: ChatCompletionBody;
  /** The client's port of the connection it came on: one per connection the gateway opened. */
  readonly remotePort: number | undefined;
}

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

/**
 * The deltas real servers stream, for `Reply.deltas`: the wire format's (role, content, reasoning,
 * tool calls), and the refusal the demo never sends.
 */
export const wire = {
  ...deltas,
  /** Structured outputs' refusal (OpenAI). */
  refusal: (text: string): WireDelta => ({ content: null, refusal: text }),
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
  /** Decides the reply to each request; defaults to `{}`: the short reply of `Reply`'s defaults. */
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

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const decide: (request: RecordedRequest) => Reply = options.reply ?? (() => ({}));
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

  async function models(req: IncomingMessage, res: ServerResponse): Promise<void> {
    listings.push(req.headers);
    await listModels(res, options.models?.() ?? {});
  }

  async function completions(req: IncomingMessage, res: ServerResponse, body: ChatCompletionBody): Promise<void> {
    const recorded: RecordedRequest = {
      index: requests.length,
      headers: req.headers,
      body,
      remotePort: req.socket.remotePort,
    };
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
    const completion = startCompletion(res, body, {
      headers: reply.headers,
      onWrite: (bytes) => written.set(recorded.index, (written.get(recorded.index) ?? 0) + bytes),
      onBlocked: () => blockage(recorded.index).resolve(),
    });
    await stream(res, completion, reply);
  }

  async function stream(res: ServerResponse, completion: CompletionStream, reply: Reply): Promise<void> {
    const { event, write } = completion;
    if (reply.sse !== undefined) {
      await replay(res, reply.sse, reply.writeBytes, write);
      return;
    }
    if (reply.roleChunk !== false) await completion.delta(wire.role());

    const fill = async () => {
      if (!reply.fillers) return;
      const { kind, everyMs, forMs } = reply.fillers;
      const until = performance.now() + forMs;
      while (performance.now() < until) {
        await sleep(everyMs);
        if (res.destroyed) return;
        await write(filler(kind, event));
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
      await completion.delta(steps[i]!);
    }

    if ((reply.fillers?.before ?? 0) >= steps.length) await fill();
    await reply.gate?.(steps.length);
    if (res.destroyed) return;
    switch (reply.end ?? "done") {
      case "cut":
        res.destroy();
        return;
      case "error-event":
        await write(
          `data: ${JSON.stringify(reply.errorEvent ?? { error: { message: "the model crashed", type: "server_error" } })}\n\n`,
        );
        res.end();
        return;
      case "no-choices":
        await write(event({}));
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
    await completion.finish(
      reply.finishReason ?? "stop",
      reply.usage === false
        ? undefined
        : { completionTokens: steps.length, ...(reply.usageDetails && { details: reply.usageDetails }) },
    );
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
    // `demo` by default, the name the demo upstream lists: tests check that the configured model
    // is added to what the upstream lists.
    sendModels(res, reply.ids ?? ["demo"], reply.ownedBy ?? "chat-gateway-demo");
  }

  const served = await serve({ models, completions }, options);

  return {
    baseURL: served.baseURL,
    close: () => served.close(),
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
  };
}

function filler(kind: FillerKind, event: (fields: Record<string, unknown>) => string): string {
  const delta = (d: WireDelta) => event({ choices: [{ index: 0, delta: d, finish_reason: null }] });
  switch (kind) {
    case "reasoning":
      return delta({ content: null, reasoning_content: "Let me think. " });
    case "role":
      return delta({ role: "assistant" });
    case "empty":
      return delta({});
    case "tool-call":
      return delta({ tool_calls: [{ index: 0, function: { arguments: '{"q' } }] });
    case "usage":
      return event({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 } });
  }
}

/** Writes a recorded SSE body `size` bytes at a time, each write in a turn of the event loop of its own. */
async function replay(
  res: ServerResponse,
  body: string,
  size: number | undefined,
  write: (data: string | Buffer) => Promise<void> | undefined,
): Promise<void> {
  const bytes = Buffer.from(body, "utf8");
  const step = size && size > 0 ? size : bytes.length;
  for (let at = 0; at < bytes.length; at += step) {
    if (res.destroyed) return;
    await write(bytes.subarray(at, at + step));
    if (step < bytes.length) await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}
