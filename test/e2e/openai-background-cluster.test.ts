// Background responses across replicas: Redis (the resume log), PostgreSQL (the response rows),
// two replicas and one Envoy in front, with the official `openai` SDK as the client. A background
// stream dropped mid-stream is resumed four times at once through Envoy (least-request spreads them
// over both replicas, so some land on the replica that is not generating it): each gets the rest
// with the same sequence numbers, byte for byte. Background responses cancelled through Envoy stop
// their upstream wherever they run (the cancel crosses replicas through Redis), and are stored
// `cancelled` in the shared database.
import OpenAI from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { hold } from "../support/gates.js";
import { startPostgres, type RunningPostgres } from "../support/postgres.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { promptOf, startReplicas, type Replicas } from "../support/replicas.js";

const TOKENS = Array.from({ length: 24 }, (_, i) => `${i}·ßø🌍 `);
const HELD_AT = 6;
const RESUMES = 4;
const CANCELS = 4;

let redis: RunningRedis;
let postgres: RunningPostgres;
let cluster: Replicas;
let client: OpenAI;
const gate = hold();

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startRedis(), startPostgres()]);
  cluster = await startReplicas(2, {
    reply: (_replica, r) => ({
      tokens: TOKENS,
      gate: (i) =>
        i === HELD_AT && promptOf(r) === "held" ? gate.promise : promptOf(r).startsWith("cancel") ? never : undefined,
    }),
    env: {
      REDIS_URL: redis.url,
      DATABASE_URL: postgres.url,
      CHAT_MODEL: "fake-model",
      UPSTREAM_MAX_RETRIES: "0",
      // A resume's headers go out with its first event or heartbeat, and the stream is held.
      HEARTBEAT_INTERVAL_MS: "300",
    },
  });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${cluster.envoy.httpPort}/v1`, apiKey: "k", maxRetries: 0 });
}, 90_000);
afterAll(async () => {
  await cluster?.stop();
  await Promise.all([redis?.close(), postgres?.close()]);
});

const never = new Promise<void>(() => undefined);
const textOf = (events: ResponseStreamEvent[]) =>
  events.map((e) => (e.type === "response.output_text.delta" ? e.delta : "")).join("");

it("a dropped background stream resumes through either replica, with the same numbers, byte for byte", {
  timeout: 60_000,
}, async () => {
  const stream = await client.responses.create({ model: "fake-model", input: "held", background: true, stream: true });
  const seen: ResponseStreamEvent[] = [];
  for await (const event of stream) {
    seen.push(event);
    if (seen.filter((e) => e.type === "response.output_text.delta").length === HELD_AT) break;
  }
  stream.controller.abort();
  const first = seen[0]!;
  const id = first.type === "response.created" ? first.response.id : "";
  const last = seen.at(-1)!.sequence_number;

  const resumes = await Promise.all(
    Array.from({ length: RESUMES }, () => client.responses.retrieve(id, { stream: true, starting_after: last })),
  );
  gate.release();
  const rests = await Promise.all(
    resumes.map(async (resumed) => {
      const rest: ResponseStreamEvent[] = [];
      for await (const event of resumed) rest.push(event);
      return rest;
    }),
  );
  for (const rest of rests) {
    const all = [...seen, ...rest];
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(Buffer.from(textOf(all))).toEqual(Buffer.from(TOKENS.join("")));
    expect(rest.at(-1)?.type).toBe("response.completed");
  }
  // Every resume wrote the same bytes.
  expect(new Set(rests.map((rest) => JSON.stringify(rest))).size).toBe(1);
  // One replica generated it.
  expect(cluster.replicas.filter((r) => r.upstream.requests.some((q) => promptOf(q) === "held"))).toHaveLength(1);
});

it("cancel through Envoy stops the upstream on whichever replica runs it, and the shared row says cancelled", {
  timeout: 60_000,
}, async () => {
  const created = await Promise.all(
    Array.from({ length: CANCELS }, (_, i) =>
      client.responses.create({ model: "fake-model", input: `cancel ${i}`, background: true }),
    ),
  );
  const requestOf = async (i: number) => {
    for (;;) {
      for (const replica of cluster.replicas) {
        const index = replica.upstream.requests.findIndex((q) => promptOf(q) === `cancel ${i}`);
        if (index >= 0) return { replica, index };
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const running = await Promise.all(created.map((_, i) => requestOf(i)));
  for (const [i, response] of created.entries()) {
    expect((await client.responses.cancel(response.id)).status).toBe("cancelled");
    const { replica, index } = running[i]!;
    expect(await replica.upstream.ended(index)).toBe("closed");
    expect((await client.responses.retrieve(response.id)).status).toBe("cancelled");
  }
});
