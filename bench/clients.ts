// One client per path, all with the same shape: send one prompt, read the reply's text as it
// streams, and time the first token and the end. Connections are pooled and kept alive on every path.
import { Agent, request as httpRequest } from "node:http";
import OpenAI from "openai";
import { credentials, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import {
  ChatRequest,
  ChatServiceClient,
  ConversationServiceClient,
  CreateConversationRequest,
  type ChatResponse,
} from "../src/gen/chat/v1/chat.js";

export type PathName =
  | "raw"
  | "direct"
  | "grpc"
  | "grpc-conversation"
  | "grpc-resumable"
  | "http"
  | "openai"
  | "responses"
  | "reference";
export const PATHS: readonly PathName[] = [
  "raw",
  "direct",
  "grpc",
  "grpc-conversation",
  "grpc-resumable",
  "http",
  "openai",
  "responses",
  "reference",
];
/**
 * A run's paths unless --paths names them: grpc-conversation only when asked for (its database grows
 * with every request; the RSS section would create a conversation per open stream).
 */
export const DEFAULT_PATHS: readonly PathName[] = PATHS.filter((p) => p !== "grpc-conversation");

export interface Reply {
  text: string;
  /** From the call to the first non-empty delta, and to the end of the stream (ms). */
  ttftMs: number | undefined;
  totalMs: number;
  /** The stream ended normally (not cancelled, no error). */
  complete: boolean;
  error?: string;
}

export interface ChatOptions {
  signal?: AbortSignal;
  /** Called when the first non-empty delta arrives. */
  onFirstToken?: () => void;
  /** Called with performance.now() as each non-empty delta arrives (inter-token gaps). */
  onDelta?: (at: number) => void;
}

export interface PathClient {
  readonly name: PathName;
  /** Streams one reply. Aborting `signal` cancels it; the reply then says how far it got. */
  chat(prompt: string, options?: ChatOptions): Promise<Reply>;
  close(): void;
}

/**
 * The gateway's Responses API (`POST /v1/responses` through Envoy), read as `raw` reads the
 * upstream: events split by string search, each `response.output_text.delta`'s `"delta":"..."`
 * taken without parsing; `response.completed` ends the reply.
 */
export function responsesClient(envoyPort: number): PathClient {
  const agent = pooledAgent();
  const TEXT_DELTA = '"type":"response.output_text.delta"';
  const DELTA = '"delta":"';
  return {
    name: "responses",
    chat(prompt, options = {}) {
      const body = JSON.stringify({ model: "bench-model", input: prompt, stream: true });
      let buffered = "";
      let completed = false;
      const target = { port: envoyPort, path: "/v1/responses", headers: { authorization: "Bearer sk-bench" } };
      return postForReply(agent, target, body, options, {
        read(chunk, delta) {
          buffered += chunk;
          let start = 0;
          let end: number;
          while ((end = buffered.indexOf("\n\n", start)) >= 0) {
            const event = buffered.slice(start, end);
            if (event.includes(TEXT_DELTA)) {
              const from = event.indexOf(DELTA) + DELTA.length;
              delta(event.slice(from, event.indexOf('"', from)));
            } else if (event.includes('"type":"response.completed"')) completed = true;
            start = end + 2;
          }
          buffered = buffered.slice(start);
        },
        ended: () => (completed ? undefined : "ended without response.completed"),
      });
    },
    close() {
      agent.destroy();
    },
  };
}

/**
 * 0: a plain node:http reader of the upstream, no SDK: the limit of what any reader of the same
 * bytes can do. It splits the SSE events and takes each chunk's `"content":"..."` by string search
 * (the bench upstream's tokens need no JSON escapes), so it costs far less per token than parsing.
 */
export function rawClient(upstreamPort: number, name: "raw" | "openai" = "raw"): PathClient {
  const agent = pooledAgent();
  const CONTENT = '"content":"';
  return {
    name,
    chat(prompt, options = {}) {
      const body = JSON.stringify({
        model: "bench-model",
        messages: [{ role: "user", content: prompt }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let buffered = "";
      let sawDone = false;
      const target = {
        port: upstreamPort,
        path: "/v1/chat/completions",
        headers: { authorization: "Bearer sk-bench" },
      };
      return postForReply(agent, target, body, options, {
        read(chunk, delta) {
          buffered += chunk;
          let start = 0;
          let end: number;
          while ((end = buffered.indexOf("\n\n", start)) >= 0) {
            const at = buffered.indexOf(CONTENT, start);
            if (at >= 0 && at < end) {
              const from = at + CONTENT.length;
              delta(buffered.slice(from, buffered.indexOf('"', from)));
            } else if (buffered.startsWith("data: [DONE]", start)) sawDone = true;
            start = end + 2;
          }
          buffered = buffered.slice(start);
        },
        ended: () => (sawDone ? undefined : "ended without [DONE]"),
      });
    },
    close() {
      agent.destroy();
    },
  };
}

/** 1: the openai SDK streaming straight from the upstream: the limit every other path is held to. */
export function directClient(upstreamPort: number): PathClient {
  const client = new OpenAI({
    baseURL: `http://127.0.0.1:${upstreamPort}/v1`,
    apiKey: "sk-bench",
    maxRetries: 0,
    logLevel: "off",
  });
  return {
    name: "direct",
    async chat(prompt, { signal, onFirstToken, onDelta } = {}) {
      const started = performance.now();
      let text = "";
      let ttftMs: number | undefined;
      try {
        const stream = await client.chat.completions.create(
          {
            model: "bench-model",
            messages: [{ role: "user", content: prompt }],
            stream: true,
            stream_options: { include_usage: true },
          },
          signal ? { signal } : {},
        );
        for await (const chunk of stream) {
          const delta = chunk.choices[0]?.delta?.content;
          if (delta) {
            if (ttftMs === undefined) {
              ttftMs = performance.now() - started;
              onFirstToken?.();
            }
            onDelta?.(performance.now());
            text += delta;
          }
        }
        return { text, ttftMs, totalMs: performance.now() - started, complete: !signal?.aborted };
      } catch (error: unknown) {
        return {
          text,
          ttftMs,
          totalMs: performance.now() - started,
          complete: false,
          ...(!signal?.aborted && { error: String(error) }),
        };
      }
    },
    close() {},
  };
}

/**
 * 2: a grpc-js client → the service. Calls are spread over a few channels (HTTP/2 connections),
 * each with a 1 MiB receive window: grpc-js's default (64 KiB per connection, shared by all its
 * streams) lets only a few hundred bytes per stream be in flight at 1,000 streams, and the
 * service then waits on the client's WINDOW_UPDATEs rather than on anything of its own.
 */
export function grpcClient(
  servicePort: number,
  channels = 4,
  flowControlWindow = 1 << 20,
  /** `conversations`: each request on a stored conversation; `resumable`: each asks for `resumable` (its events kept, ResumeChat possible). */
  options: { conversations?: boolean; resumable?: boolean } = {},
): PathClient {
  const conversations = options.conversations ? conversationPool(servicePort) : undefined;
  const resumable = options.resumable ?? false;
  const clients = Array.from(
    { length: channels },
    (_, i) =>
      new ChatServiceClient(`127.0.0.1:${servicePort}`, credentials.createInsecure(), {
        // A distinct option per client, so each gets its own connection.
        "grpc.use_local_subchannel_pool": 1,
        "bench.channel": i,
        "grpc-node.flow_control_window": flowControlWindow,
      }),
  );
  let next = 0;
  return {
    name: conversations ? "grpc-conversation" : resumable ? "grpc-resumable" : "grpc",
    async chat(prompt, { signal, onFirstToken, onDelta } = {}) {
      // Taken before the clock starts: creating a conversation is not part of the request's time.
      const conversation = await conversations?.take().catch((e: ServiceError) => e);
      if (conversation instanceof Error)
        return { text: "", ttftMs: undefined, totalMs: 0, complete: false, error: `create: ${conversation.message}` };
      const started = performance.now();
      const client = clients[next++ % clients.length]!;
      return new Promise((resolve) => {
        let text = "";
        let ttftMs: number | undefined;
        let finished = false;
        const request = ChatRequest.fromPartial({ text: prompt, conversationId: conversation?.id ?? "", resumable });
        const call: ClientReadableStream<ChatResponse> = client.chat(request);
        // A resumable stream's generation outlives its call (RESUME_GRACE_MS): a client that is done
        // with it cancels it, as the web client and the CLI do, or it would run on into the next
        // section's measurements (10,000 of them did, and the http path after it timed out).
        let streamId: string | undefined;
        const onAbort = () => {
          if (streamId !== undefined) client.cancelChat({ streamId }, () => undefined);
          call.cancel();
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        const done = (complete: boolean, error?: string) => {
          signal?.removeEventListener("abort", onAbort);
          // One cut short may still be ending on the service's side (busy a moment longer): not reused.
          if (conversation && complete) conversations!.giveBack(conversation);
          resolve({
            text,
            ttftMs,
            totalMs: performance.now() - started,
            complete,
            ...(error !== undefined && { error }),
          });
        };
        call.on("data", (r: ChatResponse) => {
          streamId ??= r.streamId;
          if (r.event?.$case === "delta") {
            if (ttftMs === undefined) {
              ttftMs = performance.now() - started;
              onFirstToken?.();
            }
            onDelta?.(performance.now());
            text += r.event.value.text;
          } else if (r.event?.$case === "finish") finished = true;
        });
        call.on("error", (e: ServiceError) => done(false, signal?.aborted ? undefined : `${e.code} ${e.details}`));
        call.on("end", () => done(finished, finished ? undefined : "ended without a finish event"));
      });
    },
    close() {
      for (const c of clients) c.close();
      conversations?.close();
    },
  };
}

/** Requests each bench conversation serves, one after another, before a new one is created. */
const REQUESTS_PER_CONVERSATION = 5;

/**
 * Stored conversations for `grpc-conversation`: each request takes one no other stream is on (the
 * gateway refuses a second stream on a conversation), which then serves REQUESTS_PER_CONVERSATION
 * requests in turn: its stored history grows to 8 turns, all sent ahead of the new one.
 */
function conversationPool(servicePort: number) {
  const client = new ConversationServiceClient(`127.0.0.1:${servicePort}`, credentials.createInsecure());
  const free: { id: string; uses: number }[] = [];
  return {
    take(): Promise<{ id: string; uses: number }> {
      const ready = free.pop();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve, reject) =>
        client.createConversation(CreateConversationRequest.fromPartial({ title: "bench" }), (e, r) =>
          e ? reject(e) : resolve({ id: r!.conversation!.id, uses: 0 }),
        ),
      );
    },
    giveBack(conversation: { id: string; uses: number }): void {
      if (++conversation.uses < REQUESTS_PER_CONVERSATION) free.push(conversation);
    },
    close: () => client.close(),
  };
}

/**
 * 3 and 4: an HTTP/1.1 client posting `{"text": ...}` to `/chat`. Through Envoy the body is SSE
 * (`data: {"delta":{"text":...}}` per message); the reference writes the deltas' bare text, as the
 * article's endpoint does.
 */
export function httpClient(name: "http" | "reference", port: number): PathClient {
  const agent = pooledAgent();
  return {
    name,
    chat(prompt, options = {}) {
      const body = JSON.stringify({ text: prompt });
      const target = { port, path: "/chat", headers: {} };
      if (name === "reference")
        return postForReply(agent, target, body, options, {
          read: (chunk, delta) => delta(chunk),
          ended: () => undefined,
        });
      let buffered = "";
      let finished = false;
      let failure: string | undefined;
      return postForReply(agent, target, body, options, {
        read(chunk, delta) {
          buffered += chunk;
          let end: number;
          while ((end = buffered.indexOf("\n\n")) >= 0) {
            const event = buffered.slice(0, end);
            buffered = buffered.slice(end + 2);
            if (!event.startsWith("data: ")) continue;
            const message = JSON.parse(event.slice(6)) as {
              delta?: { text?: string };
              finish?: unknown;
              error?: { message?: string };
            };
            if (message.delta) delta(message.delta.text ?? "");
            else if (message.finish) finished = true;
            else if (message.error) failure = message.error.message ?? "error event";
          }
        },
        ended: () => failure ?? (finished ? undefined : "ended without a finish event"),
      });
    },
    close() {
      agent.destroy();
    },
  };
}

/**
 * HTTP keep-alive (connections reused), without TCP keepalive probes while a reply is open. With
 * `keepAlive`, Node turns on TCP keepalive on every socket it connects, with `keepAliveMsecs` (1 s
 * by default) as the idle time, and its libuv sends the probes 1 s apart and gives up after 10
 * unanswered (setsockopt TCP_KEEPIDLE 1, TCP_KEEPINTVL 1, TCP_KEEPCNT 10). The RSS section's
 * 10,000 streams sit 15 s between tokens: 10,000 probes a second on loopback, more than the
 * kernel's per-CPU input queue takes in a burst (net.core.netdev_max_backlog, 1,000), so some
 * probes or their ACKs were dropped, and a connection whose ten in a row were ended with
 * `read ETIMEDOUT` (docs/performance.md). No silence in the bench lasts a minute.
 */
function pooledAgent(): Agent {
  return new Agent({ keepAlive: true, keepAliveMsecs: 60_000, maxSockets: Infinity, maxFreeSockets: 20_000 });
}

/** How an HTTP path's body turns into tokens. */
interface BodyReader {
  /** Each piece of the body as it arrives; calls `delta` with each piece of reply text in it. */
  read(chunk: string, delta: (text: string) => void): void;
  /** At the body's end: why the reply did not end as it should, if it did not. */
  ended(): string | undefined;
}

/** POSTs `body` over HTTP/1.1 and reads the streamed reply with `reader`, timing its first token. */
function postForReply(
  agent: Agent,
  target: { port: number; path: string; headers: Record<string, string> },
  body: string,
  { signal, onFirstToken, onDelta }: ChatOptions,
  reader: BodyReader,
): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve) => {
    let text = "";
    let ttftMs: number | undefined;
    let settled = false;
    const done = (complete: boolean, error?: string) => {
      if (settled) return;
      settled = true;
      resolve({
        text,
        ttftMs,
        totalMs: performance.now() - started,
        complete,
        ...(error !== undefined && !signal?.aborted && { error }),
      });
    };
    const delta = (piece: string) => {
      if (!piece) return;
      const now = performance.now();
      if (ttftMs === undefined) {
        ttftMs = now - started;
        onFirstToken?.();
      }
      onDelta?.(now);
      text += piece;
    };
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port: target.port,
        path: target.path,
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...target.headers },
        ...(signal && { signal }),
      },
      (res) => {
        res.setEncoding("utf8");
        if (res.statusCode !== 200) {
          res.resume();
          res.on("end", () => done(false, `HTTP ${res.statusCode}`));
          return;
        }
        res.on("data", (chunk: string) => reader.read(chunk, delta));
        res.on("end", () => {
          const error = reader.ended();
          done(error === undefined, error);
        });
        res.on("error", (e) => done(false, String(e)));
        res.on("close", () => done(false, "connection closed"));
      },
    );
    req.on("error", (e) => done(false, String(e)));
    req.end(body);
  });
}
