// Resumable streams over HTTP through the real Envoy and service process: a client whose TCP
// connection is cut mid-stream (its own socket closed, and a proxy in between that drops the
// connection) resumes with `GET /chat/streams/{id}` and `Last-Event-ID`, and the text it joins is
// the upstream's, byte for byte; `DELETE` stops the upstream; unknown ids are a 404 in the
// transcoder's JSON error shape.
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { allEvents, errorBody, post, type HttpResponse } from "../support/http.js";
import { hold } from "../support/gates.js";

/** Multi-byte text on purpose: a cut or a repeat inside a character would show. */
const TOKENS = Array.from({ length: 40 }, (_, i) => `${i}:héllo 🌍 «ünïcode» `);
const CUT_AFTER = 10;

interface Positioned {
  delta?: { text: string };
  finish?: { finishReason: string };
  error?: { code: number; status: string; message: string };
  streamId?: string;
  sequence?: number;
}

let upstream: FakeUpstream;
let stack: Stack;
let gates: Map<string, { promise: Promise<void>; release: () => void }>;

beforeAll(async () => {
  gates = new Map();
  upstream = await startFakeUpstream({
    reply: (request) => {
      const prompt = JSON.stringify(request.body.messages);
      const gate = [...gates.entries()].find(([key]) => prompt.includes(key))?.[1];
      return { tokens: TOKENS, gate: (i) => (i === CUT_AFTER ? gate?.promise : undefined) };
    },
  });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

/** Reads SSE events until `count` have arrived; returns them (the response is left open). */
async function firstEvents(response: HttpResponse, count: number): Promise<Positioned[]> {
  const out: Positioned[] = [];
  for await (const event of response.events) {
    out.push(event as Positioned);
    if (out.length === count) break;
  }
  return out;
}

const textOf = (events: Positioned[]) => events.map((e) => e.delta?.text ?? "").join("");

async function startHeld(port: number, key: string): Promise<{ response: HttpResponse; seen: Positioned[] }> {
  gates.set(key, hold());
  const response = await post(port, "/chat", JSON.stringify({ text: key, resumable: true }));
  expect(response.status).toBe(200);
  const seen = await firstEvents(response, CUT_AFTER);
  return { response, seen };
}

/** `via`: the position as `Last-Event-ID` (as EventSource sends it) or as the `after` query parameter. */
async function resumeAfter(
  streamId: string,
  seen: Positioned[],
  via: "header" | "query" = "header",
): Promise<Positioned[]> {
  const last = seen[seen.length - 1]!.sequence!;
  const response = await post(
    stack.envoy.httpPort,
    via === "header" ? `/chat/streams/${streamId}` : `/chat/streams/${streamId}?after=${last}`,
    "",
    via === "header" ? { "last-event-id": String(last) } : {},
    "GET",
  );
  expect(response.status).toBe(200);
  return (await allEvents(response)) as Positioned[];
}

describe("resuming over HTTP", () => {
  it("after the client closed its socket mid-stream, gets the rest, and the text is the upstream's", async () => {
    const { response, seen } = await startHeld(stack.envoy.httpPort, "socket-closed");
    expect(seen.map((e) => e.sequence)).toEqual(seen.map((_, i) => i + 1));
    const streamId = seen[0]!.streamId!;
    expect(streamId).toMatch(/^[0-9a-f-]{36}$/);
    response.destroy();
    gates.get("socket-closed")!.release();
    const rest = await resumeAfter(streamId, seen);
    expect(rest[0]!.sequence).toBe(CUT_AFTER + 1);
    expect(rest.at(-1)!.finish?.finishReason).toBe("stop");
    expect(Buffer.from(textOf(seen) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
  });

  it("after a proxy in between dropped the connection, gets the rest (asked with ?after=), and the text is the upstream's", async () => {
    const proxy = await dropProxy(stack.envoy.httpPort);
    try {
      const { seen } = await startHeld(proxy.port, "proxy-dropped");
      proxy.drop();
      gates.get("proxy-dropped")!.release();
      const rest = await resumeAfter(seen[0]!.streamId!, seen, "query");
      expect(Buffer.from(textOf(seen) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
    } finally {
      proxy.server.close();
    }
  });

  it("DELETE stops the upstream at once, and the open response ends with its CANCELLED error in-band", async () => {
    const { response, seen } = await startHeld(stack.envoy.httpPort, "deleted");
    const streamId = seen[0]!.streamId!;
    const index = upstream.requests.findIndex((r) => JSON.stringify(r.body.messages).includes("deleted"));
    const deleted = await post(stack.envoy.httpPort, `/chat/streams/${streamId}`, "", {}, "DELETE");
    expect({ status: deleted.status, body: await deleted.body() }).toEqual({ status: 200, body: "{}" });
    expect(await upstream.ended(index)).toBe("closed");
    const rest = (await allEvents(response)) as Positioned[];
    expect(rest.at(-1)).toEqual({
      error: { code: 1, status: "CANCELLED", message: "cancelled by the caller" },
      sequence: CUT_AFTER + 1,
    });
  });

  it("answers an unknown stream with 404 in the transcoder's error shape", async () => {
    const response = await post(stack.envoy.httpPort, "/chat/streams/no-such-stream", "", {}, "GET");
    expect(response.status).toBe(404);
    expect(JSON.parse(await response.body())).toEqual(errorBody(5, "stream not found", "NOT_FOUND"));
  });
});

/** A TCP proxy whose `drop()` cuts every connection through it at once, both sides. */
async function dropProxy(target: number): Promise<{ server: Server; port: number; drop(): void }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstreamSocket = createConnection({ host: "127.0.0.1", port: target });
    for (const s of [client, upstreamSocket]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstreamSocket);
    upstreamSocket.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  return {
    server,
    port: typeof address === "object" && address ? address.port : 0,
    drop: () => {
      for (const s of sockets) s.resetAndDestroy();
    },
  };
}
