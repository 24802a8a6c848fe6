// The terminal client's exit status, one per kind of failure, so a script can tell "fix the request"
// from "try again later" without reading the message. The table in docs/api.md is this one.
import { GrpcCode as status, grpcCodeName } from "../web/errors.js";

export const EXIT = {
  /** The reply finished (`finish` event). */
  ok: 0,
  /** Any other failure: INTERNAL, UNKNOWN, DATA_LOSS, a bug. */
  failed: 1,
  /** The command line itself: an unknown flag, no prompt. */
  usage: 2,
  /** The request was refused as it is (400, 404, ...): change it before trying again. */
  rejected: 3,
  /** No key, or a key the gateway does not accept (401, 403). */
  denied: 4,
  /** Over a rate or concurrency limit (429): try again later, after retry-after when given. */
  rateLimited: 5,
  /** The gateway or its upstream is unreachable, draining or too slow (503, 504): try again. */
  unavailable: 6,
  /** Interrupted (Ctrl-C): the call was cancelled. 128 + SIGINT, as shells report it. */
  interrupted: 130,
  /** Whoever read stdout went away (`| head`): the call was cancelled. 128 + SIGPIPE. */
  brokenPipe: 141,
} as const;

/** The exit status for a call that ended with this gRPC status code. */
export function exitCodeFor(code: number): number {
  switch (code) {
    case status.OK:
      return EXIT.ok;
    case status.INVALID_ARGUMENT:
    case status.NOT_FOUND:
    case status.FAILED_PRECONDITION:
    case status.OUT_OF_RANGE:
    case status.UNIMPLEMENTED:
    case status.ALREADY_EXISTS:
      return EXIT.rejected;
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return EXIT.denied;
    case status.RESOURCE_EXHAUSTED:
      return EXIT.rateLimited;
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.ABORTED:
      return EXIT.unavailable;
    default:
      return EXIT.failed;
  }
}

/** "INVALID_ARGUMENT" for 3. */
export const statusName = grpcCodeName;
