// The bench's fake model: an OpenAI-compatible `POST /v1/chat/completions` answering in the real
// streaming wire format (role chunk, content chunks, finish chunk, usage chunk when asked, `[DONE]`),
// built to cost as little as possible so the paths under test are what is measured. Chunks are
// pre-rendered per reply; with no delay between tokens they go out in large writes that honour the
// socket's backpressure, as a fast real server's would.
//
// The reply's shape comes from the last user message (`bench tokens=N size=S first=MS delay=MS`,
// see tokens.ts), so one process serves every scenario. Run as a process:
//   tsx bench/upstream.ts   → prints {"port": N} on stdout, serves until SIGTERM.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";
import { pathToFileURL } from "node:url";
import { token, shapeFromPrompt, type ReplyShape } from "./tokens.js";
import { drainedOrClosed } from "../src/demo/wire.js";

const DEFAULT_SHAPE: ReplyShape = { tokens: 16, size: 4, firstMs: 0, delayMs: 0 };
/** Bytes gathered before a write when tokens are not delayed. */
const WRITE_BYTES = 16 * 1024;

interface Body {
  model?: string;
  messages?: { role: string; content: string }[];
  stream_options?: { include_usage?: boolean };
}

/** One response as the bench upstream saw it: `GET /bench/streams` lists them all, in arrival order. */
export interface StreamRecord {
  /** Bytes of the body handed to the socket so far. */
  bytes: number;
  /** Waiting for the socket to drain: the reader (or something between) is full. */
  blocked: boolean;
  /** Every byte of the response was handed to the kernel. */
  finished: boolean;
  /** The connection's end of the response: finished, or cut by the reader. */
  closed: boolean;
}

export async function startBenchUpstream(port = 0): Promise<{ port: number; close(): Promise<void> }> {
  let seq = 0;
  const streams: StreamRecord[] = [];
  const server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === "GET" && req.url === "/bench/streams") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(streams));
      return;
    }
    if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error", code: null } }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Body;
    const last = body.messages?.findLast((m) => m.role === "user")?.content ?? "";
    const shape = shapeFromPrompt(last, DEFAULT_SHAPE);

    const head = `data: {"id":"chatcmpl-b${(seq++).toString(36)}","object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${JSON.stringify(body.model ?? "bench")},"system_fingerprint":null,"choices":[`;
    const content = (text: string) =>
      `${head}{"index":0,"delta":{"content":"${text}"},"logprobs":null,"finish_reason":null}]}\n\n`;
    const tail =
      `${head}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n` +
      (body.stream_options?.include_usage
        ? `${head}],"usage":{"prompt_tokens":${Math.ceil(last.length / 4)},"completion_tokens":${shape.tokens},"total_tokens":${Math.ceil(last.length / 4) + shape.tokens}}}\n\n`
        : "") +
      "data: [DONE]\n\n";

    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
    const record: StreamRecord = { bytes: 0, blocked: false, finished: false, closed: false };
    streams.push(record);
    res.on("finish", () => (record.finished = true));
    res.on("close", () => (record.closed = true));
    let pending = `${head}{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n`;
    const flush = async (): Promise<boolean> => {
      record.bytes += pending.length; // the text is ASCII: characters are bytes
      const ok = res.write(pending);
      pending = "";
      if (!ok && !res.destroyed) {
        record.blocked = true;
        await drainedOrClosed(res);
        record.blocked = false;
      }
      return !res.destroyed;
    };
    for (let i = 0; i < shape.tokens; i++) {
      const delay = i === 0 ? shape.firstMs : shape.delayMs;
      if (delay > 0) {
        if (pending && !(await flush())) return;
        await new Promise((resolve) => setTimeout(resolve, delay));
        if (res.destroyed) return;
      }
      pending += content(token(i, shape.size));
      if ((delay > 0 || pending.length >= WRITE_BYTES) && !(await flush())) return;
    }
    record.bytes += pending.length + tail.length;
    res.end(pending + tail);
  }

  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const upstream = await startBenchUpstream(Number(process.env.PORT ?? 0));
  process.stdout.write(`${JSON.stringify({ port: upstream.port })}\n`);
  process.on("SIGTERM", () => void upstream.close().then(() => process.exit(0)));
}
