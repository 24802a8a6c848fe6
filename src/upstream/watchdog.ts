// The upstream's idle watchdog: one per stream, one timer. The three bounds on an upstream compose in
// this order:
//   1. while waiting for response headers: the SDK's timeout (UPSTREAM_TIMEOUT_MS) per attempt, and
//      its retries with their backoff and any `retry-after` (UPSTREAM_MAX_RETRIES); no watchdog;
//   2. then the fallback upstream (FALLBACK_BASE_URL), again from 1;
//   3. from an attempt's response headers on, the watchdog (UPSTREAM_IDLE_TIMEOUT_MS): silence between
//      chunks. Every chunk counts (role-only, usage-only, empty, reasoning, tool-call fragments), and
//      it is paused while the gateway waits for a slow caller, which is not the upstream's fault.
// It aborts only the current attempt, so a stall before the first token can still go to the fallback.
//
// It stays out of the data path: a chunk costs one clock read, and the timer checks lazily, re-arming
// for the time left instead of being reset per chunk. Later timers fit the same shape: a first-token
// limit is a different limit until the first chunk; heartbeats to the caller during upstream silence
// are a callback at a shorter interval.
import { StreamStopped } from "../errors.js";

/** What an upstream tells the watchdog, for each attempt it makes. */
export interface UpstreamWatch {
  /** A new attempt: the returned signal aborts with `parent`'s reason, or with a stall once armed. */
  begin(parent: AbortSignal): AbortSignal;
  /** The attempt's response headers arrived: from now on, silence counts. */
  opened(): void;
  /** A chunk of any kind arrived. */
  chunk(): void;
  /** The attempt is over: ended, failed or abandoned. */
  end(): void;
}

export class IdleWatchdog implements UpstreamWatch {
  /** performance.now() of the last chunk (or of the last resume): when the current silence began. */
  lastChunkAt = 0;
  private attempt: AbortController | undefined;
  private parent: AbortSignal | undefined;
  private timer: NodeJS.Timeout | undefined;
  private watching = false;
  private paused = false;

  /** `idleMs`: the longest silence allowed (0: none; chunks are still timed). */
  constructor(private readonly idleMs: number) {}

  begin(parent: AbortSignal): AbortSignal {
    this.end();
    const attempt = new AbortController();
    this.attempt = attempt;
    this.parent = parent;
    if (parent.aborted) attempt.abort(parent.reason);
    else parent.addEventListener("abort", this.parentAborted);
    return attempt.signal;
  }

  opened(): void {
    this.lastChunkAt = performance.now();
    this.watching = true;
    if (!this.paused) this.arm(this.idleMs);
  }

  chunk(): void {
    this.lastChunkAt = performance.now();
  }

  end(): void {
    this.watching = false;
    this.disarm();
    this.parent?.removeEventListener("abort", this.parentAborted);
    this.parent = undefined;
    this.attempt = undefined;
  }

  /** The gateway is waiting for the caller: the upstream's silence does not count meanwhile. */
  pause(): void {
    this.paused = true;
    this.disarm();
  }

  resume(): void {
    this.paused = false;
    this.lastChunkAt = performance.now();
    if (this.watching) this.arm(this.idleMs);
  }

  private arm(ms: number): void {
    if (this.idleMs <= 0 || this.timer !== undefined) return;
    this.timer = setTimeout(this.check, ms);
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly check = (): void => {
    this.timer = undefined;
    if (!this.watching || this.paused) return;
    const quiet = performance.now() - this.lastChunkAt;
    if (quiet >= this.idleMs) this.attempt?.abort(new StreamStopped("idle", this.idleMs));
    else this.arm(this.idleMs - quiet);
  };

  private readonly parentAborted = (): void => {
    this.attempt?.abort(this.parent?.reason);
  };
}
