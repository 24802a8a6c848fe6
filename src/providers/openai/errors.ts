// The openai SDK's errors → the port's provider-neutral classes (src/upstream/errors.ts), at the
// provider's boundary: nothing past src/providers/openai/ knows the SDK's classes.
import OpenAI from "openai";
import {
  retryAfterSeconds,
  StreamStopped,
  UpstreamAborted,
  UpstreamHttpError,
  UpstreamProtocolError,
  UpstreamUnreachable,
} from "../../upstream/errors.js";

/**
 * An error the upstream reported inside its SSE stream before the first token, carrying the HTTP
 * status it stands for (see stream-error.ts): retried like the same error sent as that HTTP status.
 */
export class UpstreamStreamError extends OpenAI.APIError {}

/** The port's class for an error the SDK (or this provider) threw; the port's own pass as they are. */
export function toUpstreamError(error: unknown): unknown {
  if (error instanceof StreamStopped || error instanceof UpstreamProtocolError) return error;
  if (error instanceof OpenAI.APIUserAbortError) return new UpstreamAborted();
  // The timeout class is a connection error too: tested first.
  if (error instanceof OpenAI.APIConnectionTimeoutError) return new UpstreamUnreachable("timeout");
  if (error instanceof OpenAI.APIConnectionError) return new UpstreamUnreachable("unreachable");
  if (error instanceof OpenAI.APIError) {
    const body = error.error as { message?: unknown } | undefined;
    const message = typeof body?.message === "string" ? body.message : "";
    return new UpstreamHttpError(error.status, message, retryAfterSeconds(error.headers?.get("retry-after")));
  }
  return error;
}
