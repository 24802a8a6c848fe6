// Redis that answers after the gateway gave up: frozen (SIGSTOP) for about a second while calls are
// checked, then resumed (SIGCONT), when it runs the checks that were waiting on its socket. The
// calls were refused (closed) or let in unchecked (open) when the check timed out, so those late
// checks must take nothing: no lease, no request. Then the other way to be late: Redis runs the
// check in time, but its answer arrives after the caller gave up; what it took must go back. What
// the test reads is what the caller and Redis see afterwards: the next call's answer, GetUsage, and
// the caller's keys read with a client of its own, never the gateway's counters.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { startRedis, type RunningRedis } from "../support/redis.js";
import { bearer, getUsage } from "../support/usage.js";
import { createCallerBudgets } from "../../src/limits/budgets.js";
import { createRedisStore } from "../../src/limits/redis-store.js";

const TIMEOUT_MS = 250;
/**
 * How long Redis stays frozen: every check sent meanwhile is long past its timeout, and the
 * gateways drop their silent connections (after 1 s), so they never read the answers of those checks
 * and cannot undo what they took: only the deadline each check carries keeps them from taking.
 */
const FROZEN_MS = 1300;
// One caller per limit and mode, so what one leaves behind cannot hide another's.
const STREAMS_KEY = "late-streams-0123456789ab";
const RPM_KEY = "late-rpm-0123456789abcdef";
const OPEN_KEY = "late-open-0123456789abcde";
const CALLER_KEYS = [
  `streams2 ${STREAMS_KEY} streams=2`,
  `rpm10 ${RPM_KEY} rpm=10`,
  `open ${OPEN_KEY} streams=2 rpm=10`,
].join(",");

describe("caller budgets when Redis answers after the timeout", () => {
  let redis: RunningRedis;
  let open: Harness;
  let closed: Harness;
  /** The test's own view of Redis. */
  let reader: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    const env = (mode: string) => ({
      CALLER_KEYS,
      REDIS_URL: redis.url,
      LIMITS_ON_REDIS_ERROR: mode,
      LIMITS_REDIS_TIMEOUT_MS: String(TIMEOUT_MS),
    });
    const upstream = { reply: () => ({ tokens: ["o", "k"] }) };
    [open, closed] = await Promise.all([
      startHarness({ env: env("open"), upstream }),
      startHarness({ env: env("closed"), upstream }),
    ]);
    reader = new Redis(redis.url, { lazyConnect: true });
    await reader.connect();
  });
  afterAll(async () => {
    reader?.disconnect();
    await Promise.all([open?.close(), closed?.close()]);
    await redis?.close();
  });

  const chat = (h: Harness, key: string) => collect(h.client, { text: "hi" }, bearer(key));
  /** What Redis holds for a caller: its stream leases, and whether its requests bucket was ever written. */
  const held = async (caller: string) => ({
    leases: await reader.zcard(`chat-gateway:{${caller}}:streams`),
    requestsTaken: await reader.exists(`chat-gateway:{${caller}}:rpm`),
  });

  it("takes no lease and no request for a call refused or let in while Redis was frozen", async () => {
    // Redis answers: nothing held yet, every budget full.
    for (const caller of ["streams2", "rpm10", "open"])
      expect(await held(caller)).toEqual({ leases: 0, requestsTaken: 0 });

    const frozenAt = performance.now();
    redis.freeze();
    let refused, letIn;
    try {
      // All at once, so Redis is frozen for a second, not a second per call.
      [refused, letIn] = await Promise.all([
        Promise.all([
          ...Array.from({ length: 3 }, () => chat(closed, STREAMS_KEY)),
          ...Array.from({ length: 4 }, () => chat(closed, RPM_KEY)),
        ]),
        Promise.all(Array.from({ length: 3 }, () => chat(open, OPEN_KEY))),
      ]);
      await new Promise((r) => setTimeout(r, Math.max(0, FROZEN_MS - (performance.now() - frozenAt))));
    } finally {
      redis.thaw();
    }
    expect(refused.map((r) => r.code)).toEqual(Array(7).fill(status.UNAVAILABLE));
    expect(letIn.map((r) => r.code)).toEqual(Array(3).fill(status.OK));

    // Once each gateway has an answer from Redis again, Redis has run the checks that waited on its
    // socket: they were sent before, on that connection or on one it dropped.
    for (const [h, key] of [
      [closed, STREAMS_KEY],
      [closed, RPM_KEY],
      [open, OPEN_KEY],
    ] as const) {
      for (let i = 0; i < 100; i++) {
        if (
          await getUsage(h.client, bearer(key)).then(
            () => true,
            () => false,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    // Redis ran ten checks late, and they took nothing.
    expect(await held("streams2")).toEqual({ leases: 0, requestsTaken: 0 });
    expect(await held("rpm10")).toEqual({ leases: 0, requestsTaken: 0 });
    expect(await held("open")).toEqual({ leases: 0, requestsTaken: 0 });
    expect((await getUsage(closed.client, bearer(STREAMS_KEY))).streams).toMatchObject({ limit: 2, remaining: 2 });
    expect((await getUsage(closed.client, bearer(RPM_KEY))).requestsPerMinute).toMatchObject({
      limit: 10,
      remaining: 10,
    });
    expect(await getUsage(open.client, bearer(OPEN_KEY))).toMatchObject({
      streams: { limit: 2, remaining: 2 },
      requestsPerMinute: { limit: 10, remaining: 10 },
    });

    // And the caller's next calls are checked against full budgets.
    expect((await chat(closed, STREAMS_KEY)).code).toBe(status.OK);
    expect((await chat(closed, RPM_KEY)).code).toBe(status.OK);
    expect((await chat(open, OPEN_KEY)).code).toBe(status.OK);
    expect((await getUsage(closed.client, bearer(RPM_KEY))).requestsPerMinute).toMatchObject({ remaining: 9 });
  });

  it("gives back the lease and the request of a check whose answer came after the timeout", async () => {
    const store = createRedisStore({
      url: redis.url,
      timeoutMs: TIMEOUT_MS,
      leaseTtlMs: 15_000,
      onBackgroundError: () => undefined,
    });
    const budgets = createCallerBudgets({
      limits: new Map([["undo", { streams: 2, rpm: 10 }]]),
      store,
      onStoreError: "closed",
      timeoutMs: TIMEOUT_MS,
    });
    try {
      expect(await store.ready(5000)).toBe(true);
      // One check answered in time, so the script is loaded and the next is a single EVALSHA.
      const first = await budgets.admit("undo");
      expect(first.ok).toBe(true);
      if (first.ok) first.release();
      const before = await budgets.report("undo");
      expect([before.streams?.open, before.rpm?.remaining]).toEqual([0, 9]);

      // The check is on Redis's socket; Redis runs it at once and answers, but this process reads
      // nothing until its event loop is free again, and then its timeout fires first.
      const outcome = budgets.admit("undo");
      const blockedUntil = performance.now() + 2 * TIMEOUT_MS;
      while (performance.now() < blockedUntil);
      expect(await outcome).toMatchObject({ ok: false, limit: "unavailable" });

      // The answer ("admitted") is read right after; what the check took goes back.
      let after = await budgets.report("undo");
      for (let i = 0; i < 20 && after.streams?.open !== 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
        after = await budgets.report("undo");
      }
      expect([after.streams?.open, after.rpm?.remaining]).toEqual([0, 9]);
      expect(await reader.zcard("chat-gateway:{undo}:streams")).toBe(0);
      expect(Number(await reader.hget("chat-gateway:{undo}:rpm", "level"))).toBeGreaterThanOrEqual(9);
    } finally {
      await budgets.close();
    }
  });
});
