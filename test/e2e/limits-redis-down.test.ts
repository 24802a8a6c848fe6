// Redis failing under the gateway: hung (SIGSTOP), then gone (SIGKILL), then back. Two gateways in
// this process share one real redis-server, one failing open and one failing closed: while Redis
// fails, the open one lets calls in unchecked and the closed one refuses them with UNAVAILABLE and
// retry-after; both answer (no hang) and count every failure, and log it at most once per window.
// When Redis is back (empty, as after a restart), the limits hold again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { scrape } from "../support/metrics.js";
import { post } from "../support/http.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { bearer, getUsage } from "../support/usage.js";

const KEY = "lim-key-0123456789abcdef";
const TIMEOUT_MS = 300;
const REDIS_PASSWORD = "redis-secret-4b8e2f";

describe("caller budgets when Redis fails", () => {
  let redis: RunningRedis;
  let open: Harness;
  let closed: Harness;
  /** In front of the closed one, for what an HTTP client sees. */
  let envoy: RunningEnvoy;
  beforeAll(async () => {
    redis = await startRedis({ password: REDIS_PASSWORD });
    const env = (mode: string) => ({
      CALLER_KEYS: `lim ${KEY} streams=5 rpm=3`,
      REDIS_URL: redis.url,
      LIMITS_ON_REDIS_ERROR: mode,
      LIMITS_REDIS_TIMEOUT_MS: String(TIMEOUT_MS),
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: "0",
    });
    const upstream = { reply: () => ({ tokens: ["o", "k"] }) };
    [open, closed] = await Promise.all([
      startHarness({ env: env("open"), upstream }),
      startHarness({ env: env("closed"), upstream }),
    ]);
    envoy = await startEnvoy({ servicePort: closed.gateway.port, httpHost: "127.0.0.1", stderr: "ignore" });
  });
  afterAll(async () => {
    await envoy?.stop();
    await Promise.all([open?.close(), closed?.close()]);
    await redis?.close();
  });

  const chat = (h: Harness) => collect(h.client, { text: "hi" }, bearer(KEY));
  const storeErrors = async (h: Harness, labels: Record<string, string>) =>
    (await scrape(h.gateway.metricsPort ?? 0)).value("chat_gateway_limits_store_errors_total", labels);
  const warnings = (h: Harness, operation: string) =>
    h.logs.filter((l) => l.msg === "limits store failed" && l.operation === operation);

  it("checks in Redis while it answers", async () => {
    expect((await chat(open)).code).toBe(status.OK);
    expect((await chat(closed)).code).toBe(status.OK);
    expect(await storeErrors(open, {})).toBe(0);
    expect(await storeErrors(closed, {})).toBe(0);
  });

  it("answers within the timeout while Redis hangs: open lets the call in, closed refuses it with UNAVAILABLE and retry-after", async () => {
    redis.freeze();
    try {
      const upstreamAsked = open.upstream.requests.length;
      for (let i = 0; i < 3; i++) expect((await chat(open)).code).toBe(status.OK);
      expect(open.upstream.requests.length).toBe(upstreamAsked + 3);

      const refused = await chat(closed);
      expect([refused.code, refused.details]).toEqual([
        status.UNAVAILABLE,
        "caller limits cannot be checked now (their store is unreachable); retry",
      ]);
      expect(refused.trailers?.get("retry-after")).toEqual(["1"]);
      expect(closed.upstream.requests.length).toBe(1);

      const usage = await getUsage(open.client, bearer(KEY)).catch((e: { code: number; details: string }) => e);
      expect(usage).toMatchObject({
        code: status.UNAVAILABLE,
        details: "usage cannot be read now (the limits store is unreachable); retry",
      });

      expect(await storeErrors(open, { operation: "admit", outcome: "allowed" })).toBe(3);
      expect(await storeErrors(closed, { operation: "admit", outcome: "refused" })).toBe(1);
      // Three failures, one line: the rest are counted, not logged one by one.
      expect(warnings(open, "admit")).toEqual([
        expect.objectContaining({
          level: 40,
          failureMode: "open",
          call: "let in unchecked",
          error: expect.stringMatching(/did not answer within 300 ms|timed out/),
        }),
      ]);
      expect(warnings(closed, "admit")).toEqual([expect.objectContaining({ failureMode: "closed", call: "refused" })]);
    } finally {
      redis.thaw();
    }
  });

  it("answers at once while Redis is down, by the same choice", async () => {
    await redis.stop("SIGKILL");
    expect((await chat(open)).code).toBe(status.OK);
    const refused = await chat(closed);
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(refused.trailers?.get("retry-after")).toEqual(["1"]);
    const overHttp = await post(envoy.httpPort, "/chat", JSON.stringify({ text: "hi" }), {
      "content-type": "application/json",
      authorization: `Bearer ${KEY}`,
    });
    expect([overHttp.status, overHttp.headers["retry-after"]]).toEqual([503, "1"]);
    expect(JSON.parse(await overHttp.body())).toEqual({
      code: 14,
      message: "caller limits cannot be checked now (their store is unreachable); retry",
      details: [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", domain: "chat-gateway", reason: "LIMITS_UNAVAILABLE" },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "1s" },
      ],
    });
    expect(await storeErrors(open, { operation: "admit", outcome: "allowed" })).toBe(4);
    expect(await storeErrors(closed, { operation: "admit", outcome: "refused" })).toBe(3);
    // The failures were logged without the Redis password.
    expect(warnings(open, "admit").length + warnings(open, "connection").length).toBeGreaterThan(0);
    expect(JSON.stringify([...open.logs, ...closed.logs])).not.toContain(REDIS_PASSWORD);
  });

  it("holds the limits again once Redis is back", async () => {
    await redis.restart();
    // Each gateway reconnects within a second; GetUsage, which fails while Redis does whatever the
    // failure mode, says when. Until then the open one lets calls in unchecked, the closed refuses.
    for (const h of [open, closed]) {
      for (let i = 0; i < 100; i++) {
        if (
          await getUsage(h.client, bearer(KEY)).then(
            () => true,
            () => false,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect((await chat(closed)).code).toBe(status.OK);
    // Redis came back empty: 3 requests a minute from here, shared by both gateways.
    expect((await chat(open)).code).toBe(status.OK);
    expect((await chat(closed)).code).toBe(status.OK);
    const over = await chat(open);
    expect(over.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(over.details).toMatch(/^caller "lim" reached its limit of 3 requests per minute; retry after \d+s$/);
    expect((await getUsage(closed.client, bearer(KEY))).requestsPerMinute).toMatchObject({ limit: 3, remaining: 0 });
  });
});
