// Resumable streams across replicas, with a real redis-server and two service processes sharing
// it (gRPC straight to each): a stream started on one is resumed through the other, whole and in
// order; a cancel asked of the other stops the upstream on the first; SIGKILL of the generating
// replica gives a reader on the other every event it had published, then UNAVAILABLE "the
// generation was lost", never a hang; Redis dying mid-stream ends it UNAVAILABLE; and with Redis down, resumable streams are refused
// (UNAVAILABLE), and so are resumes, while plain ones are served.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse, type ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { startServiceProcess, type ServiceProcess } from "../support/processes.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { grpcClientOf } from "../support/replicas.js";
import { collect, textOf } from "../support/grpc.js";
import { hold } from "../support/gates.js";

const TOKENS = Array.from({ length: 30 }, (_, i) => `${i}:ünï ✓ `);
const HELD_AT = 8;

let redis: RunningRedis;
let upstream: FakeUpstream;
let gates: Map<string, { promise: Promise<void>; release: () => void }>;
const replicas: ServiceProcess[] = [];
const clients: ChatServiceClient[] = [];

async function replica(): Promise<{ process: ServiceProcess; client: ChatServiceClient }> {
  const process = await startServiceProcess({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
    REDIS_URL: redis.url,
    RESUME_LEASE_MS: "600",
    HEARTBEAT_INTERVAL_MS: "200",
  });
  replicas.push(process);
  const client = grpcClientOf(process.port);
  clients.push(client);
  return { process, client };
}

beforeAll(async () => {
  gates = new Map();
  redis = await startRedis();
  upstream = await startFakeUpstream({
    reply: (request) => {
      const prompt = JSON.stringify(request.body.messages);
      const gate = [...gates.entries()].find(([key]) => prompt.includes(key))?.[1];
      return {
        tokens: TOKENS,
        gate: (i) => (i === HELD_AT ? gate?.promise : undefined),
        // Paced, so Redis is seen gone while the reply is still coming.
        ...(prompt.includes("redis-dies") && { tokenDelayMs: 30 }),
      };
    },
  });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
  await upstream?.close();
  await redis?.close();
});

/** A resumable stream held after HELD_AT tokens: its events so far, and the call. */
async function held(client: ChatServiceClient, key: string) {
  gates.set(key, hold());
  const call = client.chat(ChatRequest.fromPartial({ text: key, resumable: true }));
  const responses: ChatResponse[] = [];
  const ended = new Promise<{ code: status; details: string }>((resolve) => {
    call.on("error", (e: ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on("end", () => resolve({ code: status.OK, details: "" }));
  });
  await new Promise<void>((resolve) =>
    call.on("data", (r: ChatResponse) => {
      responses.push(r);
      if (responses.length === HELD_AT) resolve();
    }),
  );
  return { call, responses, ended, streamId: responses[0]!.streamId!, release: () => gates.get(key)!.release() };
}

function resume(client: ChatServiceClient, streamId: string, after: number) {
  return new Promise<{ responses: ChatResponse[]; code: status; details: string }>((resolve) => {
    const call = client.resumeChat({ streamId, after }, new Metadata());
    const responses: ChatResponse[] = [];
    call.on("data", (r: ChatResponse) => responses.push(r));
    call.on("error", (e: ServiceError) => resolve({ responses, code: e.code, details: e.details }));
    call.on("end", () => resolve({ responses, code: status.OK, details: "" }));
  });
}

const content = (responses: ChatResponse[]) => responses.filter((r) => r.event?.$case !== "heartbeat");

describe("resumable streams with Redis, across replicas", () => {
  let a: Awaited<ReturnType<typeof replica>>;
  let b: Awaited<ReturnType<typeof replica>>;
  beforeAll(async () => {
    [a, b] = await Promise.all([replica(), replica()]);
  });

  it("resume through another replica than the generating one: every event once, in order, then the live tail", async () => {
    const stream = await held(a.client, "resume-through-b");
    stream.call.cancel();
    const seen = stream.responses[HELD_AT - 1]!.sequence!;
    const resumed = resume(b.client, stream.streamId, seen);
    await new Promise((resolve) => setTimeout(resolve, 300));
    stream.release();
    const rest = await resumed;
    expect({ code: rest.code, details: rest.details }).toEqual({ code: status.OK, details: "" });
    // In order from the one after the last seen (a delta merged for this reader carries the last
    // position it joins, so positions may skip, never repeat), to the finish.
    const positions = content(rest.responses).map((r) => r.sequence!);
    expect(positions[0]).toBe(seen + 1);
    expect(positions.every((p, i) => i === 0 || p > positions[i - 1]!)).toBe(true);
    expect(content(rest.responses).at(-1)).toMatchObject({ event: { $case: "finish" }, sequence: TOKENS.length + 1 });
    expect(textOf(stream.responses) + textOf(rest.responses)).toBe(TOKENS.join(""));
  });

  it("a cancel asked of another replica stops the upstream on the generating one", async () => {
    const stream = await held(a.client, "cancel-through-b");
    const index = upstream.requests.findIndex((r) => JSON.stringify(r.body.messages).includes("cancel-through-b"));
    await new Promise<void>((resolve, reject) =>
      b.client.cancelChat({ streamId: stream.streamId }, (error) => (error ? reject(error) : resolve())),
    );
    expect(await upstream.ended(index)).toBe("closed");
    expect(await stream.ended).toEqual({ code: status.CANCELLED, details: "cancelled by the caller" });
  });

  it("SIGKILL of the generating replica: every published event, then UNAVAILABLE 'the generation was lost'", async () => {
    const c = await replica();
    const stream = await held(c.client, "killed");
    await c.process.stop("SIGKILL");
    const started = Date.now();
    const rest = await resume(b.client, stream.streamId, 0);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(textOf(rest.responses)).toBe(TOKENS.slice(0, HELD_AT).join(""));
    expect(content(rest.responses).at(-1)).toMatchObject({
      event: { $case: "error", value: { code: status.UNAVAILABLE, status: "UNAVAILABLE" } },
    });
    expect(rest.code).toBe(status.UNAVAILABLE);
    expect(rest.details).toMatch(/^the generation was lost/);
  });

  it("Redis dying mid-stream stops the generation and ends the stream with UNAVAILABLE, never a hang", async () => {
    const stream = await held(a.client, "redis-dies");
    await redis.stop();
    try {
      stream.release();
      const ended = await stream.ended;
      expect(ended).toEqual({ code: status.UNAVAILABLE, details: "resumable stream store failed mid-stream" });
      expect(stream.responses.length).toBeLessThan(TOKENS.length);
    } finally {
      await redis.restart();
    }
  });

  it("with Redis down, refuses resumable streams (UNAVAILABLE) and serves plain ones", async () => {
    await redis.stop();
    try {
      const refused = await collect(a.client, { text: "redis down", resumable: true });
      expect({ code: refused.code, details: refused.details }).toEqual({
        code: status.UNAVAILABLE,
        details: "resumable stream store unavailable; retry, or start the stream without resumable",
      });
      // A resume is answered too, never left hanging.
      const resumed = await resume(a.client, "6f0c8f0e-3c1e-4f5e-9a57-0b8e1d2f4c11", 0);
      expect(resumed).toEqual({
        responses: [],
        code: status.UNAVAILABLE,
        details: "resumable stream store unavailable; retry",
      });
      const plain = await collect(a.client, { text: "redis down, plain" });
      expect(plain.code).toBe(status.OK);
      expect(plain.text).toBe(TOKENS.join(""));
    } finally {
      await redis.restart();
    }
  });
});
