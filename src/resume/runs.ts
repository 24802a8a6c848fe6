// The generations of resumable streams running in this process, each detached from the call that
// started it: it runs while any caller is attached, and for `graceMs` after the last one left
// (then it is stopped as abandoned), unless a caller cancels it first. The generation itself (the
// upstream loop, src/chat/service.ts) is told to stop through `stop`; this unit keeps who is
// attached, where each reader is, and the one grace timer per run.
//
// Readers attached here also hold the generation back, as a plain stream's caller does: past
// MAX_READER_LAG events ahead of the slowest of them, the generation waits for it (`behind`,
// `caughtUp`), so a live reader is never overtaken by the log's per-stream bound. With nobody
// attached here the generation runs freely (readers through another replica do not hold it back).
export type RunStop = "cancelled" | "abandoned";

/** Events a generation may run ahead of the slowest reader attached in this process. */
export const MAX_READER_LAG = 256;

export interface Attached {
  /** The reader has written everything up to `sequence` to its caller. */
  at(sequence: number): void;
  /** The reader is gone (once; later calls do nothing). */
  detach(): void;
}

export interface RunHandle {
  /** A caller reads the stream: until it detaches, the grace does not run. */
  attach(): Attached;
  /** Whether the generation, having just written `sequence`, is too far ahead of a reader here. */
  behind(sequence: number): boolean;
  /** Resolves once no reader here is more than half the lag behind `sequence`; rejects when `signal` aborts. */
  caughtUp(sequence: number, signal: AbortSignal): Promise<void>;
  /** The generation has ended: forget it. */
  close(): void;
}

export class Runs {
  private readonly running = new Map<string, Run>();

  constructor(
    private readonly graceMs: number,
    /** Whether a reader in another process holds the stream (EventLog.attachedElsewhere). */
    private readonly attachedElsewhere: (streamId: string) => Promise<boolean> = async () => false,
  ) {}

  get size(): number {
    return this.running.size;
  }

  /** A new generation, stopped through `stop` when cancelled or abandoned. */
  register(streamId: string, stop: (why: RunStop, afterMs: number) => void): RunHandle {
    const run = new Run(this.graceMs, stop, () => this.attachedElsewhere(streamId).catch(() => false));
    this.running.set(streamId, run);
    return {
      attach: () => run.attach(),
      behind: (sequence) => run.behind(sequence),
      caughtUp: (sequence, signal) => run.caughtUp(sequence, signal),
      close: () => {
        run.close();
        this.running.delete(streamId);
      },
    };
  }

  /** A caller reads a stream: undefined when its generation does not run here (ended, or elsewhere). */
  attach(streamId: string): Attached | undefined {
    return this.running.get(streamId)?.attach();
  }

  /** Stops the stream's generation at once; false when it does not run here. */
  cancel(streamId: string): boolean {
    const run = this.running.get(streamId);
    run?.cancel();
    return run !== undefined;
  }
}

class Run {
  /** Each attached reader's last written position. */
  private readonly readers = new Map<symbol, number>();
  private graceTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The generation waiting for readers to catch up, if it is. */
  private waiting: (() => void) | undefined;

  constructor(
    private readonly graceMs: number,
    private readonly stop: (why: RunStop, afterMs: number) => void,
    private readonly attachedElsewhere: () => Promise<boolean>,
  ) {
    // Nobody attached yet counts as nobody attached.
    this.detached();
  }

  attach(): Attached {
    const key = Symbol("reader");
    this.readers.set(key, 0);
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    return {
      at: (sequence) => {
        if (!this.readers.has(key)) return;
        this.readers.set(key, sequence);
        this.waiting?.();
      },
      detach: () => {
        if (!this.readers.delete(key)) return;
        this.waiting?.();
        if (this.readers.size === 0) this.detached();
      },
    };
  }

  behind(sequence: number): boolean {
    return this.readers.size > 0 && sequence - this.slowest() > MAX_READER_LAG;
  }

  caughtUp(sequence: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (signal.aborted) return finish(() => reject(signal.reason as Error));
        if (this.readers.size === 0 || sequence - this.slowest() <= MAX_READER_LAG / 2) finish(resolve);
      };
      const finish = (settle: () => void) => {
        this.waiting = undefined;
        signal.removeEventListener("abort", check);
        settle();
      };
      this.waiting = check;
      signal.addEventListener("abort", check);
      check();
    });
  }

  cancel(): void {
    this.stop("cancelled", 0);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.graceTimer);
  }

  private slowest(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const at of this.readers.values()) if (at < min) min = at;
    return min;
  }

  private detached(): void {
    this.graceTimer = setTimeout(async () => {
      // A caller reading through another replica holds it too: look again one grace later.
      const elsewhere = await this.attachedElsewhere();
      if (this.readers.size > 0 || this.closed) return;
      if (elsewhere) this.detached();
      else this.stop("abandoned", this.graceMs);
    }, this.graceMs);
  }
}
