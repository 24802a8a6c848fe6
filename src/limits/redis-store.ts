// The limits store every replica shares (REDIS_URL set): Redis or Valkey, through ioredis. Each
// check is one Lua script (redis-scripts.ts), so it is atomic across replicas.
//
// Stream leases expire: a lease is a member of the caller's sorted set scored with its expiry, and
// this replica puts its own leases back at a full TTL every third of the TTL while their streams
// live. A replica that dies stops refreshing, and its leases stop counting at most one TTL after its
// last refresh.
//
// Never a hang, never a crash: commands fail at once while Redis is unreachable (no offline queue,
// no resending), a command without an answer fails after `timeoutMs`, a connection that stays silent
// with commands waiting is dropped, and reconnection is tried every second at most. The caller of
// the store decides what a failure means (fail open or closed: budgets.ts).
import { Redis } from "ioredis";
import { ADMIT, CHARGE, REFRESH, REPORT } from "./redis-scripts.js";
import {
  USAGE_FIELDS,
  usageFromFields,
  type Admission,
  type CallerLimits,
  type LimitName,
  type LimitStore,
  type StoredUsage,
} from "./store.js";

export interface RedisStoreOptions {
  url: string;
  /** How long one command may take. */
  timeoutMs: number;
  /** How long a stream lease lives without being refreshed. */
  leaseTtlMs: number;
  /** Connection errors and failed lease refreshes, which no caller awaits. */
  onBackgroundError: (operation: "connection" | "refresh", error: Error) => void;
}

/** Keys start with this: one Redis may serve other applications too. */
const PREFIX = "chat-gateway:";
/** A day's usage is kept this long, so the day's last charges are never lost to an early expiry. */
const USAGE_KEEP_SECONDS = 3 * 24 * 3600;

interface ScriptCommands {
  chatAdmit(
    streams: string,
    rpm: string,
    tpm: string,
    lease: string,
    limit: number,
    perMin: number,
    tokensPerMin: number,
    ttl: number,
  ): Promise<[string, number, number]>;
  chatRefresh(streams: string, ttl: number, ...leases: string[]): Promise<number>;
  chatCharge(
    tokens: string,
    usage: string,
    tpm: number,
    model: string,
    prompt: number,
    completion: number,
    estimated: 0 | 1,
    keep: number,
  ): Promise<number>;
  chatReport(
    streams: string,
    rpm: string,
    tpm: string,
    usage: string,
    perMin: number,
    tokensPerMin: number,
  ): Promise<[number, number, number, number, number, string[]]>;
}

const keys = (caller: string) => {
  const base = `${PREFIX}{${caller}}:`;
  return {
    streams: `${base}streams`,
    rpm: `${base}rpm`,
    tpm: `${base}tpm`,
    usage: (day: string) => `${base}usage:${day}`,
  };
};

export interface RedisStore extends LimitStore {
  /** Resolves once connected (true), or after `withinMs` without (false): start-up never waits longer. */
  ready(withinMs: number): Promise<boolean>;
}

// Longer than most functions here: a factory whose methods, one per store operation, share the
// connection and its scripts; each reads alone.
export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const redis = connect(options);
  const scripts = redis as unknown as ScriptCommands;

  // Leases this replica holds, by caller, for the refresh.
  const held = new Map<string, Set<string>>();
  const refresher = startLeaseRefresher(held, scripts, options);

  return {
    kind: "redis",
    ready(withinMs) {
      return waitUntilReady(redis, withinMs);
    },
    async admit(caller, limits: CallerLimits, lease): Promise<Admission> {
      const k = keys(caller);
      const [outcome, retryAfterMs, open] = await scripts.chatAdmit(
        k.streams,
        k.rpm,
        k.tpm,
        lease,
        limits.streams ?? 0,
        limits.rpm ?? 0,
        limits.tpm ?? 0,
        options.leaseTtlMs,
      );
      if (outcome !== "ok")
        return { ok: false, limit: outcome as LimitName, open: Number(open), retryAfterMs: Number(retryAfterMs) };
      if (limits.streams !== undefined) {
        let leases = held.get(caller);
        if (!leases) held.set(caller, (leases = new Set()));
        leases.add(lease);
      }
      return { ok: true };
    },
    async release(caller, lease) {
      const leases = held.get(caller);
      if (!leases?.delete(lease)) return;
      if (leases.size === 0) held.delete(caller);
      await redis.zrem(keys(caller).streams, lease);
    },
    async charge(caller, limits, charge, day) {
      const k = keys(caller);
      await scripts.chatCharge(
        k.tpm,
        k.usage(day),
        limits.tpm ?? 0,
        charge.model,
        charge.promptTokens,
        charge.completionTokens,
        charge.estimated ? 1 : 0,
        USAGE_KEEP_SECONDS,
      );
    },
    async report(caller, limits, day): Promise<StoredUsage> {
      const k = keys(caller);
      const [open, requests, requestsFullMs, tokens, tokensFullMs, fields] = await scripts.chatReport(
        k.streams,
        k.rpm,
        k.tpm,
        k.usage(day),
        limits.rpm ?? 0,
        limits.tpm ?? 0,
      );
      return {
        models: usageFromFields(usagePairs(fields)),
        ...(limits.streams !== undefined && { streams: { limit: limits.streams, open: Number(open) } }),
        ...(limits.rpm !== undefined && {
          rpm: { limit: limits.rpm, remaining: Number(requests), fullInMs: Number(requestsFullMs) },
        }),
        ...(limits.tpm !== undefined && {
          tpm: { limit: limits.tpm, remaining: Number(tokens), fullInMs: Number(tokensFullMs) },
        }),
      };
    },
    async close() {
      clearInterval(refresher);
      // The leases still held go with their streams; what is left expires by itself. QUIT lets the
      // last releases and charges be answered first, for one timeout at most.
      held.clear();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        redis.quit().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, options.timeoutMs))),
      ]);
      clearTimeout(timer);
      redis.disconnect();
    },
  };
}

/** The ioredis client, failing fast while Redis is unreachable, with the four Lua scripts defined. */
function connect(options: RedisStoreOptions): Redis {
  const redis = new Redis(options.url, {
    commandTimeout: options.timeoutMs,
    // No data at all for this long while commands wait: the connection is dead (a Redis that hangs
    // keeps its TCP connection up). Drop it and reconnect.
    socketTimeout: Math.max(1000, 2 * options.timeoutMs),
    connectTimeout: Math.max(1000, options.timeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    connectionName: "chat-gateway",
  });
  redis.on("error", (error: Error) => options.onBackgroundError("connection", error));
  redis.defineCommand("chatAdmit", { numberOfKeys: 3, lua: ADMIT });
  redis.defineCommand("chatRefresh", { numberOfKeys: 1, lua: REFRESH });
  redis.defineCommand("chatCharge", { numberOfKeys: 2, lua: CHARGE });
  redis.defineCommand("chatReport", { numberOfKeys: 4, lua: REPORT });
  return redis;
}

/** Puts the `held` leases back at a full TTL every third of the TTL; the timer does not keep the process up. */
function startLeaseRefresher(
  held: Map<string, Set<string>>,
  scripts: ScriptCommands,
  options: RedisStoreOptions,
): NodeJS.Timeout {
  const refresh = () => {
    for (const [caller, leases] of held) {
      scripts
        .chatRefresh(keys(caller).streams, options.leaseTtlMs, ...leases)
        .catch((error: Error) => options.onBackgroundError("refresh", error));
    }
  };
  const refresher = setInterval(refresh, Math.max(100, Math.floor(options.leaseTtlMs / 3)));
  refresher.unref();
  return refresher;
}

/** Resolves true once `redis` is connected, or false after `withinMs` without. */
function waitUntilReady(redis: Redis, withinMs: number): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), withinMs);
    redis.once("ready", onReady);
  });
}

/** The usage hash's [field, count] pairs from HGETALL's flat list, keeping only the usage fields. */
function usagePairs(fields: string[]): [string, number][] {
  const pairs: [string, number][] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = String(fields[i]);
    if (USAGE_FIELDS.some((f) => field.startsWith(`${f}:`))) pairs.push([field, Number(fields[i + 1])]);
  }
  return pairs;
}
