// Resuming through the cluster's front door: Redis, three replicas and one Envoy (as `npm run
// start:cluster` runs them). A stream started through Envoy and cut mid-stream is resumed six times
// at once through Envoy; least-request spreads the six over the three replicas, so most land on a
// replica that is not generating it, and every one gets the rest, byte for byte, then the live
// tail. Without Redis (each replica's own memory) the ones landing elsewhere get 404.
import { afterAll, beforeAll, expect, it } from "vitest";
import { hold } from "../support/gates.js";
import { allEvents, post, type HttpResponse } from "../support/http.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { promptOf, startReplicas, type Replicas } from "../support/replicas.js";

const TOKENS = Array.from({ length: 24 }, (_, i) => `${i}·ßø🌍 `);
const HELD_AT = 6;
const RESUMES = 6;

interface Positioned {
  heartbeat?: { waitedMs: number };
  delta?: { text: string };
  finish?: { finishReason: string };
  streamId?: string;
  sequence?: number;
}

let redis: RunningRedis;
let cluster: Replicas;
const gate = hold();

beforeAll(async () => {
  redis = await startRedis();
  cluster = await startReplicas(3, {
    reply: (_replica, r) => ({
      tokens: TOKENS,
      gate: (i) => (promptOf(r) === "held" && i === HELD_AT ? gate.promise : undefined),
    }),
    // Heartbeats soon: a resume's headers go out with its first event, and the stream is held.
    env: { REDIS_URL: redis.url, CHAT_MODEL: "fake-model", UPSTREAM_MAX_RETRIES: "0", HEARTBEAT_INTERVAL_MS: "300" },
  });
}, 60_000);
afterAll(async () => {
  await cluster?.stop();
  await redis?.close();
});

const textOf = (events: Positioned[]) => events.map((e) => e.delta?.text ?? "").join("");

it("a stream cut mid-stream resumes through any replica of the cluster, whole and in order", {
  timeout: 60_000,
}, async () => {
  const response = await post(cluster.envoy.httpPort, "/chat", JSON.stringify({ text: "held", resumable: true }));
  expect(response.status).toBe(200);
  const seen: Positioned[] = [];
  for await (const event of response.events) {
    seen.push(event as Positioned);
    if (seen.length === HELD_AT) break;
  }
  response.destroy();
  const streamId = seen[0]!.streamId!;
  const last = String(seen.at(-1)!.sequence);

  const resumes: Promise<HttpResponse>[] = Array.from({ length: RESUMES }, () =>
    post(cluster.envoy.httpPort, `/chat/streams/${streamId}`, "", { "last-event-id": last }, "GET"),
  );
  const opened = await Promise.all(resumes);
  // Every resume is attached (its headers came back, with a heartbeat) before the generation carries on.
  expect(opened.map((r) => r.status)).toEqual(Array(RESUMES).fill(200));
  gate.release();
  for (const resumed of opened) {
    const rest = ((await allEvents(resumed)) as Positioned[]).filter((e) => !e.heartbeat);
    expect(rest[0]!.sequence).toBe(HELD_AT + 1);
    expect(rest.at(-1)!.finish?.finishReason).toBe("stop");
    expect(Buffer.from(textOf(seen) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
  }
  // One replica generated it; the resumes were spread over the three.
  expect(cluster.replicas.filter((r) => r.upstream.requests.length > 0)).toHaveLength(1);
});
