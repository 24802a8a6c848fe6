// How an upstream fails, in provider-neutral classes: each provider turns its SDK's or wire
// format's errors into these at its boundary, and the chat service's error table (chat/errors.ts)
// maps them to gRPC statuses. Messages are never shown to a caller as they are.

/**
 * Why the gateway itself stopped a stream; carried as the AbortSignal's reason. `afterMs` is the
 * limit that was reached (first-token, idle, max-duration), or the stream's age.
 */
export class StreamStopped extends Error {
  constructor(
    readonly why:
      | "cancelled"
      | "deadline"
      | "first-token"
      | "idle"
      | "max-duration"
      | "shutdown"
      | "abandoned"
      | "store",
    readonly afterMs: number,
  ) {
    super(`stream stopped: ${why}`);
    this.name = "StreamStopped";
  }
}

/** The upstream's stream broke: cut mid-body, unparseable or of the wrong shape, or ended without a finish reason. */
export class UpstreamProtocolError extends Error {
  constructor(readonly kind: "cut" | "malformed" | "unfinished") {
    super(`upstream stream ${kind}`);
    this.name = "UpstreamProtocolError";
  }
}

/** No answer: the upstream could not be reached, or did not answer within its timeout. */
export class UpstreamUnreachable extends Error {
  constructor(readonly kind: "unreachable" | "timeout") {
    super(`upstream ${kind}`);
    this.name = "UpstreamUnreachable";
  }
}

/** The request was aborted before the upstream answered (the call's signal). */
export class UpstreamAborted extends Error {
  constructor() {
    super("upstream request aborted");
    this.name = "UpstreamAborted";
  }
}

/**
 * The upstream answered with an error: an HTTP status, or an error event inside its stream. An event
 * after the first token has no status; one before it carries the status it stands for, and is
 * retried and sent to the fallback like that status.
 */
export class UpstreamHttpError extends Error {
  constructor(
    readonly status: number | undefined,
    /** The upstream's own explanation, unscrubbed: the error table removes secrets before showing it. */
    readonly upstreamMessage: string,
    /** The upstream's `retry-after`, in seconds, when it sent one. */
    readonly retryAfterSeconds: number | undefined,
  ) {
    super(status === undefined ? "upstream error event" : `upstream answered ${status}`);
    this.name = "UpstreamHttpError";
  }
}

/** `retry-after` as seconds: a number of seconds or an HTTP date. */
export function retryAfterSeconds(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
