// When a resumable stream's connection drops, how often and how long a client tries to re-attach
// (docs/resuming-clients.md): the web client and the terminal client's gRPC transport share it.
// Runs in browsers and in Node: no Node imports.

export interface ReconnectOptions {
  /** Re-attach attempts in a row, after one drop, before giving up. Default 8. */
  maxAttempts?: number | undefined;
  /** Wait before the first attempt, doubled after each failed one (with jitter). Default 250 ms. */
  initialDelayMs?: number | undefined;
  /** The longest wait between two attempts. Default 5000 ms. */
  maxDelayMs?: number | undefined;
  /**
   * Give up once the connection has been lost this long, whatever the attempts. Default 55 s: under
   * the gateway's default RESUME_GRACE_MS (60 s), after which the generation is stopped anyway.
   */
  giveUpAfterMs?: number | undefined;
  /** Called before each attempt to re-attach (1 for the first after a drop), with what failed last. */
  onReconnecting?: ((attempt: number, cause: unknown) => void) | undefined;
  /** Called when a re-attached stream delivers again. */
  onReconnected?: (() => void) | undefined;
}

export const RECONNECT_DEFAULTS = {
  maxAttempts: 8,
  initialDelayMs: 250,
  maxDelayMs: 5_000,
  giveUpAfterMs: 55_000,
} as const;

/**
 * One outage's bookkeeping: from the drop until the stream delivers again. `next()` waits the
 * backoff and says whether to try again; `null` when the attempts or the time are spent.
 */
export class Outage {
  readonly since = Date.now();
  attempts = 0;
  private readonly settings: { [K in keyof typeof RECONNECT_DEFAULTS]: number };

  constructor(
    private readonly options: ReconnectOptions,
    private readonly network: Network = NO_NETWORK_EVENTS,
  ) {
    this.settings = {
      maxAttempts: options.maxAttempts ?? RECONNECT_DEFAULTS.maxAttempts,
      initialDelayMs: options.initialDelayMs ?? RECONNECT_DEFAULTS.initialDelayMs,
      maxDelayMs: options.maxDelayMs ?? RECONNECT_DEFAULTS.maxDelayMs,
      giveUpAfterMs: options.giveUpAfterMs ?? RECONNECT_DEFAULTS.giveUpAfterMs,
    };
  }

  /** Why the next attempt will not be made, or undefined when it may. */
  spent(): string | undefined {
    const { maxAttempts, giveUpAfterMs } = this.settings;
    if (this.attempts >= maxAttempts) return `gave up after ${this.attempts} attempts to resume`;
    if (Date.now() - this.since >= giveUpAfterMs)
      return `gave up resuming after ${Math.round((Date.now() - this.since) / 1000)} s`;
    return undefined;
  }

  /**
   * Waits before attempt `attempts + 1` (rejected by `signal`), and counts it. While the browser
   * says it is offline, an attempt could only fail: it waits for `online` instead (up to the
   * give-up time) and spends no attempt; `online` also cuts a backoff short.
   */
  async wait(cause: unknown, signal: AbortSignal): Promise<void> {
    const { initialDelayMs, maxDelayMs, giveUpAfterMs } = this.settings;
    const left = Math.max(0, this.since + giveUpAfterMs - Date.now());
    if (this.network.offline()) {
      this.options.onReconnecting?.(this.attempts + 1, cause);
      await sleep(left, signal, this.network.online);
      return;
    }
    const backoff = Math.min(maxDelayMs, initialDelayMs * 2 ** this.attempts);
    // Jitter (half to all of the backoff), so the clients a replica's restart cut off do not come
    // back in step; never past the give-up time.
    const delay = Math.min(left, backoff * (0.5 + Math.random() / 2));
    this.attempts++;
    this.options.onReconnecting?.(this.attempts, cause);
    await sleep(delay, signal, this.network.online);
  }
}

/** What the runtime says about the network: a browser's `navigator.onLine` and `online` event. */
export interface Network {
  offline(): boolean;
  /** Resolves when the network is back (never, where nothing says so); `signal` stops listening. */
  online(signal: AbortSignal): Promise<void>;
}

const NO_NETWORK_EVENTS: Network = { offline: () => false, online: () => new Promise(() => undefined) };

function sleep(ms: number, signal: AbortSignal, wake?: (signal: AbortSignal) => Promise<void>): Promise<void> {
  signal.throwIfAborted();
  const done = new AbortController();
  return new Promise<void>((resolve, reject) => {
    const finish = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      done.abort();
    };
    const onAbort = () => {
      finish();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      finish();
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
    wake?.(done.signal).then(
      () => {
        if (done.signal.aborted) return;
        finish();
        resolve();
      },
      () => undefined,
    );
  });
}
