// Per-minute budgets as token buckets: a bucket holds up to `cap` (the per-minute limit) and fills
// at cap per minute, continuously. A request takes 1 from the requests bucket; a stream's tokens are
// taken from the tokens bucket when it ends, which may leave it below zero (a debt that the refill
// pays off before the caller's next request is let in). So a caller may burst up to its limit at
// once, and over any minute is held to about its limit, with no cliff at a window's edge; and the
// wait until the next request fits is exact, which is what `retry-after` says.
// The same arithmetic runs in Lua inside Redis (redis-scripts.ts); these functions are the
// in-process store's, and the reference for the scripts.

const MINUTE_MS = 60_000;

export interface Bucket {
  level: number;
  /** When `level` was written, in milliseconds. */
  at: number;
}

/** The bucket's level at `now`: what was left, plus the refill since, at most the cap. A bucket never written is full. */
export function levelAt(bucket: Bucket | undefined, cap: number, now: number): number {
  if (!bucket) return cap;
  return Math.min(cap, bucket.level + ((now - bucket.at) * cap) / MINUTE_MS);
}

/** Milliseconds until a bucket at `level` holds `need` (0 when it does). */
export function msUntil(level: number, need: number, cap: number): number {
  return level >= need ? 0 : Math.ceil(((need - level) * MINUTE_MS) / cap);
}
