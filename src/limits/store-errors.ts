// Log lines for a limits store that fails: at most one line per operation every 10 s, with the
// number of failures since the last line. A Redis that is down fails every call and every reconnect
// attempt; one line per failure would flood the log exactly when it is read. The metrics count
// every failure.
import type { Logger } from "pino";

const WINDOW_MS = 10_000;

export function createStoreErrorLog(
  logger: Logger,
  failureMode: string,
  /** Never to be logged (REDIS_URL's password), scrubbed from error messages as a second line of defence. */
  secrets: readonly string[] = [],
): (operation: string, error: unknown, allowed?: boolean) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (operation, error, allowed) => {
    const now = Date.now();
    const entry = last.get(operation);
    if (entry && now - entry.at < WINDOW_MS) {
      entry.suppressed++;
      return;
    }
    last.set(operation, { at: now, suppressed: 0 });
    logger.warn(
      {
        operation,
        // The error's own words (connection refused, timed out).
        error: scrub(error instanceof Error ? error.message : String(error), secrets),
        failureMode,
        ...(allowed !== undefined && { call: allowed ? "let in unchecked" : "refused" }),
        ...(entry && entry.suppressed > 0 && { suppressed: entry.suppressed }),
      },
      "limits store failed",
    );
  };
}

function scrub(text: string, secrets: readonly string[]): string {
  for (const secret of secrets) if (secret) text = text.split(secret).join("[redacted]");
  return text;
}
