// Slow readers: many clients ask for long replies and stop reading at once. A gateway with working
// backpressure stops pulling from the upstream after a bounded number of bytes per stream, so the
// upstream's writes block and the gateway's memory stays flat however many such clients there are.
// Measured per path: the upstream's bytes per stream when its writes stopped, how much of that sits
// in the kernel's socket queues between the upstream and the service, and the RSS of the service
// and Envoy idle, with every reader stalled, and after the clients have gone; plus one fresh request
// while they are all stalled, which must still be answered.
import { request as httpRequest, Agent, type ClientRequest } from "node:http";
import { credentials, type ClientReadableStream } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../src/gen/chat/v1/chat.js";
import { tcpQueues } from "../src/dev/tcp-queues.js";
import type { PathClient } from "./clients.js";
import type { StreamRecord } from "./upstream.js";
import { percentile } from "./measure.js";
import { rssKiB } from "./procs.js";
import { promptFor, type ReplyShape } from "./tokens.js";

export interface SlowReadersResult {
  streams: number;
  /** Streams whose response had started when the upstream stopped writing. */
  started: number;
  /** Body bytes each stream's upstream response had written when the writes stopped. */
  upstreamBytesP50: number;
  upstreamBytesMax: number;
  /** Of all those bytes, what the kernel held in the queues of the upstream's connections (both ends). */
  kernelUpstreamBytes: number;
  /** Responses the upstream was blocked on (waiting for its socket to drain) at the reading. */
  blocked: number;
  /** Responses the upstream had written to the end: the path had room for the whole reply. */
  finished: number;
  /** From the first request until nothing moved on the path any more (stallTimeoutMs if never). */
  stallMs: number;
  rssKiB: { before: Record<string, number>; during: Record<string, number>; after: Record<string, number> };
  /** (RSS with every reader stalled − RSS before) / streams, per process. */
  perStreamKiB: Record<string, number>;
  /** One request with a short reply, made while every slow reader is stalled. */
  probe: { ok: boolean; ms: number; error?: string };
}

/** A client that starts one stream and then reads nothing; `close` ends it. */
interface SlowClient {
  started: Promise<void>;
  close(): void;
}

function slowHttp(port: number, agent: Agent, prompt: string): SlowClient {
  let req: ClientRequest | undefined;
  const started = new Promise<void>((resolve) => {
    const body = JSON.stringify({ text: prompt });
    req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        path: "/chat",
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        // Read nothing more than Node's own buffers take: a client that fell asleep.
        res.pause();
        resolve();
      },
    );
    req.on("error", () => resolve());
    req.end(body);
  });
  return { started, close: () => req?.destroy() };
}

function slowGrpc(port: number, index: number, prompt: string): SlowClient {
  // One connection per client, as 1,000 separate callers would have: on a shared connection the
  // first stalled streams would use up the connection's flow-control window for all the others.
  const client = new ChatServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
    "bench.slow": index,
  });
  const call: ClientReadableStream<ChatResponse> = client.chat(ChatRequest.fromPartial({ text: prompt }));
  // A flowing stream, paused: grpc-js stops reading after its 16-message buffer, and HTTP/2 flow
  // control does the rest. (Paused before any 'data' listener, grpc-js was seen to read the whole
  // reply into memory.)
  call.on("data", () => undefined);
  call.pause();
  call.on("error", () => undefined);
  const started = new Promise<void>((resolve) => {
    call.once("metadata", () => resolve());
    call.once("error", () => resolve());
  });
  return {
    started,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

async function timedProbe(probe: PathClient): Promise<SlowReadersResult["probe"]> {
  const probeStarted = performance.now();
  const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const reply = await probe.chat(promptFor({ tokens: 8, size: 4, firstMs: 0, delayMs: 0 }), { signal });
  const error = signal.aborted ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : reply.error;
  return { ok: reply.complete, ms: performance.now() - probeStarted, ...(error !== undefined && { error }) };
}

async function upstreamStreams(upstreamPort: number): Promise<StreamRecord[]> {
  return (await (await fetch(`http://127.0.0.1:${upstreamPort}/bench/streams`)).json()) as StreamRecord[];
}

const PROBE_TIMEOUT_MS = 30_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const rssOf = (pids: Record<string, number>) =>
  Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, rssKiB(pid)]));

/**
 * `streams` clients on `path` each ask for a `shape` reply and read nothing. Waits until the
 * upstream's writes and the service's reads stop (at most `stallTimeoutMs`), reads RSS and the kernel's queues,
 * makes one probe request with `probe`, then closes every client and reads RSS again.
 */
export async function measureSlowReaders(
  path: "grpc" | "http",
  ports: { upstream: number; service: number; envoy?: number },
  streams: number,
  shape: ReplyShape,
  pids: Record<string, number>,
  probe: PathClient,
  stallTimeoutMs = 240_000,
): Promise<SlowReadersResult> {
  const before = rssOf(pids);
  const prompt = promptFor(shape);
  const seen = (await upstreamStreams(ports.upstream)).length;
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const started = performance.now();
  const clients: SlowClient[] = [];
  for (let i = 0; i < streams; i++) {
    clients.push(path === "http" ? slowHttp(ports.envoy!, agent, prompt) : slowGrpc(ports.service, i, prompt));
    // Let the event loop breathe, so 1,000 connections do not all arrive in one burst.
    if (i % 50 === 49) await sleep(10);
  }
  let startedCount = 0;
  for (const c of clients) void c.started.then(() => startedCount++);

  // Everything has stopped once the upstream's writes and every socket queue on the path stay the
  // same for a while: the upstream's writes have stopped (blocked, or the whole reply is in the
  // kernel's buffers), the service reads no more, and nothing moves toward the clients. Until then
  // the gateway is still filling the path's buffers, slowly: a little per stream at each turn.
  let records: StreamRecord[] = [];
  let last = "";
  let stableSince = performance.now();
  const queued = (port: number) => {
    const q = tcpQueues(port);
    return q.serverSend + q.serverReceive + q.peerSend + q.peerReceive;
  };
  while (performance.now() - started < stallTimeoutMs) {
    await sleep(500);
    records = (await upstreamStreams(ports.upstream)).slice(seen);
    const written = records.reduce((sum, r) => sum + r.bytes, 0);
    const now = `${records.length} ${written} ${queued(ports.upstream)} ${queued(path === "http" ? ports.envoy! : ports.service)}`;
    if (now !== last || records.length < streams) {
      last = now;
      stableSince = performance.now();
    } else if (performance.now() - stableSince >= 5_000) break;
  }
  const stallMs = stableSince - started;
  const during = rssOf(pids);
  const kernel = tcpQueues(ports.upstream);

  // Stalled streams must not hold up the others: on a shared HTTP/2 connection their unread bytes
  // count against the connection's window too.
  const probeResult = await timedProbe(probe);

  for (const c of clients) c.close();
  agent.destroy();
  // Gone means the upstream has seen every response end (the service aborts the upstream request
  // when its caller leaves); then give the processes a moment to free what they held.
  const deadline = performance.now() + 30_000;
  while (performance.now() < deadline) {
    const now = (await upstreamStreams(ports.upstream)).slice(seen);
    if (now.every((r) => r.closed)) break;
    await sleep(250);
  }
  await sleep(2_000);
  const after = rssOf(pids);

  const bytes = records.map((r) => r.bytes);
  return {
    streams,
    started: startedCount,
    upstreamBytesP50: percentile(bytes, 50),
    upstreamBytesMax: Math.max(0, ...bytes),
    kernelUpstreamBytes: kernel.serverSend + kernel.serverReceive + kernel.peerSend + kernel.peerReceive,
    blocked: records.filter((r) => r.blocked).length,
    finished: records.filter((r) => r.finished).length,
    stallMs,
    rssKiB: { before, during, after },
    perStreamKiB: Object.fromEntries(
      Object.keys(pids).map((name) => [name, (during[name]! - before[name]!) / streams]),
    ),
    probe: probeResult,
  };
}
