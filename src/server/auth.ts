// Caller auth: with caller keys configured, every call except health checks and reflection must
// carry `authorization: Bearer <key>` (gRPC metadata, or the HTTP header that Envoy forwards as
// metadata). A missing or unknown key ends the call with UNAUTHENTICATED (HTTP 401 through Envoy).
// Keys are compared as SHA-256 digests with crypto.timingSafeEqual, against every configured key,
// so the time taken tells nothing about which key (or how much of one) matched. The caller's name,
// never its key, goes on through `Callers` (callers.ts): to the budget interceptor (src/limits/),
// which holds the caller to its limits, and to the handlers, for logs and metrics.
import { timingSafeEqual } from "node:crypto";
import { status, ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import { sha256, type CallerKey } from "./caller-keys.js";
import type { Callers } from "./callers.js";
import { errorTrailers } from "../chat/status-details.js";

/** Services anyone may call: load balancers and grpcurl must work without a key. */
const OPEN_SERVICES = [
  "/grpc.health.v1.Health/",
  "/grpc.reflection.v1.ServerReflection/",
  "/grpc.reflection.v1alpha.ServerReflection/",
];

export interface CallerAuth {
  readonly interceptor: ServerInterceptor;
}

export interface CallerAuthOptions {
  /** A call refused here, for metrics. */
  onRefused?: (path: string, responseStream: boolean, code: status, caller: string | undefined) => void;
}

export function createCallerAuth(
  keys: readonly CallerKey[],
  callers: Callers,
  options: CallerAuthOptions = {},
): CallerAuth {
  function identify(header: string | undefined): CallerKey | undefined {
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
    if (presented === undefined) return undefined;
    const digest = sha256(presented);
    let found: CallerKey | undefined;
    for (const key of keys) {
      // No early exit: every key is compared on every call.
      if (timingSafeEqual(digest, key.digest) && found === undefined) found = key;
    }
    return found;
  }

  const interceptor: ServerInterceptor = (method, call) => {
    if (OPEN_SERVICES.some((prefix) => method.path.startsWith(prefix))) return new ServerInterceptingCall(call);
    const refuse = (code: status, details: string, requestId: unknown) => {
      options.onRefused?.(method.path, method.responseStream, code, undefined);
      const trailers = errorTrailers(
        { code, details, cause: "unauthenticated" },
        { requestId: typeof requestId === "string" ? requestId.slice(0, 128) : undefined },
      );
      call.sendStatus({ code, details, metadata: trailers });
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const header = metadata.get("authorization")[0];
            const key = identify(header === undefined ? undefined : String(header));
            const requestId = metadata.get("x-request-id")[0];
            if (!key) {
              // Says what is wrong without repeating what was sent.
              refuse(
                status.UNAUTHENTICATED,
                header === undefined ? "missing caller key: send `authorization: Bearer <key>`" : "unknown caller key",
                requestId,
              );
              return;
            }
            // The key stops here; only the caller's name goes further.
            metadata.remove("authorization");
            callers.set(metadata, key.name);
            nextMetadata(metadata);
          },
        });
      },
    });
  };

  return { interceptor };
}
