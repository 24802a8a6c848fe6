// Caller auth: with caller keys configured, every call except health checks and reflection must
// carry `authorization: Bearer <key>` (gRPC metadata, or the HTTP header that Envoy forwards as
// metadata). A missing or unknown key ends the call with UNAUTHENTICATED (HTTP 401 through Envoy);
// a caller over its concurrent-stream limit gets RESOURCE_EXHAUSTED (HTTP 429). Keys are compared
// as SHA-256 digests with crypto.timingSafeEqual, against every configured key, so the time taken
// tells nothing about which key (or how much of one) matched. The caller's name, never its key,
// goes on to the handler as metadata for logs and metrics.
import { timingSafeEqual } from "node:crypto";
import { status, ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import { sha256, type CallerKey } from "./caller-keys.js";
import { CALLER_METADATA_KEY } from "./stream-context.js";
import { errorTrailers } from "./status-details.js";

/** Services anyone may call: load balancers and grpcurl must work without a key. */
const OPEN_SERVICES = ["/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

export interface CallerAuth {
  readonly interceptor: ServerInterceptor;
  /** Streams open now per caller name. */
  active(): ReadonlyMap<string, number>;
}

export interface CallerAuthOptions {
  /** A call refused here, for metrics. */
  onRefused?: (path: string, responseStream: boolean, code: status, caller: string | undefined) => void;
}

export function createCallerAuth(keys: readonly CallerKey[], options: CallerAuthOptions = {}): CallerAuth {
  const open = new Map<string, number>();

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
    if (OPEN_SERVICES.some((prefix) => method.path.startsWith(prefix))) return stripCallerName(method, call);
    let holder: string | undefined;
    const release = () => {
      if (holder === undefined) return;
      const left = (open.get(holder) ?? 1) - 1;
      if (left > 0) open.set(holder, left);
      else open.delete(holder);
      holder = undefined;
    };
    const refuse = (code: status, details: string, requestId: unknown, caller?: string) => {
      options.onRefused?.(method.path, method.responseStream, code, caller);
      const cause = code === status.UNAUTHENTICATED ? "unauthenticated" : "caller_stream_limit";
      call.sendStatus({ code, details, metadata: errorTrailers({ code, details, cause }, { requestId: typeof requestId === "string" ? requestId.slice(0, 128) : undefined }) });
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
            const current = open.get(key.name) ?? 0;
            if (key.maxStreams !== undefined && current >= key.maxStreams) {
              refuse(status.RESOURCE_EXHAUSTED, `caller "${key.name}" has ${current} streams open, its limit; retry when one ends`, requestId, key.name);
              return;
            }
            open.set(key.name, current + 1);
            holder = key.name;
            // The key stops here; only the caller's name goes further.
            metadata.remove("authorization");
            metadata.set(CALLER_METADATA_KEY, key.name);
            nextMetadata(metadata);
          },
          onCancel: release,
        });
      },
      sendStatus(s, next) {
        release();
        next(s);
      },
    });
  };

  return { interceptor, active: () => open };
}

/** Nobody may claim a caller name by sending the internal metadata key themselves. */
export const stripCallerName: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    start(next) {
      next({
        onReceiveMetadata(metadata, nextMetadata) {
          metadata.remove(CALLER_METADATA_KEY);
          nextMetadata(metadata);
        },
      });
    },
  });
