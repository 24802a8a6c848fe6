// Backpressure, end to end with the real processes: a client that stops reading must, after a
// bounded number of bytes, stop the upstream itself: its writes block and the reply waits in the
// upstream. Measured with the bytes the fake upstream managed to write, against the bound stated
// in docs/streaming.md (the sum of every window and buffer on the path), over HTTP through Envoy and over
// gRPC to the service; then, once the client reads again, every token arrives, in order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/client.js";
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

/** The service's read-ahead, in the upstream's bytes: Node's 64 KiB high-water marks at the socket,
 * undici's body stream, fetch's stream and the SDK's SSE decoder, each of which may run one 64 KiB
 * chunk over. */
const SERVICE_READ_AHEAD = 8 * 64 * KiB;
/** Delta text in the service: grpc-js's queue (16 messages) and the one being written, each at most
 * a merge of MAX_MERGED_CHARS plus one delta, and the merge in progress. */
const SERVICE_TEXT = 18 * (MAX_MERGED_CHARS + TOKEN_CHARS);
/** Envoy: the HTTP/2 stream window toward the service (64 KiB), the downstream connection's buffer
 * (32 KiB), and its socket's send queue: TCP_NOTSENT_LOWAT (16 KiB) plus one 64 KiB segment. */
const ENVOY_TEXT = 64 * KiB + 32 * KiB + 16 * KiB + 64 * KiB;
/** A grpc-js client: its HTTP/2 stream window (65,535 bytes, in flight or unread) and its
 * 16-message read buffer. */
const GRPC_CLIENT_TEXT = 64 * KiB + 16 * (MAX_MERGED_CHARS + TOKEN_CHARS);

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
});
