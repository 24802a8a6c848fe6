// The machine-readable side of an error status: google.rpc.Status in `grpc-status-details-bin`,
// with an ErrorInfo naming the cause (the error table's row, in UPPER_SNAKE) and, when the upstream
// said how long to wait, a RetryInfo. The status's code and message are the call's own, so a client
// reading either gets the same answer; Envoy's transcoder turns the Status into the JSON body of an
// HTTP error (`{"code", "message", "details": [...]}`).
import { Metadata, type status } from "@grpc/grpc-js";
import { Any, ErrorInfo, RetryInfo, Status } from "../contract/chat.js";
import { RETRY_PUSHBACK_HEADER } from "./errors.js";

/** ErrorInfo's domain for every error the gateway reports. */
export const ERROR_DOMAIN = "chat-gateway";
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
export const REQUEST_ID_KEY = "x-request-id";
/**
 * A resumable stream's id, in the response's headers (initial metadata) as well as on its first
 * event: Envoy's `http` route adds SSE `id:` lines to the streams that carry it, and only to them.
 */
export const STREAM_ID_KEY = "chat-stream-id";

export interface ErrorDescription {
  code: status;
  details: string;
  /** The error table's row, lower snake case (`upstream_rate_limited`). */
  cause: string;
  retryAfterSeconds?: number | undefined;
  /** Nothing was done and another replica would take the call at once (see GatewayStatus). */
  retryElsewhere?: true | undefined;
}

export interface ErrorContext {
  /** The request's id, sent back as `x-request-id`. */
  requestId?: string | undefined;
  /** The upstream the call had reached, when it reached one (ErrorInfo's `metadata.upstream`). */
  upstream?: string | undefined;
}

/** The encoded google.rpc.Status for an error. */
export function statusDetails(error: ErrorDescription, upstream?: string): Buffer {
  const info = ErrorInfo.encode({
    reason: error.cause.toUpperCase(),
    domain: ERROR_DOMAIN,
    metadata: upstream === undefined ? {} : { upstream },
  }).finish();
  const details = [Any.fromPartial({ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) })];
  if (error.retryAfterSeconds !== undefined) {
    const retry = RetryInfo.encode({ retryDelay: { seconds: BigInt(error.retryAfterSeconds), nanos: 0 } }).finish();
    details.push(Any.fromPartial({ typeUrl: "type.googleapis.com/google.rpc.RetryInfo", value: Buffer.from(retry) }));
  }
  return Buffer.from(Status.encode({ code: error.code, message: error.details, details }).finish());
}

/**
 * Trailing metadata of an error status: its details, `retry-after` when known, gRPC's pushback
 * "retry now" when another replica should take it, and the request id.
 */
export function errorTrailers(error: ErrorDescription, context: ErrorContext = {}): Metadata {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, statusDetails(error, context.upstream));
  if (error.retryAfterSeconds !== undefined) metadata.set("retry-after", String(error.retryAfterSeconds));
  if (error.retryElsewhere) metadata.set(RETRY_PUSHBACK_HEADER, "0");
  if (context.requestId) metadata.set(REQUEST_ID_KEY, context.requestId);
  return metadata;
}

/** Metadata carrying only the request id (response headers, and the trailers of a stream that ended well). */
export function requestIdMetadata(requestId: string | undefined): Metadata {
  const metadata = new Metadata();
  if (requestId) metadata.set(REQUEST_ID_KEY, requestId);
  return metadata;
}
