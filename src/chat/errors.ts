// One table from every way a stream can fail to the gRPC status the caller gets (and, through
// Envoy's convert_grpc_status, the HTTP status). Messages are written here, never copied from
// an exception, except an upstream's own 4xx explanation with secrets scrubbed.
import { status } from "@grpc/grpc-js";
import {
  StreamStopped,
  UpstreamAborted,
  UpstreamHttpError,
  UpstreamProtocolError,
  UpstreamUnreachable,
} from "../upstream/errors.js";

/** A call refused before it became a stream. `detail` is the caller-facing reason for bad input. */
export class CallRefused extends Error {
  constructor(
    readonly why:
      | "invalid"
      | "concurrency"
      | "draining"
      | "not_found"
      | "busy"
      | "unavailable"
      | "resume_full"
      | "resume_unavailable",
    readonly detail: string,
  ) {
    super(`call refused: ${why}`);
    this.name = "CallRefused";
  }
}

export interface GatewayStatus {
  code: status;
  details: string;
  /** A short label for logs and metrics: which row of the table matched. */
  cause: string;
  /** Seconds the caller should wait before retrying, when the upstream said. */
  retryAfterSeconds?: number;
  /**
   * Nothing of the call was done, and another replica would take it at once: sent as gRPC's
   * `grpc-retry-pushback-ms: 0` (gRFC A6, "retry now"), which Envoy's retry policy matches to try
   * another replica. Only the draining refusal says so; an upstream's UNAVAILABLE does not, since
   * another replica would ask the same upstream again.
   */
  retryElsewhere?: true;
}

export function toGatewayStatus(error: unknown, secrets: readonly string[] = []): GatewayStatus {
  if (error instanceof CallRefused) return refusedStatus(error);
  if (error instanceof StreamStopped) return stoppedStatus(error);
  if (error instanceof UpstreamProtocolError) return protocolStatus(error);
  if (error instanceof UpstreamAborted) {
    return { code: status.CANCELLED, details: "cancelled", cause: "cancelled" };
  }
  if (error instanceof UpstreamUnreachable) {
    return error.kind === "timeout"
      ? { code: status.UNAVAILABLE, details: "upstream did not answer in time", cause: "upstream_timeout" }
      : { code: status.UNAVAILABLE, details: "upstream unreachable", cause: "upstream_unreachable" };
  }
  if (error instanceof UpstreamHttpError) return upstreamAnswerStatus(error, secrets);
  return { code: status.INTERNAL, details: "internal error", cause: "internal" };
}

function refusedStatus(error: CallRefused): GatewayStatus {
  switch (error.why) {
    case "invalid":
      return { code: status.INVALID_ARGUMENT, details: error.detail, cause: "invalid_request" };
    case "not_found":
      return { code: status.NOT_FOUND, details: error.detail, cause: "not_found" };
    case "unavailable":
      return { code: status.UNAVAILABLE, details: error.detail, cause: "conversation_store" };
    case "busy":
      return { code: status.FAILED_PRECONDITION, details: error.detail, cause: "conversation_busy" };
    case "concurrency":
      return { code: status.RESOURCE_EXHAUSTED, details: error.detail, cause: "concurrency_limit" };
    case "draining":
      return {
        code: status.UNAVAILABLE,
        details: "gateway is shutting down; retry",
        cause: "draining",
        retryElsewhere: true,
      };
    case "resume_full":
      return { code: status.RESOURCE_EXHAUSTED, details: error.detail, cause: "resume_full" };
    case "resume_unavailable":
      return { code: status.UNAVAILABLE, details: error.detail, cause: "resume_store" };
  }
}

function stoppedStatus(error: StreamStopped): GatewayStatus {
  const seconds = (error.afterMs / 1000).toFixed(1);
  switch (error.why) {
    case "cancelled":
      return { code: status.CANCELLED, details: "cancelled by the caller", cause: "cancelled" };
    case "deadline":
      return { code: status.DEADLINE_EXCEEDED, details: "deadline exceeded", cause: "deadline" };
    case "idle":
      return { code: status.UNAVAILABLE, details: `upstream stalled: no data for ${seconds}s`, cause: "upstream_idle" };
    case "first-token":
      return {
        code: status.UNAVAILABLE,
        details: `upstream stalled before the first token: no token for ${seconds}s`,
        cause: "upstream_first_token",
      };
    case "max-duration":
      return {
        code: status.DEADLINE_EXCEEDED,
        details: `stream exceeded the gateway's maximum duration of ${seconds}s`,
        cause: "max_duration",
      };
    case "shutdown":
      return { code: status.UNAVAILABLE, details: "gateway is shutting down; retry", cause: "shutdown" };
    case "abandoned":
      // A resumable stream nobody resumed within RESUME_GRACE_MS: `afterMs` is that grace.
      return {
        code: status.CANCELLED,
        details: `no caller attached for ${seconds}s: generation stopped`,
        cause: "abandoned",
      };
    case "store":
      return { code: status.UNAVAILABLE, details: "resumable stream store failed mid-stream", cause: "resume_store" };
  }
}

function protocolStatus(error: UpstreamProtocolError): GatewayStatus {
  switch (error.kind) {
    case "cut":
      return { code: status.UNAVAILABLE, details: "upstream connection lost mid-stream", cause: "upstream_cut" };
    case "unfinished":
      return {
        code: status.UNAVAILABLE,
        details: "upstream ended the stream without finishing",
        cause: "upstream_cut",
      };
    case "malformed":
      return { code: status.INTERNAL, details: "upstream sent malformed data", cause: "upstream_malformed" };
  }
}

/** The upstream answered with an error status, or an error event in its stream. */
function upstreamAnswerStatus(error: UpstreamHttpError, secrets: readonly string[]): GatewayStatus {
  const said = upstreamMessage(error, secrets);
  switch (error.status) {
    case undefined:
      // An error event inside the SSE stream after the first token (before it, one with a status
      // it stands for carries that status and takes that status's row).
      return { code: status.UNAVAILABLE, details: `upstream failed mid-stream${said}`, cause: "upstream_stream_error" };
    case 400:
    case 422:
      return {
        code: status.INVALID_ARGUMENT,
        details: `upstream rejected the request${said}`,
        cause: "upstream_invalid",
      };
    case 401:
    case 403:
      // The gateway's own credentials are wrong: the caller can do nothing about it, and the
      // upstream's message may quote part of the key.
      return { code: status.INTERNAL, details: "upstream refused the gateway's credentials", cause: "upstream_auth" };
    case 404:
      return {
        code: status.NOT_FOUND,
        details: `upstream has no such model or route${said}`,
        cause: "upstream_not_found",
      };
    case 408:
      return { code: status.DEADLINE_EXCEEDED, details: "upstream timed out", cause: "upstream_timeout" };
    case 429: {
      const retryAfter = error.retryAfterSeconds;
      return {
        code: status.RESOURCE_EXHAUSTED,
        details: `upstream rate limit reached${retryAfter === undefined ? "" : `; retry after ${retryAfter}s`}`,
        cause: "upstream_rate_limited",
        ...(retryAfter !== undefined && { retryAfterSeconds: retryAfter }),
      };
    }
    default:
      if (error.status >= 500) {
        return { code: status.UNAVAILABLE, details: `upstream error ${error.status}`, cause: "upstream_5xx" };
      }
      return { code: status.INTERNAL, details: `upstream answered ${error.status}`, cause: "upstream_other" };
  }
}

/** gRPC's server pushback trailer (gRFC A6); envoy.yaml's retry policy matches it by name. */
export const RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms";

function upstreamMessage(error: UpstreamHttpError, secrets: readonly string[]): string {
  const raw = error.upstreamMessage;
  if (!raw) return "";
  // The configured keys, and anything shaped like an OpenAI-style key, never reach the caller.
  let text = raw.replace(/\bsk-[A-Za-z0-9_-]{6,}/g, "[redacted]");
  for (const secret of secrets) if (secret) text = text.split(secret).join("[redacted]");
  return `: ${text.slice(0, 300)}`;
}
