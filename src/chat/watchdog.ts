// The stream's watchdog: one per stream, one timer, for the upstream's silences and the caller's
// heartbeats. The bounds on an upstream compose in this order:
//   1. while waiting for response headers: the SDK's timeout (UPSTREAM_TIMEOUT_MS) per attempt, and
//      its retries with their backoff and any `retry-after` (UPSTREAM_MAX_RETRIES); no watchdog;
//   2. then the fallback upstream (FALLBACK_BASE_URL), again from 1;
//   3. from an attempt's response headers to its first token (the first chunk carrying content:
//      text, reasoning, a refusal or a tool call), UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: a model may think
//      for minutes without a word, and content-free chunks (role, empty, usage) do not end the wait;
//   4. from the first token on, UPSTREAM_IDLE_TIMEOUT_MS: silence between chunks. Every chunk counts
//      (role-only, usage-only, empty, reasoning, tool-call fragments), and it is paused while the
//      gateway waits for a slow caller, which is not the upstream's fault.
// 3 and 4 abort only the current attempt, so a stall before the first token can still go to the
// fallback.
//
// Heartbeats are the caller's side: every HEARTBEAT_INTERVAL_MS without content from the upstream
// (from the stream's start, across attempts, retries and the fallback), `onHeartbeat` is told how
// long the stream has waited, so the caller (and every proxy on the way) sees that the stream is
// alive. They count as activity for nothing upstream-side, and stop while the gateway holds the
// upstream back for a slow caller (the caller is not idle then: it has data to read).
//
// It stays out of the data path: a chunk costs one clock read, and the timer checks lazily, re-arming
// for the earliest deadline instead of being reset per chunk.
import { StreamStopped } from "../upstream/errors.js";
import type { UpstreamWatch } from "../upstream/port.js";

export interface WatchdogLimits {
  /** The longest silence between chunks once the first token came (0: none). */
  idleMs: number;
  /** The longest wait from an attempt's response headers to its first token (0: none). */
  firstTokenMs: number;
  /** Silence after which the caller gets a heartbeat, and again every as long (0: no heartbeats). */
  heartbeatMs: number;
}

export class StreamWatchdog implements UpstreamWatch {
  /** performance.now() of the last chunk (or of the last resume): when the current silence began. */
  lastChunkAt = 0;
  /** performance.now() of the last content (or of the stream's start): what `waited` counts from. */
  private lastContentAt: number;
  /** When the caller last got something from the gateway's silence handling: content or a heartbeat. */
  private lastBeatAt: number;
  private openedAt = 0;
  private attempt: AbortController | undefined;
  private parent: AbortSignal | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  /** The current attempt has its response headers and is watched. */
  private watching = false;
  /** The current attempt has sent its first token. */
  private tokenSeen = false;
  private paused = false;
  private closed = false;
  /** The current attempt was just aborted as stalled. */
  private stalled = false;

  constructor(
    private readonly limits: WatchdogLimits,
    /** Told the stream's wait (ms since the last content, or since it started) at each heartbeat. */
    private readonly onHeartbeat?: (waitedMs: number) => void,
  ) {
    const now = performance.now();
    this.lastContentAt = now;
    this.lastBeatAt = now;
    this.arm();
  }

  begin(parent: AbortSignal): AbortSignal {
    this.end();
    const attempt = new AbortController();
    this.attempt = attempt;
    this.stalled = false;
    this.parent = parent;
    if (parent.aborted) attempt.abort(parent.reason);
    else parent.addEventListener("abort", this.parentAborted);
    return attempt.signal;
  }

  opened(): void {
    const now = performance.now();
    this.openedAt = now;
    this.lastChunkAt = now;
    this.watching = true;
    this.tokenSeen = false;
    this.arm();
  }

  chunk(events: number): void {
    const now = performance.now();
    this.lastChunkAt = now;
    if (events === 0) return;
    this.lastContentAt = now;
    this.lastBeatAt = now;
    if (!this.tokenSeen) {
      // From the first-token bound to the idle one, which may come sooner.
      this.tokenSeen = true;
      this.arm();
    }
  }

  end(): void {
    this.watching = false;
    this.parent?.removeEventListener("abort", this.parentAborted);
    this.parent = undefined;
    this.attempt = undefined;
  }

  /** The gateway is waiting for the caller: neither the upstream's silence nor the caller's counts meanwhile. */
  pause(): void {
    this.paused = true;
    this.disarm();
  }

  resume(): void {
    this.paused = false;
    const now = performance.now();
    this.lastChunkAt = now;
    this.lastBeatAt = now;
    this.arm();
  }

  /** The stream has ended: no more checks, no more heartbeats. */
  close(): void {
    this.closed = true;
    this.end();
    this.disarm();
  }

  /** When the current attempt counts as stalled: before its first token, or between chunks after it. */
  private stallAt(): number {
    if (!this.watching) return Infinity;
    const { idleMs, firstTokenMs } = this.limits;
    if (!this.tokenSeen) return firstTokenMs > 0 ? this.openedAt + firstTokenMs : Infinity;
    return idleMs > 0 ? this.lastChunkAt + idleMs : Infinity;
  }

  /** When the caller is due a heartbeat. */
  private beatAt(): number {
    return this.limits.heartbeatMs > 0 && this.onHeartbeat ? this.lastBeatAt + this.limits.heartbeatMs : Infinity;
  }

  /** The earliest time something is due: a stall of the current attempt, or a heartbeat. */
  private nextDeadline(): number {
    return this.paused || this.closed ? Infinity : Math.min(this.stallAt(), this.beatAt());
  }

  /** Makes sure the timer fires no later than the earliest deadline (it may fire earlier and look again). */
  private arm(): void {
    const at = this.nextDeadline();
    if (at >= this.timerAt) return;
    this.disarm();
    if (at === Infinity) return;
    this.timerAt = at;
    this.timer = setTimeout(this.check, Math.max(0, at - performance.now()));
  }

  private disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private readonly check = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.paused || this.closed) return;
    const now = performance.now();
    if (now >= this.stallAt()) {
      const { idleMs, firstTokenMs } = this.limits;
      this.stall(this.tokenSeen ? new StreamStopped("idle", idleMs) : new StreamStopped("first-token", firstTokenMs));
    }
    // A stall just ended this attempt: its error (or the fallback) comes next, not a heartbeat.
    if (!this.stalled && now >= this.beatAt()) {
      this.lastBeatAt = now;
      this.onHeartbeat?.(now - this.lastContentAt);
    }
    this.arm();
  };

  private stall(reason: StreamStopped): void {
    this.watching = false;
    this.stalled = true;
    this.attempt?.abort(reason);
  }

  private readonly parentAborted = (): void => {
    this.attempt?.abort(this.parent?.reason);
  };
}
