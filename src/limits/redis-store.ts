// The limits store every replica shares (REDIS_URL set): Redis or Valkey, through ioredis. Each
// check is one Lua script (redis-scripts.ts), so it is atomic across replicas.
//
// Stream leases expire: a lease is a member of the caller's sorted set scored with its expiry, and
// this replica puts its own leases back at a full TTL every third of the TTL while their streams
// live. A replica that dies stops refreshing, and its leases stop counting at most one TTL after its
// last refresh.
//
// Never a hang, never a crash: commands fail at once while Redis is unreachable (no offline queue,
// no resending), the caller of the store stops waiting after its timeout (budgets.ts), a connection
// that stays silent with commands waiting is dropped, and reconnection is tried every second at
// most. The caller of the store decides what a failure means (fail open or closed: budgets.ts).
//
// A check Redis runs after its caller gave up must take nothing: a frozen Redis runs the commands
// waiting on its socket when it resumes, even those of a connection dropped meanwhile. So each check
// carries its deadline on Redis's clock, and the script takes nothing past it (redis-scripts.ts).
// The deadline is the caller's, converted with what this replica knows of Redis's clock (RedisClock
// below), so the replicas' clocks need not agree with Redis's.
import { Redis } from "ioredis";
import { waitUntilReady } from "../redis/ready.js";
import { ADMIT, CHARGE, REFRESH, REPORT, UNDO } from "./redis-scripts.js";
import {
  CheckTooLate,
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
  /** How long a caller waits for one command (it gives up itself: budgets.ts); sets the connection's timeouts. */
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
    deadline: number,
  ): Promise<[string, number, number, number]>;
  chatUndo(streams: string, rpm: string, lease: string, perMin: number): Promise<number>;
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
  const clock = new RedisClock();
  // A new connection may reach another Redis (a failover), with another clock: forget the old one.
  // Nothing is sent to read it: each check's answer carries it. (A TIME sent at connection or on a
  // timer would be one more command in flight when this event loop is blocked, as at start-up,
  // which loses the connection to the socket timeout.)
  redis.on("ready", () => clock.reset());

  // Leases this replica holds, by caller, for the refresh.
  const held = new Map<string, Set<string>>();
  const refresher = startLeaseRefresher(held, scripts, options);

  return {
    kind: "redis",
    ready(withinMs) {
      return waitUntilReady(redis, withinMs);
    },
    async admit(caller, limits: CallerLimits, lease, deadline): Promise<Admission> {
      const k = keys(caller);
      const [outcome, retryAfterMs, open, redisNow] = await scripts.chatAdmit(
        k.streams,
        k.rpm,
        k.tpm,
        lease,
        limits.streams ?? 0,
        limits.rpm ?? 0,
        limits.tpm ?? 0,
        options.leaseTtlMs,
        clock.toRedis(deadline),
      );
      clock.sample(Number(redisNow));
      if (outcome === "late") throw new CheckTooLate(Number(retryAfterMs));
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
    async undo(caller, limits, lease) {
      const leases = held.get(caller);
      if (leases?.delete(lease) && leases.size === 0) held.delete(caller);
      const k = keys(caller);
      await scripts.chatUndo(k.streams, k.rpm, lease, limits.rpm ?? 0);
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
    // No commandTimeout: it would drop the answer of a check that ran in time but answered after its
    // caller gave up, and that answer is what tells budgets.ts to give the lease back (undo). Callers
    // stop waiting by themselves; the socket timeout below fails whatever waits on a dead connection.
    // No data at all for this long while commands wait: the connection is dead (a Redis that hangs
    // keeps its TCP connection up). Drop it and reconnect.
    socketTimeout: Math.max(1000, 2 * options.timeoutMs),
    connectTimeout: Math.max(1000, options.timeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // A check sent again on a new connection could run twice; commands without an answer fail instead.
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    connectionName: "chat-gateway",
  });
  redis.on("error", (error: Error) => options.onBackgroundError("connection", error));
  redis.defineCommand("chatAdmit", { numberOfKeys: 3, lua: ADMIT });
  redis.defineCommand("chatUndo", { numberOfKeys: 2, lua: UNDO });
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

/**
 * Redis's clock as this process sees it: the offset from `performance.now()` (monotonic, so this
 * process's own clock may step) to Redis's TIME, learnt from the replies that carry TIME.
 *
 * A reply's TIME was read in Redis before the reply got here, so `TIME - performance.now()` at its
 * arrival is at most the true offset, short by the reply's way back (and any wait of this event
 * loop). A deadline converted with it is therefore early on Redis's clock, never late: a check Redis
 * runs after this process stopped waiting always finds its deadline past, whatever the skew between
 * the hosts' clocks. Errors go the safe way: an offset estimated short by x ms makes a check that
 * runs in the last x ms before its caller's timeout count as late (refused or let in unchecked by
 * the failure mode, taking nothing). The largest estimate of the last two windows is kept, so one
 * slow reply does not shorten every deadline, and one from before Redis's clock was set back (an
 * NTP step) is forgotten after two to three windows of checks (10 to 15 s); until then a check up to
 * that step late could still take.
 */
export class RedisClock {
  static readonly WINDOW_MS = 5_000;
  private current = Number.NEGATIVE_INFINITY;
  private previous = Number.NEGATIVE_INFINITY;
  private since = performance.now();

  /** `redisNow`: Redis's TIME in ms, read by a command whose reply has just arrived. */
  sample(redisNow: number): void {
    if (!Number.isFinite(redisNow)) return;
    const local = performance.now();
    if (local - this.since >= RedisClock.WINDOW_MS) {
      // A window with no sample leaves nothing to remember.
      this.previous = local - this.since >= 2 * RedisClock.WINDOW_MS ? Number.NEGATIVE_INFINITY : this.current;
      this.current = Number.NEGATIVE_INFINITY;
      this.since = local;
    }
    this.current = Math.max(this.current, redisNow - local);
  }

  reset(): void {
    this.current = this.previous = Number.NEGATIVE_INFINITY;
    this.since = performance.now();
  }

  /** `local` (a `performance.now()` time) on Redis's clock; before any reply, this host's wall clock's. */
  toRedis(local: number): number {
    const offset = Math.max(this.current, this.previous);
    return Math.floor(local + (Number.isFinite(offset) ? offset : performance.timeOrigin));
  }
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
