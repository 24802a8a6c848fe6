// A second upstream (another base URL and/or model) tried when the first fails before sending any
// text. Once text went out, nothing is retried anywhere: the caller would get it twice.
import {
  StreamStopped,
  UpstreamAborted,
  UpstreamHttpError,
  UpstreamProtocolError,
  UpstreamUnreachable,
} from "./errors.js";
import type { ChatUpstream, UpstreamBatch, UpstreamCall, UpstreamRequest } from "./port.js";

export interface FallbackOptions {
  /** The model to ask the fallback for; the request's model when absent. */
  model?: string | undefined;
  /** The error table's cause for an error (chat/errors.ts), told to the call's observer on a fallback. */
  causeOf: (error: unknown) => string;
}

export class FallbackUpstream implements ChatUpstream {
  constructor(
    private readonly primary: ChatUpstream,
    private readonly fallback: ChatUpstream,
    private readonly options: FallbackOptions,
  ) {}

  async *stream(request: UpstreamRequest, call: UpstreamCall): AsyncIterable<UpstreamBatch> {
    let started = false;
    try {
      for await (const batch of this.primary.stream(request, call)) {
        started = true;
        yield batch;
      }
      return;
    } catch (error: unknown) {
      if (started || call.signal.aborted || !worthAnotherUpstream(error)) throw error;
      call.observer.fellBack(this.options.causeOf(error));
    }
    yield* this.fallback.stream({ ...request, model: this.options.model ?? request.model }, call);
  }
}

/**
 * Failures of the upstream itself (unreachable, overloaded, broken, stalled), not of the request. The
 * caller saw nothing yet, so another upstream may still answer. Malformed data is not among them: an
 * upstream that speaks something else is a configuration error to surface, not to hide.
 */
function worthAnotherUpstream(error: unknown): boolean {
  if (error instanceof StreamStopped) return error.why === "idle" || error.why === "first-token";
  if (error instanceof UpstreamProtocolError) return error.kind !== "malformed";
  if (error instanceof UpstreamAborted) return false;
  if (error instanceof UpstreamUnreachable) return true; // includes timeouts
  if (error instanceof UpstreamHttpError) {
    // No status: an error event in the stream that did not say what it was.
    if (error.status === undefined) return true;
    return error.status === 408 || error.status === 429 || error.status >= 500;
  }
  return false;
}
