// Caller budgets kept in process (no REDIS_URL): requests and tokens per minute on top of the stream
// limit (test/e2e/auth-envoy.test.ts), tokens charged from the upstream's usage or estimated from the text
// sent, GetUsage, and the metrics, with exact values; and, without a Redis, the pieces that keep a
// check Redis runs late from taking (the clock conversion, undo): test/e2e/limits-redis-late.test.ts
// runs them against a real one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Metadata, status } from "@grpc/grpc-js";
import { ChatRequest } from "../../src/gen/chat/v1/chat.js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { scrape } from "../support/metrics.js";
import { bearer, getUsage } from "../support/usage.js";
import { createMemoryStore } from "../../src/limits/memory-store.js";
import { RedisClock } from "../../src/limits/redis-store.js";

const KEYS = {
  rpm: "rpm-key-0123456789abcdef",
  tpm: "tpm-key-0123456789abcdef",
  est: "est-key-0123456789abcdef",
  all: "all-key-0123456789abcdef",
};
const CALLER_KEYS = [
  `rpm ${KEYS.rpm} rpm=3`,
  `tpm ${KEYS.tpm} tpm=10`,
  `est ${KEYS.est}`,
  // The older bare stream limit, beside options.
  `all ${KEYS.all} 2 rpm=2 tpm=60`,
].join(", ");

const today = () => new Date(`${new Date().toISOString().slice(0, 10)}T00:00:00Z`);

describe("caller budgets in process", () => {
  let harness: Harness;
  const gate = hold();
  beforeAll(async () => {
    harness = await startHarness({
      env: { CALLER_KEYS, METRICS_HOST: "127.0.0.1", METRICS_PORT: "0" },
      upstream: {
        reply: (r) => {
          const said = r.body.messages?.at(-1)?.content;
          // Held after two deltas until the test lets go (it cancels first).
          if (said === "hold")
            return { tokens: ["hello ", "wörld ", "never sent"], gate: (i) => (i === 2 ? gate.promise : undefined) };
          // 6 completion tokens; the prompt "go" is 1 token (the fake upstream counts 4 characters a token).
          return { tokens: ["a", "b", "c", "d", "e", "f"] };
        },
      },
    });
  });
  afterAll(async () => {
    gate.release();
    await harness?.close();
  });

  it("holds a caller to its requests per minute: RESOURCE_EXHAUSTED with retry-after, and GetUsage spends nothing", async () => {
    for (let i = 0; i < 3; i++)
      expect((await collect(harness.client, { text: "go" }, bearer(KEYS.rpm))).code).toBe(status.OK);
    const usage = await getUsage(harness.client, bearer(KEYS.rpm));
    const refused = await collect(harness.client, { text: "go" }, bearer(KEYS.rpm));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    // The bucket refills at 3 a minute: one request fits again within 20 s, less what has passed.
    const seconds = Number(refused.trailers?.get("retry-after")[0]);
    expect(seconds).toBeGreaterThanOrEqual(15);
    expect(seconds).toBeLessThanOrEqual(20);
    expect(refused.details).toBe(`caller "rpm" reached its limit of 3 requests per minute; retry after ${seconds}s`);
    // Refused before the upstream was asked.
    expect(harness.upstream.requests.length).toBe(3);

    expect(usage.caller).toBe("rpm");
    expect(usage.requestsPerMinute).toMatchObject({ limit: 3, remaining: 0 });
    expect(usage.streams).toBeUndefined();
    expect(usage.tokensPerMinute).toBeUndefined();
    expect(usage.since).toEqual(today());
    expect(usage.models).toEqual([
      {
        model: "fake-model",
        requests: 3n,
        promptTokens: 3n,
        completionTokens: 18n,
        totalTokens: 21n,
        estimatedTokens: 0n,
      },
    ]);
  });

  it("holds a caller to its tokens per minute, counted from the upstream's usage; the stream that crosses the limit completes", async () => {
    // 7 tokens each (1 prompt + 6 completion) against 10 a minute: the first leaves 3, the second
    // is let in on those and leaves -4, the third waits for the debt to be paid off.
    const first = await collect(harness.client, { text: "go" }, bearer(KEYS.tpm));
    expect(first.responses.at(-1)?.event).toMatchObject({
      $case: "finish",
      value: { usage: { promptTokens: 1, completionTokens: 6 } },
    });
    expect((await getUsage(harness.client, bearer(KEYS.tpm))).tokensPerMinute).toMatchObject({
      limit: 10,
      remaining: 3,
    });
    const second = await collect(harness.client, { text: "go" }, bearer(KEYS.tpm));
    expect([second.code, second.text]).toEqual([status.OK, "abcdef"]);
    expect((await getUsage(harness.client, bearer(KEYS.tpm))).tokensPerMinute).toMatchObject({
      limit: 10,
      remaining: 0,
    });

    const third = await collect(harness.client, { text: "go" }, bearer(KEYS.tpm));
    expect(third.code).toBe(status.RESOURCE_EXHAUSTED);
    // (1 - (-4)) tokens at 10 a minute: 30 s, less what has passed.
    const seconds = Number(third.trailers?.get("retry-after")[0]);
    expect(seconds).toBeGreaterThanOrEqual(25);
    expect(seconds).toBeLessThanOrEqual(30);
    expect(third.details).toBe(`caller "tpm" used its 10 tokens per minute; retry after ${seconds}s`);
  });

  it("charges a cancelled stream what it sent, estimated at 4 UTF-8 bytes a token, when the upstream reported no usage", async () => {
    const call = harness.client.chat(ChatRequest.fromPartial({ text: "hold" }), bearer(KEYS.est));
    const received: string[] = [];
    await new Promise<void>((resolve) =>
      call.on("data", (r) => {
        if (r.event?.$case === "delta") received.push(r.event.value.text);
        if (received.length === 2) resolve();
      }),
    );
    call.on("error", () => undefined);
    call.cancel();
    await harness.upstream.ended(harness.upstream.requests.length - 1);
    expect(received).toEqual(["hello ", "wörld "]);

    // Prompt "hold": 4 bytes → 1 token. Sent "hello wörld ": 13 bytes (ö is 2) → 4 tokens.
    let usage = await getUsage(harness.client, bearer(KEYS.est));
    for (let i = 0; i < 50 && usage.models.length === 0; i++) {
      // The server hears the cancel a moment after the client.
      await new Promise((r) => setTimeout(r, 20));
      usage = await getUsage(harness.client, bearer(KEYS.est));
    }
    expect(usage.models).toEqual([
      {
        model: "fake-model",
        requests: 1n,
        promptTokens: 1n,
        completionTokens: 4n,
        totalTokens: 5n,
        estimatedTokens: 5n,
      },
    ]);
    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(
      s.value("chat_gateway_caller_tokens_total", { caller: "est", gen_ai_token_type: "input", source: "estimated" }),
    ).toBe(1);
    expect(
      s.value("chat_gateway_caller_tokens_total", { caller: "est", gen_ai_token_type: "output", source: "estimated" }),
    ).toBe(4);
    expect(s.value("chat_gateway_caller_tokens_total", { caller: "est", source: "reported" })).toBe(0);
  });

  it("answers GetUsage with every limit a key has, and exports tokens per caller and model and the refusals", async () => {
    expect((await collect(harness.client, { text: "go" }, bearer(KEYS.all))).code).toBe(status.OK);
    const usage = await getUsage(harness.client, bearer(KEYS.all));
    // The buckets refill continuously (rpm=2: one request every 30 s; tpm=60: a token a second), so
    // what is left depends a little on how long the call took.
    expect(usage).toEqual({
      caller: "all",
      since: today(),
      models: [
        {
          model: "fake-model",
          requests: 1n,
          promptTokens: 1n,
          completionTokens: 6n,
          totalTokens: 7n,
          estimatedTokens: 0n,
        },
      ],
      streams: { limit: 2, remaining: 2, fullInSeconds: 0 },
      requestsPerMinute: { limit: 2, remaining: 1, fullInSeconds: expect.any(Number) },
      tokensPerMinute: { limit: 60, remaining: expect.any(Number), fullInSeconds: expect.any(Number) },
    });
    expect(usage.requestsPerMinute?.fullInSeconds).toBeGreaterThanOrEqual(25);
    expect(usage.requestsPerMinute?.fullInSeconds).toBeLessThanOrEqual(30);
    expect(usage.tokensPerMinute?.remaining).toBeGreaterThanOrEqual(53);
    expect(usage.tokensPerMinute?.remaining).toBeLessThan(60);
    expect(usage.tokensPerMinute?.fullInSeconds).toBeGreaterThanOrEqual(1);
    expect(usage.tokensPerMinute?.fullInSeconds).toBeLessThanOrEqual(7);

    const s = await scrape(harness.gateway.metricsPort ?? 0);
    const tokens = (caller: string, type: string) =>
      s.value("chat_gateway_caller_tokens_total", {
        caller,
        gen_ai_request_model: "fake-model",
        gen_ai_token_type: type,
        source: "reported",
      });
    expect([tokens("rpm", "input"), tokens("rpm", "output")]).toEqual([3, 18]);
    expect([tokens("tpm", "input"), tokens("tpm", "output")]).toEqual([2, 12]);
    expect([tokens("all", "input"), tokens("all", "output")]).toEqual([1, 6]);
    expect(
      s.value("chat_gateway_refused_calls_total", {
        cause: "caller_rpm_limit",
        caller: "rpm",
        grpc_code: "RESOURCE_EXHAUSTED",
      }),
    ).toBe(1);
    expect(
      s.value("chat_gateway_refused_calls_total", {
        cause: "caller_tpm_limit",
        caller: "tpm",
        grpc_code: "RESOURCE_EXHAUSTED",
      }),
    ).toBe(1);
    expect(s.value("grpc_server_handled_total", { grpc_method: "Chat", grpc_code: "RESOURCE_EXHAUSTED" })).toBe(2);
    expect(s.value("grpc_server_handled_total", { grpc_method: "GetUsage", grpc_code: "OK" })).toBeGreaterThanOrEqual(
      5,
    );
    // Every stream of a limited caller was checked in the store (rpm 4, tpm 3, all 1); est has no limit.
    expect(s.value("chat_gateway_limits_check_seconds_count", { store: "memory" })).toBe(8);
    expect(s.value("chat_gateway_limits_store_errors_total")).toBe(0);
  });
});

describe("GetUsage with caller keys off", () => {
  it('answers for "anonymous": every caller\'s usage together, and no limits', async () => {
    const harness = await startHarness({ upstream: { reply: () => ({ tokens: ["x", "y"] }) } });
    try {
      const forged = new Metadata();
      forged.set("x-chat-gateway-caller", "admin");
      await collect(harness.client, { text: "go" });
      await collect(harness.client, { text: "go" }, forged);
      expect(await getUsage(harness.client, forged)).toEqual({
        caller: "anonymous",
        since: today(),
        models: [
          {
            model: "fake-model",
            requests: 2n,
            promptTokens: 2n,
            completionTokens: 4n,
            totalTokens: 6n,
            estimatedTokens: 0n,
          },
        ],
        streams: undefined,
        requestsPerMinute: undefined,
        tokensPerMinute: undefined,
      });
    } finally {
      await harness.close();
    }
  });
});

describe("the pieces that keep a late check from taking", () => {
  it("converts a deadline to Redis's clock with the offset its replies show, whatever the hosts' clocks say", () => {
    const clock = new RedisClock();
    // A Redis whose clock is 1000 s ahead of this host's, then a reply that was slow to arrive
    // (its TIME 40 ms older than it looks): the larger estimate, the closer to the truth, is kept.
    const ahead = performance.timeOrigin + 1_000_000;
    clock.sample(ahead + performance.now() - 40);
    clock.sample(ahead + performance.now());
    const deadline = performance.now() + 250;
    expect(clock.toRedis(deadline) - (ahead + deadline)).toBeGreaterThan(-5);
    expect(clock.toRedis(deadline) - (ahead + deadline)).toBeLessThanOrEqual(0);
  });

  it("in process, undo gives back an admitted call's lease and request", async () => {
    let now = 0;
    const store = createMemoryStore(() => now);
    const limits = { streams: 1, rpm: 2 };
    expect(await store.admit("c", limits, "a", 0)).toEqual({ ok: true });
    await store.undo("c", limits, "a");
    expect(await store.report("c", limits, "day")).toMatchObject({
      streams: { limit: 1, open: 0 },
      rpm: { limit: 2, remaining: 2 },
    });
    // Never past full.
    now += 60_000;
    await store.undo("c", limits, "a");
    expect((await store.report("c", limits, "day")).rpm).toMatchObject({ remaining: 2, fullInMs: 0 });
  });
});
