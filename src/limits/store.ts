// What a limits store keeps for each caller key, in process (memory-store.ts) or in Redis shared by
// every replica (redis-store.ts): stream leases, the per-minute buckets, and tokens used per model
// per UTC day. Each operation is atomic in the store: a check and what it takes happen together.

/** A caller key's limits, from the caller keys file; a limit left out is no limit. */
export interface CallerLimits {
  /** Streams open at once, over every replica. */
  streams?: number;
  /** Chat requests per minute. */
  rpm?: number;
  /** Tokens (prompt + completion) per minute. */
  tpm?: number;
}

export type LimitName = keyof CallerLimits;

export type Admission =
  | { ok: true }
  | { ok: false; limit: LimitName /** Streams open, for `streams`. */; open: number; retryAfterMs: number };

/** Tokens one stream used, charged to its caller when it ends. */
export interface TokenCharge {
  /** The model as metrics name it (configured names, else `other`). */
  model: string;
  promptTokens: number;
  completionTokens: number;
  /** Whether the counts are the gateway's estimate (the upstream reported none). */
  estimated: boolean;
}

export interface ModelUsage {
  model: string;
  /** Streams charged. */
  requests: number;
  promptTokens: number;
  completionTokens: number;
  /** Of prompt + completion, the tokens the gateway estimated. */
  estimatedTokens: number;
}

export interface BudgetLeft {
  limit: number;
  remaining: number;
  /** Milliseconds until `remaining` is back to `limit`. */
  fullInMs: number;
}

export interface StoredUsage {
  /** Tokens used on `day`, by model. */
  models: ModelUsage[];
  streams?: { limit: number; open: number };
  rpm?: BudgetLeft;
  tpm?: BudgetLeft;
}

export interface LimitStore {
  /** `memory` or `redis`, for the start-up line and metrics. */
  readonly kind: "memory" | "redis";
  /**
   * Checks every limit the caller has and, only when all pass, takes a stream lease named `lease`
   * (with a streams limit) and one request (with rpm). The tokens limit is checked, not taken:
   * tokens are charged when the stream ends. `deadline` (on `performance.now()`'s clock) is when the
   * caller stops waiting: a check the store runs later takes nothing and rejects with CheckTooLate.
   */
  admit(caller: string, limits: CallerLimits, lease: string, deadline: number): Promise<Admission>;
  release(caller: string, lease: string): Promise<void>;
  /**
   * Gives back everything an admission that answered ok took (its lease, its request): for an
   * answer that came after its caller had stopped waiting.
   */
  undo(caller: string, limits: CallerLimits, lease: string): Promise<void>;
  /** Takes the stream's tokens from the caller's tokens bucket and adds them to `day`'s usage. */
  charge(caller: string, limits: CallerLimits, charge: TokenCharge, day: string): Promise<void>;
  report(caller: string, limits: CallerLimits, day: string): Promise<StoredUsage>;
  close(): Promise<void>;
}

/** A check the store ran after its deadline: it took nothing (its caller had already given up on it). */
export class CheckTooLate extends Error {
  constructor(msPast: number) {
    super(`limits store ran the check ${msPast} ms after its deadline, and took nothing`);
    this.name = "CheckTooLate";
  }
}

/** Usage fields as stored: `<field>:<model>`, the model last so it may hold any character. */
export const USAGE_FIELDS = ["requests", "prompt", "completion", "estimated"] as const;

export function usageFromFields(fields: Iterable<[string, number]>): ModelUsage[] {
  const byModel = new Map<string, ModelUsage>();
  for (const [field, value] of fields) {
    const cut = field.indexOf(":");
    const kind = field.slice(0, cut);
    const model = field.slice(cut + 1);
    let usage = byModel.get(model);
    if (!usage)
      byModel.set(model, (usage = { model, requests: 0, promptTokens: 0, completionTokens: 0, estimatedTokens: 0 }));
    if (kind === "requests") usage.requests = value;
    else if (kind === "prompt") usage.promptTokens = value;
    else if (kind === "completion") usage.completionTokens = value;
    else if (kind === "estimated") usage.estimatedTokens = value;
  }
  return [...byModel.values()].sort((a, b) => a.model.localeCompare(b.model));
}
