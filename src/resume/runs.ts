// The generations of resumable streams running in this process, each detached from the call that
// started it: it runs while any caller is attached, and for `graceMs` after the last one left
// (then it is stopped as abandoned), unless a caller cancels it first. The generation itself (the
// upstream loop, src/chat/service.ts) is told to stop through `stop`; this unit keeps only who is
// attached and the one grace timer per run.
export type RunStop = "cancelled" | "abandoned";

export interface RunHandle {
  /** A caller reads the stream: until the returned function is called, the grace does not run. */
  attach(): () => void;
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
      close: () => {
        run.close();
        this.running.delete(streamId);
      },
    };
  }

  /** A caller reads a stream: undefined when its generation does not run here (ended, or elsewhere). */
  attach(streamId: string): (() => void) | undefined {
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
  private attached = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly graceMs: number,
    private readonly stop: (why: RunStop, afterMs: number) => void,
    private readonly attachedElsewhere: () => Promise<boolean>,
  ) {
    // Nobody attached yet counts as nobody attached.
    this.detached();
  }

  attach(): () => void {
    this.attached++;
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    let once = false;
    return () => {
      if (once) return;
      once = true;
      if (--this.attached === 0) this.detached();
    };
  }

  cancel(): void {
    this.stop("cancelled", 0);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.graceTimer);
  }

  private detached(): void {
    this.graceTimer = setTimeout(async () => {
      // A caller reading through another replica holds it too: look again one grace later.
      const elsewhere = await this.attachedElsewhere();
      if (this.attached > 0 || this.closed) return;
      if (elsewhere) this.detached();
      else this.stop("abandoned", this.graceMs);
    }, this.graceMs);
  }
}
