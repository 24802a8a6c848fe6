// The streams in flight, and their stop conditions: admission (the concurrency limit, refusing new
// streams once draining), one AbortSignal per stream that carries every reason to stop it (the
// caller cancelled, its deadline passed, the gateway's maximum duration, shutdown), and the drain
// that lets open streams finish within a grace period before stopping the rest.
import type { CallRefused } from "./errors.js";
import { StreamStopped } from "../upstream/errors.js";
import type { AnyCall as Call } from "./outbox.js";

export interface OpenStream {
  /** Aborted with a StreamStopped saying why, the first time any stop condition is met. */
  readonly signal: AbortSignal;
  /** The stream has ended, however: stop watching it. */
  close(): void;
}

export class OpenStreams {
  private readonly open = new Set<(why: StreamStopped["why"]) => void>();
  private draining = false;
  private allClosed: (() => void) | undefined;
  private drainEnd: Promise<void> | undefined;
  private drainStopAt = Infinity;
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: {
      maxConcurrentStreams: number;
      /** A stream still open after this long is ended (0: never). */
      maxStreamDurationMs: number;
    },
  ) {}

  get active(): number {
    return this.open.size;
  }

  /** Why a new stream may not start now, or undefined when it may. */
  refusal(): { why: CallRefused["why"]; detail: string } | undefined {
    if (this.draining) return { why: "draining", detail: "" };
    if (this.open.size >= this.limits.maxConcurrentStreams) {
      const limit = this.limits.maxConcurrentStreams;
      return { why: "concurrency", detail: `too many concurrent streams (limit ${limit}); retry later` };
    }
    return undefined;
  }

  /** Starts watching a new stream's stop conditions; `close()` it when the stream has ended. */
  start(call: Call, started: number): OpenStream {
    const stream = this.startDetached(started);
    const onCancelled = () => stream.stop(deadlinePassed(call) ? "deadline" : "cancelled");
    call.on("cancelled", onCancelled);
    return {
      signal: stream.signal,
      close: () => {
        // grpc-js emits 'cancelled' when the HTTP/2 stream closes, after a normal end too: aborting
        // then would build an error and abort a finished upstream request for nothing.
        call.off("cancelled", onCancelled);
        stream.close();
      },
    };
  }

  /**
   * A stream no call's end stops (a resumable stream's generation): stopped by the maximum
   * duration, shutdown, or `stop` (an explicit cancel, no caller attached for the grace).
   */
  startDetached(started: number): OpenStream & { stop(why: StreamStopped["why"], afterMs?: number): void } {
    const controller = new AbortController();
    const stop = (why: StreamStopped["why"], afterMs = performance.now() - started) => {
      if (!controller.signal.aborted) controller.abort(new StreamStopped(why, afterMs));
    };
    this.open.add(stop);
    const maxMs = this.limits.maxStreamDurationMs;
    const durationTimer = maxMs > 0 ? setTimeout(() => stop("max-duration", maxMs), maxMs) : undefined;
    return {
      signal: controller.signal,
      stop,
      close: () => {
        clearTimeout(durationTimer);
        this.open.delete(stop);
        if (this.open.size === 0) this.allClosed?.();
      },
    };
  }

  /**
   * Refuses new streams, lets the open ones finish for up to `graceMs`, then stops the rest (each
   * ends with an in-band error). Resolves when no stream is open.
   */
  drain(graceMs: number): Promise<void> {
    this.draining = true;
    // One drain however often it is asked for (SIGTERM then SIGINT, say): every caller waits for
    // the same end, and the earliest deadline asked for is the one kept.
    this.drainEnd ??= new Promise<void>((resolve) => {
      this.allClosed = resolve;
      if (this.open.size === 0) resolve();
    }).finally(() => clearTimeout(this.drainTimer));
    const stopAt = performance.now() + graceMs;
    if (this.open.size > 0 && stopAt < this.drainStopAt) {
      this.drainStopAt = stopAt;
      clearTimeout(this.drainTimer);
      this.drainTimer = setTimeout(() => {
        for (const stop of this.open) stop("shutdown");
      }, graceMs);
    }
    return this.drainEnd;
  }
}

function deadlinePassed(call: Call): boolean {
  const deadline = call.getDeadline();
  return (deadline instanceof Date ? deadline.getTime() : deadline) <= Date.now();
}
