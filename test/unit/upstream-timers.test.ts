// How the upstream's three bounds compose, over gRPC in-process with the fake upstream and the real
// openai SDK: the SDK's timeout and retries (a 429's retry-after included) first, then the fallback,
// and the idle watchdog only between chunks of a response that started, paused while the caller is
// slow. Short timeouts, and gates instead of sleeps: where a test needs the idle timeout to have
// passed, it waits for a sentinel stream to be ended as stalled.
import { afterEach, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import {
  startFakeUpstream,
  type FakeUpstream,
  type FillerKind,
  type RecordedRequest,
  type Reply,
} from "../support/fake-model.js";
import { collect, startHarness, textOf, type Harness } from "../support/grpc.js";
import { never } from "../support/gates.js";
import { scrape } from "../support/metrics.js";

let harness: Harness | undefined;
let fallback: FakeUpstream | undefined;
afterEach(async () => {
  await harness?.close();
  await fallback?.close();
  harness = undefined;
  fallback = undefined;
});

const SENTINEL = "sentinel: stall after the first token";
const asked = (r: RecordedRequest) => r.body.messages?.at(-1)?.content ?? "";
/** The sentinel's reply (a first token, then nothing), or `reply`. */
const withSentinel =
  (reply: (r: RecordedRequest) => Reply) =>
  (r: RecordedRequest): Reply =>
    asked(r) === SENTINEL ? { tokens: ["first", "never"], gate: (i) => (i === 1 ? never : undefined) } : reply(r);

/** Resolves once the idle timeout has surely passed since it was called: a stream it starts has stalled. */
async function idleTimeoutPassed(h: Harness): Promise<void> {
  const sentinel = await collect(h.client, { text: SENTINEL });
  expect(sentinel.details).toMatch(/^upstream stalled: no data/);
}

describe("before the response headers: the SDK's timeout and retries, then the fallback", () => {
  it("times out and retries a hung upstream, then the fallback answers; nothing is 'stalled'", async () => {
    fallback = await startFakeUpstream({ reply: () => ({ tokens: ["from", " fallback"] }) });
    harness = await startHarness({
      // The watchdog's limits are the shortest: they must not run while the headers are awaited.
      env: {
        UPSTREAM_TIMEOUT_MS: "300",
        UPSTREAM_MAX_RETRIES: "1",
        UPSTREAM_IDLE_TIMEOUT_MS: "100",
        UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "100",
        FALLBACK_BASE_URL: fallback.baseURL,
      },
      upstream: { reply: () => ({ holdHeaders: never }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.text]).toEqual([status.OK, "from fallback"]);
    // The first request and the SDK's retry, each given up at its timeout.
    expect(harness.upstream.requests).toHaveLength(2);
    expect([await harness.upstream.ended(0), await harness.upstream.ended(1)]).toEqual(["closed", "closed"]);
    expect(harness.logs.find((l) => l.msg === "stream ended")).toMatchObject({
      code: "OK",
      upstream: "fallback",
      retries: 1,
    });
  });

  it("waits out a 429's retry-after longer than the idle timeout, and retries", async () => {
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "1", UPSTREAM_IDLE_TIMEOUT_MS: "200" },
      upstream: {
        reply: (r) => (r.index === 0 ? { status: 429, headers: { "retry-after": "1" } } : { tokens: ["ok"] }),
      },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.text]).toEqual([status.OK, "ok"]);
    expect(harness.upstream.requests).toHaveLength(2);
  });
});

describe("after the response headers: the first-token timeout, then the idle watchdog", () => {
  it.each<FillerKind>(["reasoning", "role", "empty", "tool-call", "usage"])(
    "counts %s chunks after the first token as activity, however long they go on",
    async (kind) => {
      harness = await startHarness({
        env: { UPSTREAM_IDLE_TIMEOUT_MS: "250" },
        // A first token, chunks of that kind every 25 ms for twice the idle timeout, then the answer.
        upstream: {
          reply: () => ({ tokens: ["first ", "answer"], fillers: { kind, everyMs: 25, forMs: 500, before: 1 } }),
        },
      });
      const result = await collect(harness.client, { text: "hi" });
      expect([result.code, result.details, result.text]).toEqual([status.OK, "", "first answer"]);
    },
  );

  it.each<FillerKind>(["role", "empty", "usage"])("does not take %s chunks for a first token", async (kind) => {
    harness = await startHarness({
      env: { UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "250" },
      // Content-free chunks every 25 ms until the first-token timeout has passed (and more).
      upstream: { reply: () => ({ tokens: ["never"], fillers: { kind, everyMs: 25, forMs: 60_000 } }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.details, result.responses]).toEqual([
      status.UNAVAILABLE,
      "upstream stalled before the first token: no token for 0.3s",
      [],
    ]);
  });

  it("is paused while the caller reads more slowly than the idle timeout: the stream completes", async () => {
    const tokens = Array.from({ length: 10_000 }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(194)}`);
    harness = await startHarness({
      env: { UPSTREAM_IDLE_TIMEOUT_MS: "300", METRICS_HOST: "127.0.0.1", METRICS_PORT: "0" },
      upstream: { reply: withSentinel(() => ({ tokens })) },
    });
    const call = harness.client.chat(ChatRequest.fromPartial({ text: "a lot" }));
    const responses: ChatResponse[] = [];
    call.on("data", (r: ChatResponse) => responses.push(r));
    call.pause();
    // The gateway has stopped reading the upstream (which can no longer write) to wait for the caller...
    await harness.upstream.blocked(0);
    // ...and goes on waiting for longer than the idle timeout.
    await idleTimeoutPassed(harness);
    call.resume();
    await new Promise<void>((resolve, reject) => call.on("end", resolve).on("error", reject));
    expect(textOf(responses)).toBe(tokens.join(""));

    // A slow caller is not an upstream failure: the only one counted is the sentinel's stall.
    const metrics = await scrape(harness.gateway.metricsPort ?? 0);
    expect(metrics.value("chat_gateway_upstream_errors_total", { error_type: "upstream_idle" })).toBe(1);
    expect(metrics.value("chat_gateway_upstream_errors_total")).toBe(1);
  });

  it("ends a stall after the first token as stalled, in-band, without the fallback", async () => {
    fallback = await startFakeUpstream({ reply: () => ({ tokens: ["never used"] }) });
    harness = await startHarness({
      env: { UPSTREAM_IDLE_TIMEOUT_MS: "200", FALLBACK_BASE_URL: fallback.baseURL },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.details, result.text]).toEqual([
      status.UNAVAILABLE,
      "upstream stalled: no data for 0.2s",
      "a",
    ]);
    expect(result.responses.at(-1)?.event?.$case).toBe("error");
    expect(await harness.upstream.ended(0)).toBe("closed");
    expect(fallback.requests).toHaveLength(0);
  });

  it("sends a stall after the headers but before the first token (the first-token timeout) to the fallback", async () => {
    fallback = await startFakeUpstream({ reply: () => ({ tokens: ["rescued"] }) });
    harness = await startHarness({
      env: { UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "200", FALLBACK_BASE_URL: fallback.baseURL },
      upstream: { reply: () => ({ tokens: ["a"], gate: () => never }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.text]).toEqual([status.OK, "rescued"]);
    expect(await harness.upstream.ended(0)).toBe("closed");
  });
});
