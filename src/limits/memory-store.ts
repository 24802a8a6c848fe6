// The limits store of a single replica (REDIS_URL unset): everything in this process's memory.
// Node runs one check at a time, so each operation is atomic as it is, and a check runs as soon as it
// is asked: never after its deadline, which admit therefore ignores.
import { levelAt, msUntil, type Bucket } from "./token-bucket.js";
import {
  usageFromFields,
  type Admission,
  type CallerLimits,
  type LimitStore,
  type StoredUsage,
  type TokenCharge,
} from "./store.js";

interface CallerState {
  leases: Set<string>;
  requests?: Bucket;
  tokens?: Bucket;
  /** Usage of `day` only: an earlier day's is dropped when a new one starts. */
  day?: string;
  usage: Map<string, number>;
}

export function createMemoryStore(now: () => number = Date.now): LimitStore {
  const callers = new Map<string, CallerState>();
  const state = (caller: string): CallerState => {
    let s = callers.get(caller);
    if (!s) callers.set(caller, (s = { leases: new Set(), usage: new Map() }));
    return s;
  };

  return {
    kind: "memory",
    async admit(caller: string, limits: CallerLimits, lease: string): Promise<Admission> {
      const s = state(caller);
      const t = now();
      if (limits.streams !== undefined && s.leases.size >= limits.streams) {
        return { ok: false, limit: "streams", open: s.leases.size, retryAfterMs: 1000 };
      }
      const requests = limits.rpm === undefined ? 0 : levelAt(s.requests, limits.rpm, t);
      if (limits.rpm !== undefined && requests < 1) {
        return { ok: false, limit: "rpm", open: 0, retryAfterMs: msUntil(requests, 1, limits.rpm) };
      }
      if (limits.tpm !== undefined) {
        const tokens = levelAt(s.tokens, limits.tpm, t);
        if (tokens < 1) return { ok: false, limit: "tpm", open: 0, retryAfterMs: msUntil(tokens, 1, limits.tpm) };
      }
      if (limits.streams !== undefined) s.leases.add(lease);
      if (limits.rpm !== undefined) s.requests = { level: requests - 1, at: t };
      return { ok: true };
    },
    async release(caller, lease) {
      callers.get(caller)?.leases.delete(lease);
    },
    async undo(caller, limits, lease) {
      const s = callers.get(caller);
      if (!s) return;
      s.leases.delete(lease);
      if (limits.rpm !== undefined) {
        const t = now();
        s.requests = { level: Math.min(limits.rpm, levelAt(s.requests, limits.rpm, t) + 1), at: t };
      }
    },
    async charge(caller, limits, charge: TokenCharge, day) {
      const s = state(caller);
      const total = charge.promptTokens + charge.completionTokens;
      if (limits.tpm !== undefined && total > 0) {
        const t = now();
        s.tokens = { level: levelAt(s.tokens, limits.tpm, t) - total, at: t };
      }
      if (s.day !== day) {
        s.day = day;
        s.usage.clear();
      }
      const add = (field: string, n: number) =>
        s.usage.set(`${field}:${charge.model}`, (s.usage.get(`${field}:${charge.model}`) ?? 0) + n);
      add("requests", 1);
      add("prompt", charge.promptTokens);
      add("completion", charge.completionTokens);
      add("estimated", charge.estimated ? total : 0);
    },
    async report(caller, limits, day): Promise<StoredUsage> {
      const s = callers.get(caller);
      const t = now();
      const left = (cap: number, bucket: Bucket | undefined) => {
        const level = levelAt(bucket, cap, t);
        return { limit: cap, remaining: Math.max(0, Math.floor(level)), fullInMs: msUntil(level, cap, cap) };
      };
      return {
        models: s && s.day === day ? usageFromFields(s.usage) : [],
        ...(limits.streams !== undefined && { streams: { limit: limits.streams, open: s?.leases.size ?? 0 } }),
        ...(limits.rpm !== undefined && { rpm: left(limits.rpm, s?.requests) }),
        ...(limits.tpm !== undefined && { tpm: left(limits.tpm, s?.tokens) }),
      };
    },
    async close() {
      callers.clear();
    },
  };
}
