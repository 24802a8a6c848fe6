// Backpressure, end to end with the real processes: a client that stops reading must, after a
// bounded number of bytes, stop the upstream itself: its writes block and the reply waits in the
// upstream. Measured with the bytes the fake upstream managed to write, against the bound stated
// in docs/streaming.md (the sum of every window and buffer on the path), on every path: HTTP/1.1,
// native gRPC and gRPC-Web (over HTTP/2 and HTTP/1.1) through Envoy, and gRPC to the service; then,
// once the client reads again, every token arrives, in order. And Envoy's RSS with several stalled
// gRPC clients, and after they have gone.
import { readFileSync } from "node:fs";
import { connect as connectHttp2 } from "node:http2";
import { request as requestHttp1 } from "node:http";
import type { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials } from "@grpc/grpc-js";
import { ChatRequest, ChatResponse, ChatServiceClient } from "../../src/client.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { MAX_MERGED_CHARS } from "../../src/chat/service.js";
import { tcpQueues, type TcpQueues } from "../../src/dev/tcp-queues.js";
import { startStack, type Stack } from "../support/processes.js";
import { allEvents, post } from "../support/http.js";
import { textOf } from "../support/grpc.js";

const KiB = 1024;
const TOKEN_CHARS = 200;
// 40,000 tokens: 8 MB of text, 15.2 MB as the upstream writes it; far more than the path may hold.
const TOKENS = Array.from({ length: 40_000 }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(TOKEN_CHARS - 6)}`);
const REPLY = TOKENS.join("");
/**
 * The upstream's bytes per character of delta text: each 200-character token goes out as an SSE
 * event of JSON of ~380 bytes. Text-side buffers are converted with it; checked after each reply.
 */
const UPSTREAM_BYTES_PER_CHAR = 2;

// The bound, as docs/streaming.md derives it: what each buffer on the path may hold of one stream. The
// kernel's socket queues are read from /proc at the plateau; everything else is a constant.

/** The service's read-ahead, in the upstream's bytes: in Node's HTTP client, the socket's and the
 * response stream's 16 KiB high-water marks, each crossed by at most one 64 KiB socket read
 * (READ_AHEAD_BYTES, src/providers/openai/http-transport.ts); and the read taken before the service
 * stopped reading (at most 64 KiB, MAX_READ_BYTES there), whose events were merged at once. */
const SERVICE_READ_AHEAD = 2 * (16 * KiB + 64 * KiB) + 64 * KiB;
/** Delta text in the service: grpc-js's queue (16 messages) and the one being written, each at most
 * a merge of MAX_MERGED_CHARS plus one delta, and the merge in progress. */
const SERVICE_TEXT = 18 * (MAX_MERGED_CHARS + TOKEN_CHARS);
/** Envoy: the HTTP/2 stream window toward the service (64 KiB), the downstream connection's buffer
 * (32 KiB), and its socket's send queue: TCP_NOTSENT_LOWAT (16 KiB) plus one 64 KiB segment. */
const ENVOY_TEXT = 64 * KiB + 32 * KiB + 16 * KiB + 64 * KiB;
/** A grpc-js client: its HTTP/2 stream window (65,535 bytes, in flight or unread) and its
 * 16-message read buffer. */
const GRPC_CLIENT_TEXT = 64 * KiB + 16 * (MAX_MERGED_CHARS + TOKEN_CHARS);
/** Envoy, for a client on HTTP/2 (native gRPC, gRPC-Web): the HTTP/2 stream window toward the service
 * (64 KiB) and the downstream stream's send buffer, whose watermark is the listener's
 * initial_stream_window_size (64 KiB), crossed by at most one 16 KiB frame. What Envoy has sent on is
 * in the client's stream window, counted with the client. */
const ENVOY_H2_TEXT = 64 * KiB + 64 * KiB + 16 * KiB;
/** An HTTP/2 client's stream window (Node's and grpc-js's: 65,535 bytes): what is in flight to it,
 * in Envoy's connection buffer, the kernel's queues, or its HTTP/2 layer. */
const H2_CLIENT_WINDOW = 64 * KiB;

/** RSS of a process, in bytes, from /proc. */
const rss = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * KiB;

let upstream: FakeUpstream;
let stack: Stack;
const upstreamPort = () => Number(new URL(upstream.baseURL).port);

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: () => ({ tokens: TOKENS }) });
  stack = await startStack({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-e2e", UPSTREAM_MAX_RETRIES: "0" });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

/**
 * Polls the bytes the upstream wrote for request `index` until they stop growing (the same for 20
 * polls in a row, 2 s: long enough for a busy machine to have moved on if anything could; a reply
 * written to its end stops too); returns them, with what `measure` reads at that point.
 */
async function whenUpstreamStops<T>(index: number, measure: () => T): Promise<{ bytes: number; queues: T }> {
  let bytes = -1;
  for (let same = 0; same < 20; ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = upstream.bytesWritten(index);
    same = now === bytes ? same + 1 : 0;
    bytes = now;
  }
  return { bytes, queues: measure() };
}

/** The upstream's bytes per character of delta text, from the whole reply once it has been read. */
const upstreamBytesPerChar = (index: number) => upstream.bytesWritten(index) / REPLY.length;

/** Bytes waiting in the kernel between the upstream and the service, at both ends of the socket. */
const upstreamKernel = (q: TcpQueues) => q.serverSend + q.serverReceive + q.peerSend + q.peerReceive;

/**
 * A gRPC-Web call to Chat (binary, application/grpc-web+proto) over HTTP/2 or HTTP/1.1, with Node's
 * own clients: the bytes as they arrive, decoded frame by frame. `pause()` stops reading as a browser
 * whose page is busy would: Node stops taking from the socket (HTTP/1.1) or stops granting HTTP/2
 * window once its 16 KiB read buffer is full.
 */
async function grpcWebChat(port: number, version: "1.1" | "2") {
  const body = Buffer.from(ChatRequest.encode(ChatRequest.fromPartial({ text: "a long one" })).finish());
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
  frame.writeUInt32BE(body.length, 1);
  const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  const path = "/chat.v1.ChatService/Chat";
  let stream: Readable;
  let close: () => void;
  if (version === "2") {
    const session = connectHttp2(`http://127.0.0.1:${port}`);
    const req = session.request({ ":method": "POST", ":path": path, ...headers });
    req.end(frame);
    stream = req;
    close = () => session.destroy();
  } else {
    stream = await new Promise<Readable>((resolve, reject) => {
      const req = requestHttp1({ host: "127.0.0.1", port, path, method: "POST", headers }, resolve);
      req.on("error", reject);
      req.end(frame);
    });
    close = () => stream.destroy();
  }
  const responses: ChatResponse[] = [];
  let pending = Buffer.alloc(0);
  let trailers = "";
  stream.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const message = pending.subarray(5, 5 + pending.readUInt32BE(1));
      if (pending[0]! & 0x80) trailers += message.toString();
      else responses.push(ChatResponse.decode(message));
      pending = pending.subarray(5 + message.length);
    }
  });
  const ended = new Promise<void>((resolve, reject) => stream.on("end", resolve).on("error", reject));
  return {
    responses,
    /** Characters of delta text the client has taken in. */
    delivered: () => textOf(responses).length,
    pause: () => stream.pause(),
    /** Reads to the end; resolves with the trailers frame (grpc-status...). */
    async readToEnd() {
      stream.resume();
      await ended;
      return trailers;
    },
    /** Bytes Node holds for it, not yet read: the stream's buffer and, for HTTP/1.1, the socket's. */
    unread: () =>
      stream.readableLength +
      (version === "1.1" ? ((stream as unknown as { socket?: Readable }).socket?.readableLength ?? 0) : 0),
    close,
  };
}

describe("a client that stops reading stops the upstream after a bounded number of bytes", () => {
  // Seconds alone; more on a machine busy with the rest of the suite.
  it("over HTTP through Envoy", { timeout: 90_000 }, async () => {
    const index = upstream.requests.length;
    const response = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ text: "a long one" }));
    response.pause();

    const { bytes, queues } = await whenUpstreamStops(index, () => ({
      upstream: tcpQueues(upstreamPort()),
      client: tcpQueues(stack.envoy.httpPort),
      clientUnread: response.unread(),
    }));
    // The client's own buffers (its socket's receive queue, what Node holds for it) are measured;
    // Envoy's socket send queue is in ENVOY_TEXT, bounded by TCP_NOTSENT_LOWAT.
    const bound =
      upstreamKernel(queues.upstream) +
      SERVICE_READ_AHEAD +
      UPSTREAM_BYTES_PER_CHAR * (SERVICE_TEXT + ENVOY_TEXT + queues.client.peerReceive + queues.clientUnread);
    expect(bytes, JSON.stringify({ bytes, bound, queues })).toBeLessThanOrEqual(bound);

    response.resume();
    const events = await allEvents(response);
    expect(
      events
        .filter((e) => e.delta)
        .map((e) => e.delta!.text)
        .join(""),
    ).toBe(REPLY);
    expect(events.at(-1)?.finish?.finishReason).toBe("stop");
    expect(upstreamBytesPerChar(index)).toBeLessThanOrEqual(UPSTREAM_BYTES_PER_CHAR);
  });

  it("over gRPC to the service", { timeout: 90_000 }, async () => {
    const index = upstream.requests.length;
    const client = new ChatServiceClient(`127.0.0.1:${stack.service.port}`, credentials.createInsecure());
    try {
      const call = client.chat(ChatRequest.fromPartial({ text: "a long one" }));
      const responses: ChatResponse[] = [];
      call.on("data", (r: ChatResponse) => responses.push(r));
      call.pause();

      const { bytes, queues } = await whenUpstreamStops(index, () => ({ upstream: tcpQueues(upstreamPort()) }));
      // The client's HTTP/2 stream window bounds what is in flight to it, in the kernel or not.
      const bound =
        upstreamKernel(queues.upstream) +
        SERVICE_READ_AHEAD +
        UPSTREAM_BYTES_PER_CHAR * (SERVICE_TEXT + GRPC_CLIENT_TEXT);
      expect(bytes, JSON.stringify({ bytes, bound, queues })).toBeLessThanOrEqual(bound);

      const ended = new Promise<void>((resolve, reject) => call.on("end", resolve).on("error", reject));
      call.resume();
      await ended;
      expect(textOf(responses)).toBe(REPLY);
      expect(responses.at(-1)?.event?.$case).toBe("finish");
      expect(upstreamBytesPerChar(index)).toBeLessThanOrEqual(UPSTREAM_BYTES_PER_CHAR);
    } finally {
      client.close();
    }
  });
  it("over native gRPC through Envoy", { timeout: 90_000 }, async () => {
    const index = upstream.requests.length;
    const client = new ChatServiceClient(`127.0.0.1:${stack.envoy.httpPort}`, credentials.createInsecure());
    try {
      const call = client.chat(ChatRequest.fromPartial({ text: "a long one" }));
      const responses: ChatResponse[] = [];
      call.on("data", (r: ChatResponse) => responses.push(r));
      call.pause();

      const { bytes, queues } = await whenUpstreamStops(index, () => ({
        upstream: tcpQueues(upstreamPort()),
        delivered: textOf(responses).length,
      }));
      // Before Envoy's listener had its own stream window, Envoy's 16 MiB default was also the
      // buffer it filled for each downstream stream: the whole 15.2 MB reply left the upstream.
      const bound =
        upstreamKernel(queues.upstream) +
        SERVICE_READ_AHEAD +
        UPSTREAM_BYTES_PER_CHAR * (SERVICE_TEXT + ENVOY_H2_TEXT + GRPC_CLIENT_TEXT + queues.delivered);
      expect(bytes, JSON.stringify({ bytes, bound, queues })).toBeLessThanOrEqual(bound);

      const ended = new Promise<void>((resolve, reject) => call.on("end", resolve).on("error", reject));
      call.resume();
      await ended;
      expect(textOf(responses)).toBe(REPLY);
      expect(responses.at(-1)?.event?.$case).toBe("finish");
      expect(upstreamBytesPerChar(index)).toBeLessThanOrEqual(UPSTREAM_BYTES_PER_CHAR);
    } finally {
      client.close();
    }
  });

  for (const version of ["2", "1.1"] as const) {
    it(`over gRPC-Web through Envoy, HTTP/${version}`, { timeout: 90_000 }, async () => {
      const index = upstream.requests.length;
      const call = await grpcWebChat(stack.envoy.httpPort, version);
      try {
        call.pause();
        const { bytes, queues } = await whenUpstreamStops(index, () => ({
          upstream: tcpQueues(upstreamPort()),
          client: tcpQueues(stack.envoy.httpPort),
          delivered: call.delivered(),
          unread: call.unread(),
        }));
        // HTTP/2: Envoy's stream buffers and the client's stream window, which covers everything in
        // flight to it; HTTP/1.1: as for HTTP, with the client's socket queue measured.
        const path = version === "2" ? ENVOY_H2_TEXT + H2_CLIENT_WINDOW : ENVOY_TEXT + queues.client.peerReceive;
        const bound =
          upstreamKernel(queues.upstream) +
          SERVICE_READ_AHEAD +
          UPSTREAM_BYTES_PER_CHAR * (SERVICE_TEXT + path + queues.unread + queues.delivered);
        expect(bytes, JSON.stringify({ bytes, bound, queues })).toBeLessThanOrEqual(bound);

        expect(await call.readToEnd()).toContain("grpc-status:0");
        expect(textOf(call.responses)).toBe(REPLY);
        expect(call.responses.at(-1)?.event?.$case).toBe("finish");
        expect(upstreamBytesPerChar(index)).toBeLessThanOrEqual(UPSTREAM_BYTES_PER_CHAR);
      } finally {
        call.close();
      }
    });
  }
});

describe("Envoy's memory with stalled gRPC clients", () => {
  it("grows by Envoy's per-stream buffers only, and returns when the clients have gone", {
    timeout: 120_000,
  }, async () => {
    const STALLED = 5;
    const envoyPid = stack.envoy.pid;
    const idle = rss(envoyPid);
    const first = upstream.requests.length;
    // Five phones: each its own connection (grpc-js would otherwise share one among its clients).
    const clients = Array.from(
      { length: STALLED },
      () =>
        new ChatServiceClient(`127.0.0.1:${stack.envoy.httpPort}`, credentials.createInsecure(), {
          "grpc.use_local_subchannel_pool": 1,
        }),
    );
    try {
      const calls = clients.map((client) => {
        const call = client.chat(ChatRequest.fromPartial({ text: "a long one" }));
        call.on("data", () => undefined).on("error", () => undefined);
        call.pause();
        return call;
      });
      for (let i = 0; i < STALLED; i++) await upstream.received(first + i);
      // Every stream held back: no upstream's byte count moves for 2 s.
      let sent = "";
      for (let same = 0; same < 20; ) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const now = calls.map((_, i) => upstream.bytesWritten(first + i)).join();
        same = now === sent ? same + 1 : 0;
        sent = now;
      }
      const stalled = rss(envoyPid);
      for (const call of calls) call.cancel();
      for (let i = 0; i < STALLED; i++) await upstream.ended(first + i);
      for (const client of clients) client.close();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const gone = rss(envoyPid);

      // What Envoy may hold of each stream (ENVOY_H2_TEXT, and its connection's 32 KiB buffer), with
      // room for its per-stream state and the allocator's pages: 1 MiB per stream, against the 15 MB
      // of reply each held before its listener's stream window was set.
      const figures = JSON.stringify({ idle, stalled, gone, sent });
      expect(stalled - idle, figures).toBeLessThanOrEqual(STALLED * 1024 * KiB);
      expect(gone - idle, figures).toBeLessThanOrEqual(4 * 1024 * KiB);
    } finally {
      for (const client of clients) client.close();
    }
  });
});
