// Log lines for calls refused before they became a stream (bad input, limits, draining, caller keys).
// Rate-limited rather than sampled: refusals come in floods exactly when the process is already in
// trouble (a client in a retry loop, a burst over the concurrency limit, a drain), and one line per
// refusal would then cost the most; but a single refusal is usually the one worth reading (a client's
// bug), and 1-in-N sampling would most likely drop it. So each cause gets its first `perWindow` lines
// in every window, and the rest of the window is one line with how many were left out. The metrics
// count every refusal.
import type { Logger } from "./logger.js";

export interface RefusalFields {
  code: string;
  cause: string;
  /** The caller-facing reason, when there is more to say than the cause. */
  message?: string | undefined;
  requestId?: string | undefined;
  traceId?: string | undefined;
  caller?: string | undefined;
  model?: string | undefined;
}

export interface RefusalLogOptions {
  /** Lines per cause in each window. */
  perWindow?: number;
  windowMs?: number;
}

interface Window {
  start: number;
  logged: number;
  suppressed: number;
}

export function createRefusalLog(
  logger: Logger,
  { perWindow = 10, windowMs = 1000 }: RefusalLogOptions = {},
): (fields: RefusalFields) => void {
  const windows = new Map<string, Window>();
  return (fields) => {
    const now = Date.now();
    let window = windows.get(fields.cause);
    if (!window || now - window.start >= windowMs) {
      window = { start: now, logged: 0, suppressed: 0 };
      windows.set(fields.cause, window);
    }
    if (window.logged < perWindow) {
      window.logged++;
      logger.info(withoutUndefined(fields), "call refused");
      return;
    }
    if (window.suppressed++ > 0) return;
    const summarised = window;
    // Unref'd: a summary is not a reason to keep the process alive.
    setTimeout(
      () => {
        logger.info(
          { cause: fields.cause, suppressed: summarised.suppressed, windowMs },
          "calls refused, not logged one by one",
        );
      },
      summarised.start + windowMs - now,
    ).unref();
  };
}

function withoutUndefined(fields: RefusalFields): Record<string, string> {
  return Object.fromEntries(
    Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}
