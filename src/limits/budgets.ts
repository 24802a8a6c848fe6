// Caller budgets: what each caller key may use (streams at once, requests and tokens per minute),
// checked when a chat stream starts and charged when it ends, in a store that is this process
// (single replica) or Redis (every replica). When the store fails, the configured choice decides:
// `open` lets calls in unchecked, `closed` refuses them; either way the call gets its answer within
// the store's timeout, and the failure is counted and logged (rate-limited) by `onStoreError`.
// A call refused or let in unchecked that way keeps nothing in the store, however late the store
// gets to its check: the check carries its deadline and takes nothing past it, and an "admitted"
// that arrives after the deadline is undone at once (see `admit`).
import { randomUUID } from "node:crypto";
import type { CallerLimits, LimitName, LimitStore, StoredUsage, TokenCharge } from "./store.js";

export type { CallerLimits } from "./store.js";

export type StoreFailureMode = "open" | "closed";

export type StoreOperation = "admit" | "release" | "charge" | "usage";

export interface CallerBudgetsOptions {
  /** Each caller key's limits, by caller name; a caller not named here has none. */
  limits: ReadonlyMap<string, CallerLimits>;
  store: LimitStore;
  onStoreError: StoreFailureMode;
  /** How long a store operation may take before it counts as failed. */
  timeoutMs: number;
  /** A store operation failed; for admit, `allowed` says what the failure mode made of the call. */
  onError?: (operation: StoreOperation, error: unknown, allowed?: boolean) => void;
  /** How long each store check took, answered or failed. */
  onChecked?: (seconds: number) => void;
  /** Milliseconds since the epoch; the UTC day of usage comes from it. */
  now?: () => number;
}

/** A stream let in: `release` gives its lease back when it ends (once; later calls do nothing). */
export interface Admitted {
  ok: true;
  release(): void;
}

export interface Refused {
  ok: false;
  /** The limit reached, or `unavailable` when the store failed and the failure mode is closed. */
  limit: LimitName | "unavailable";
  /** Whole seconds, at least 1: what `retry-after` says. */
  retryAfterSeconds: number;
  /** The caller-facing reason. */
  details: string;
}

export interface UsageReport extends StoredUsage {
  caller: string;
  /** Start of the UTC day the usage counts. */
  since: Date;
}

export interface CallerBudgets {
  /** `memory` or `redis`. */
  readonly store: LimitStore["kind"];
  /** Whether `caller` has any limit (calls of callers without one never wait for the store). */
  limited(caller: string): boolean;
  /** Checks the caller's limits and takes what a stream takes (a lease, a request). Never rejects. */
  admit(caller: string): Promise<Admitted | Refused>;
  /** Counts a stream of a caller without limits as open, asking no store. */
  count(caller: string): Admitted;
  /** Charges a finished stream's tokens to its caller; never throws (a failure goes to onError). */
  charge(caller: string, charge: TokenCharge): void;
  /** The caller's usage today and what is left of each of its limits; throws when the store fails. */
  report(caller: string): Promise<UsageReport>;
  /** Streams this process has let in and not yet released, per caller. */
  active(): ReadonlyMap<string, number>;
  close(): Promise<void>;
}

export class StoreTimeout extends Error {
  constructor(ms: number) {
    super(`limits store did not answer within ${ms} ms`);
    this.name = "StoreTimeout";
  }
}

const NO_LIMITS: CallerLimits = {};

// Longer than most functions here: a factory whose short methods (admit, count, charge, report)
// share the store, the limits and the failure mode; each reads alone.
export function createCallerBudgets(options: CallerBudgetsOptions): CallerBudgets {
  const { store, timeoutMs } = options;
  const now = options.now ?? Date.now;
  const open = new Map<string, number>();
  const limitsOf = (caller: string) => options.limits.get(caller) ?? NO_LIMITS;
  const day = () => new Date(now()).toISOString().slice(0, 10);

  /** Counts the stream as open in this process until `release`, which also runs `then` (once). */
  const track = (caller: string, then?: () => void): Admitted => {
    open.set(caller, (open.get(caller) ?? 0) + 1);
    let released = false;
    return {
      ok: true,
      release() {
        if (released) return;
        released = true;
        const left = (open.get(caller) ?? 1) - 1;
        if (left > 0) open.set(caller, left);
        else open.delete(caller);
        then?.();
      },
    };
  };
  const giveBack = (caller: string, leaseId: string) =>
    withDeadline(store.release(caller, leaseId), timeoutMs).catch((error: unknown) =>
      options.onError?.("release", error),
    );

  return {
    store: store.kind,
    limited: (caller) => Object.keys(limitsOf(caller)).length > 0,
    count: (caller) => track(caller),
    async admit(caller) {
      const limits = limitsOf(caller);
      if (Object.keys(limits).length === 0) return track(caller);
      const leaseId = randomUUID();
      const started = performance.now();
      // The store takes nothing for a check it runs after this; the wait below ends no earlier.
      const pending = store.admit(caller, limits, leaseId, started + timeoutMs);
      let admission;
      try {
        admission = await withDeadline(pending, timeoutMs);
        options.onChecked?.((performance.now() - started) / 1000);
      } catch (error) {
        options.onChecked?.((performance.now() - started) / 1000);
        // A check that ran in time may still answer "admitted" after this (its answer was slow to
        // come back): the call has been refused or let in unchecked, so what the check took (lease,
        // request) goes back at once. A failure to give it back is counted as a lost release; the
        // lease then expires with its TTL.
        pending.then(
          (late) =>
            late.ok &&
            void withDeadline(store.undo(caller, limits, leaseId), timeoutMs).catch((undoError: unknown) =>
              options.onError?.("release", undoError),
            ),
          () => undefined,
        );
        const allowed = options.onStoreError === "open";
        options.onError?.("admit", error, allowed);
        if (allowed) return track(caller);
        return {
          ok: false,
          limit: "unavailable",
          retryAfterSeconds: 1,
          details: "caller limits cannot be checked now (their store is unreachable); retry",
        };
      }
      if (!admission.ok) {
        const seconds = Math.max(1, Math.ceil(admission.retryAfterMs / 1000));
        return {
          ok: false,
          limit: admission.limit,
          retryAfterSeconds: seconds,
          details: refusal(caller, limits, admission.limit, admission.open, seconds),
        };
      }
      return track(caller, () => void giveBack(caller, leaseId));
    },
    charge(caller, charge) {
      withDeadline(store.charge(caller, limitsOf(caller), charge, day()), timeoutMs).catch((error: unknown) =>
        options.onError?.("charge", error),
      );
    },
    async report(caller) {
      const today = day();
      try {
        const stored = await withDeadline(store.report(caller, limitsOf(caller), today), timeoutMs);
        return { caller, since: new Date(`${today}T00:00:00Z`), ...stored };
      } catch (error) {
        options.onError?.("usage", error);
        throw error;
      }
    },
    active: () => open,
    close: () => store.close(),
  };
}

function refusal(caller: string, limits: CallerLimits, limit: LimitName, open: number, seconds: number): string {
  switch (limit) {
    case "streams":
      return `caller "${caller}" has ${open} streams open, its limit; retry when one ends`;
    case "rpm":
      return `caller "${caller}" reached its limit of ${limits.rpm} requests per minute; retry after ${seconds}s`;
    case "tpm":
      return `caller "${caller}" used its ${limits.tpm} tokens per minute; retry after ${seconds}s`;
  }
}

/** The promise, or a StoreTimeout after `ms`: nothing waits on the store longer than that. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeout(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
