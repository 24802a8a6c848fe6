// Caller budgets shared by three replicas through one real Redis: each replica is the built service
// (`node dist/main.js`) in its own process, so each has its own memory and its own Redis connection,
// and one can die by SIGKILL with its leases held, as a real replica does. Envoy sits in front of
// the third for the HTTP path (429 with retry-after, GET /usage). The fake upstream runs here, so
// the test holds streams open with gates.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { collect } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { post } from "../support/http.js";
import { scrape } from "../support/metrics.js";
import { grpcurl, startServiceProcess, type ServiceProcess } from "../support/processes.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { bearer, getUsage } from "../support/usage.js";

const KEYS = {
  conc: "conc-key-0123456789abcdef",
  rpm: "rpm-key-0123456789abcdef",
  tpm: "tpm-key-0123456789abcdef",
  dies: "dies-key-0123456789abcdef",
};
const CALLER_KEYS = [
  `conc ${KEYS.conc} streams=10`,
  `rpm ${KEYS.rpm} rpm=6`,
  `tpm ${KEYS.tpm} tpm=40`,
  `dies ${KEYS.dies} streams=2`,
].join(", ");
/** Short, so the killed replica's slots come back within the test; the default is 15 s. */
const LEASE_TTL_MS = 3000;
const REDIS_PASSWORD = "redis-secret-9c1d77";

interface Replica {
  service: ServiceProcess;
  client: ChatServiceClient;
  metricsPort: number;
}

describe("caller budgets shared by three replicas in Redis", () => {
  let redis: RunningRedis;
  let upstream: FakeUpstream;
  let replicas: Replica[];
  let envoy: RunningEnvoy;
  let gate = hold();

  beforeAll(async () => {
    redis = await startRedis({ password: REDIS_PASSWORD });
    upstream = await startFakeUpstream({
      // "hold": held after its first delta until the test opens the gate. Anything else: 1 prompt
      // token ("go"), 6 completion tokens.
      reply: (r) =>
        r.body.messages?.at(-1)?.content === "hold"
          ? { tokens: ["a", "b"], gate: (i) => (i === 1 ? gate.promise : undefined) }
          : { tokens: ["a", "b", "c", "d", "e", "f"] },
    });
    const env = {
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-test-replicas",
      CHAT_MODEL: "fake-model",
      UPSTREAM_MAX_RETRIES: "0",
      CALLER_KEYS,
      REDIS_URL: redis.url,
      LIMITS_LEASE_TTL_MS: String(LEASE_TTL_MS),
      // Far above a Redis round trip even on a busy machine: a check that timed out would let its
      // call in unchecked (fail open), and this file is about the limits, not the failure mode
      // (limits-redis-down.test.ts). The test checks that no operation failed.
      LIMITS_REDIS_TIMEOUT_MS: "5000",
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: "0",
    };
    replicas = await Promise.all(
      [0, 1, 2].map(async () => {
        const service = await startServiceProcess(env);
        const listening = await service.logLine((l) => l.msg === "chat gateway listening");
        return {
          service,
          client: new ChatServiceClient(`127.0.0.1:${service.port}`, credentials.createInsecure()),
          metricsPort: Number(listening.metricsPort),
        };
      }),
    );
    envoy = await startEnvoy({ servicePort: replicas[2]!.service.port, httpHost: "127.0.0.1", stderr: "ignore" });
  });
  afterAll(async () => {
    gate.release();
    await envoy?.stop();
    for (const r of replicas ?? []) {
      r.client.close();
      await r.service.stop("SIGKILL");
    }
    await upstream?.close();
    await redis?.close();
  });

  /** Replica i's client, for i spread over the three. */
  const client = (i: number) => replicas[i % 3]!.client;
  const sumOverReplicas = async (name: string, labels: Record<string, string>) =>
    (await Promise.all(replicas.map(async (r) => (await scrape(r.metricsPort)).value(name, labels)))).reduce(
      (a, b) => a + b,
      0,
    );
  /** Polls GetUsage until `ready` holds: a stream's tokens reach Redis a moment after its end. */
  async function usageWhen(key: string, ready: (u: Awaited<ReturnType<typeof getUsage>>) => boolean, via = 0) {
    for (let i = 0; ; i++) {
      const usage = await getUsage(client(via), bearer(key));
      if (ready(usage) || i >= 100) return usage;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it("lets exactly 10 of 30 streams of a key limited to 10 run, spread over three replicas and both paths; 20 get RESOURCE_EXHAUSTED / 429 with retry-after", async () => {
    gate = hold();
    type Outcome =
      | { streaming: true }
      | { streaming: false; code: number; retryAfter: string | undefined; body?: string };
    const grpcStream = (i: number) =>
      new Promise<Outcome>((resolve) => {
        const call = client(i).chat(ChatRequest.fromPartial({ text: "hold" }), bearer(KEYS.conc));
        call.on("data", (r: ChatResponse) => r.event?.$case === "delta" && resolve({ streaming: true }));
        call.on("error", (e: ServiceError) =>
          resolve({ streaming: false, code: e.code, retryAfter: e.metadata?.get("retry-after")[0]?.toString() }),
        );
      });
    const httpStream = async (): Promise<Outcome> => {
      const response = await post(envoy.httpPort, "/chat", JSON.stringify({ text: "hold" }), {
        "content-type": "application/json",
        authorization: `Bearer ${KEYS.conc}`,
      });
      if (response.status !== 200) {
        return {
          streaming: false,
          code: response.status,
          retryAfter: response.headers["retry-after"] as string | undefined,
          body: await response.body(),
        };
      }
      for await (const event of response.events) if (event.delta) return { streaming: true };
      return { streaming: false, code: 0, retryAfter: undefined };
    };
    // Replicas 0 and 1 over gRPC, replica 2 through Envoy over HTTP, all at once.
    const outcomes = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => grpcStream(i % 2)),
      ...Array.from({ length: 10 }, () => httpStream()),
    ]);

    const streaming = outcomes.filter((o) => o.streaming);
    const refused = outcomes.filter((o): o is Extract<Outcome, { streaming: false }> => !o.streaming);
    expect(streaming.length).toBe(10);
    expect(refused.length).toBe(20);
    for (const o of refused) {
      expect(o.code === status.RESOURCE_EXHAUSTED || o.code === 429, `refused with ${o.code}`).toBe(true);
      expect(o.retryAfter).toBe("1");
      if (o.code === 429) {
        expect(JSON.parse(o.body ?? "")).toMatchObject({
          code: 8,
          message: 'caller "conc" has 10 streams open, its limit; retry when one ends',
          details: [
            {
              "@type": "type.googleapis.com/google.rpc.ErrorInfo",
              domain: "chat-gateway",
              reason: "CALLER_STREAM_LIMIT",
            },
            { "@type": "type.googleapis.com/google.rpc.RetryInfo" },
          ],
        });
      }
    }
    // The upstream was asked only for the streams let in.
    expect(upstream.requests.filter((r) => r.body.messages?.at(-1)?.content === "hold").length).toBe(10);
    expect(
      await sumOverReplicas("chat_gateway_refused_calls_total", { cause: "caller_stream_limit", caller: "conc" }),
    ).toBe(20);
    // Every call was checked in Redis: none was let in because a check failed.
    expect(await sumOverReplicas("chat_gateway_limits_store_errors_total", {})).toBe(0);

    const during = await getUsage(client(1), bearer(KEYS.conc));
    expect(during.streams).toEqual({ limit: 10, remaining: 0, fullInSeconds: 0 });
    gate.release();
    const after = await usageWhen(KEYS.conc, (u) => u.streams?.remaining === 10);
    expect(after.streams).toEqual({ limit: 10, remaining: 10, fullInSeconds: 0 });
    expect((await collect(client(0), { text: "go" }, bearer(KEYS.conc))).code).toBe(status.OK);
  });

  it("holds a key to its requests per minute across the replicas: 6 of 9", async () => {
    const results = await Promise.all(
      Array.from({ length: 9 }, (_, i) => collect(client(i), { text: "go" }, bearer(KEYS.rpm))),
    );
    expect(results.filter((r) => r.code === status.OK).length).toBe(6);
    const refused = results.filter((r) => r.code !== status.OK);
    expect(refused.map((r) => r.code)).toEqual([
      status.RESOURCE_EXHAUSTED,
      status.RESOURCE_EXHAUSTED,
      status.RESOURCE_EXHAUSTED,
    ]);
    for (const r of refused) {
      // One request comes back every 10 s at 6 a minute.
      const seconds = Number(r.trailers?.get("retry-after")[0]);
      expect(seconds).toBeGreaterThanOrEqual(1);
      expect(seconds).toBeLessThanOrEqual(10);
      expect(r.details).toBe(`caller "rpm" reached its limit of 6 requests per minute; retry after ${seconds}s`);
    }
  });

  it("holds a key to its tokens per minute across the replicas: each stream's usage counts on every replica", async () => {
    // 16 tokens a stream (a 40-character prompt is 10, and 6 completion tokens) against 40 a minute:
    // 40 → 24 → 8 → -8, one stream on each replica, then refused until 9 tokens have come back (13.5 s).
    const text = "t".repeat(40);
    for (let i = 0; i < 3; i++) {
      expect((await collect(client(i), { text }, bearer(KEYS.tpm))).code).toBe(status.OK);
      await usageWhen(KEYS.tpm, (u) => u.models[0]?.requests === BigInt(i + 1), i + 1);
    }
    const refused = await collect(client(0), { text }, bearer(KEYS.tpm));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    // 1 - (-8) = 9 tokens at 40 a minute: 14 s, less what has passed.
    const seconds = Number(refused.trailers?.get("retry-after")[0]);
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(14);
    expect(refused.details).toBe(`caller "tpm" used its 40 tokens per minute; retry after ${seconds}s`);
    expect(
      await sumOverReplicas("chat_gateway_refused_calls_total", { cause: "caller_tpm_limit", caller: "tpm" }),
    ).toBe(1);
  });

  it("answers GetUsage the same on every replica, over grpcurl and through Envoy, and exports the tokens with exact values", async () => {
    const usage = await usageWhen(KEYS.rpm, (u) => u.models[0]?.requests === 6n);
    expect(usage.models).toEqual([
      {
        model: "fake-model",
        requests: 6n,
        promptTokens: 6n,
        completionTokens: 36n,
        totalTokens: 42n,
        estimatedTokens: 0n,
      },
    ]);
    const since = `${new Date().toISOString().slice(0, 10)}T00:00:00Z`;
    const expected = {
      caller: "rpm",
      since,
      models: [{ model: "fake-model", requests: "6", promptTokens: "6", completionTokens: "36", totalTokens: "42" }],
    };

    const viaGrpcurl = await grpcurl(
      replicas[1]!.service.port,
      ["-H", `authorization: Bearer ${KEYS.rpm}`],
      "chat.v1.ChatService/GetUsage",
    );
    expect(viaGrpcurl.stderr).toBe("");
    const fromGrpcurl = JSON.parse(viaGrpcurl.stdout) as Record<string, unknown> & {
      requestsPerMinute: { limit: number };
    };
    expect(fromGrpcurl).toMatchObject(expected);
    expect(fromGrpcurl.requestsPerMinute.limit).toBe(6);

    const viaEnvoy = await post(envoy.httpPort, "/usage", "", { authorization: `Bearer ${KEYS.rpm}` }, "GET");
    expect(viaEnvoy.status).toBe(200);
    expect(viaEnvoy.headers["content-type"]).toBe("application/json");
    const fromEnvoy = JSON.parse(await viaEnvoy.body()) as Record<string, unknown>;
    expect(fromEnvoy).toMatchObject(expected);
    expect(Object.keys(fromEnvoy).sort()).toEqual(["caller", "models", "requestsPerMinute", "since"]);
    expect((await post(envoy.httpPort, "/usage", "", {}, "GET")).status).toBe(401);

    const tokens = (caller: string, type: string) =>
      sumOverReplicas("chat_gateway_caller_tokens_total", {
        caller,
        gen_ai_request_model: "fake-model",
        gen_ai_token_type: type,
        source: "reported",
      });
    expect([await tokens("rpm", "input"), await tokens("rpm", "output")]).toEqual([6, 36]);
    expect([await tokens("tpm", "input"), await tokens("tpm", "output")]).toEqual([30, 18]);
    expect(await sumOverReplicas("chat_gateway_limits_store_errors_total", {})).toBe(0);
  });

  it("names the shared Redis in the start-up line, never its password", async () => {
    const listening = await replicas[0]!.service.logLine((l) => l.msg === "chat gateway listening");
    expect(listening.limits).toBe(
      `shared by every replica in Redis at redis://:redacted@127.0.0.1:${redis.port}; on a Redis error, fail open`,
    );
    for (const r of replicas) expect(r.service.output.join("\n")).not.toContain(REDIS_PASSWORD);
  });

  it("keeps the slots of long streams, and gives back those of a replica killed while holding them once their leases expire", async () => {
    gate = hold();
    const held = [0, 1].map(() =>
      replicas[1]!.client.chat(ChatRequest.fromPartial({ text: "hold" }), bearer(KEYS.dies)),
    );
    await Promise.all(held.map((call) => new Promise((resolve) => call.once("data", resolve))));
    for (const call of held) call.on("error", () => undefined);
    expect((await collect(client(0), { text: "go" }, bearer(KEYS.dies))).code).toBe(status.RESOURCE_EXHAUSTED);
    // Streams that outlive the lease TTL keep their slots: their replica refreshes the leases.
    await new Promise((r) => setTimeout(r, 1.5 * LEASE_TTL_MS));
    expect((await collect(client(2), { text: "go" }, bearer(KEYS.dies))).code).toBe(status.RESOURCE_EXHAUSTED);

    await replicas[1]!.service.stop("SIGKILL");
    const killedAt = performance.now();
    // Its connection to Redis closed with it, but its leases stay until they expire.
    expect((await collect(client(2), { text: "go" }, bearer(KEYS.dies))).code).toBe(status.RESOURCE_EXHAUSTED);
    let result = await collect(client(0), { text: "go" }, bearer(KEYS.dies));
    while (result.code === status.RESOURCE_EXHAUSTED && performance.now() - killedAt < 4 * LEASE_TTL_MS) {
      await new Promise((r) => setTimeout(r, 50));
      result = await collect(client(0), { text: "go" }, bearer(KEYS.dies));
    }
    const recoveredMs = performance.now() - killedAt;
    console.log(`slots of the killed replica back after ${Math.round(recoveredMs)} ms (lease TTL ${LEASE_TTL_MS} ms)`);
    expect(result.code).toBe(status.OK);
    // Within the lease TTL (a lease is refreshed every third of it), with room for a busy machine.
    expect(recoveredMs).toBeLessThan(2 * LEASE_TTL_MS);
    expect((await getUsage(client(2), bearer(KEYS.dies))).streams).toEqual({
      limit: 2,
      remaining: 2,
      fullInSeconds: 0,
    });
  });
});
