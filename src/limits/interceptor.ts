// Holds chat streams to their caller's budget: a grpc-js server interceptor after the auth
// interceptor (which names the caller; `callerOf` reads the name). A Chat call is admitted before
// its request is read and releases its lease when its status is sent or it is cancelled, however
// it ends; other methods (ListModels, GetUsage) pass. A refusal is a trailers-only RESOURCE_EXHAUSTED (HTTP 429
// through Envoy) with `retry-after` in its metadata, which Envoy turns into the HTTP header; with
// the store unreachable and the failure mode closed, UNAVAILABLE (503) with `retry-after: 1`. Both
// carry the error details every other failure carries (ErrorInfo, RetryInfo, x-request-id).
import { status, ServerInterceptingCall, type Metadata, type ServerInterceptor } from "@grpc/grpc-js";
import { errorTrailers, REQUEST_ID_KEY } from "../chat/status-details.js";
import type { Admitted, CallerBudgets, Refused } from "./budgets.js";

export const CHAT_PATH = "/chat.v1.ChatService/Chat";
/** The methods that open a model stream, each held to the caller's budget: Chat, and the OpenAI API's. */
export const STREAM_PATHS: ReadonlySet<string> = new Set([
  CHAT_PATH,
  "/chat.v1.OpenAIService/CreateChatCompletion",
  "/chat.v1.OpenAIService/CreateResponse",
]);

/** The refusal's cause in logs and metrics, by the limit reached. */
export const REFUSAL_CAUSES: Record<Refused["limit"], string> = {
  streams: "caller_stream_limit",
  rpm: "caller_rpm_limit",
  tpm: "caller_tpm_limit",
  unavailable: "limits_unavailable",
};

export interface BudgetInterceptorOptions {
  /** The caller key's name the auth interceptor found for a call (undefined: anonymous). */
  callerOf: (metadata: Metadata) => string | undefined;
  /** A call refused here, for logs and metrics. */
  onRefused?: (
    path: string,
    responseStream: boolean,
    code: status,
    cause: string,
    caller: string,
    details: string,
  ) => void;
}

export function budgetInterceptor(budgets: CallerBudgets, options: BudgetInterceptorOptions): ServerInterceptor {
  return (method, call) => {
    if (!STREAM_PATHS.has(method.path)) return new ServerInterceptingCall(call);
    let admitted: Admitted | undefined;
    let cancelled = false;
    const release = () => {
      admitted?.release();
      admitted = undefined;
    };
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const caller = options.callerOf(metadata) ?? "anonymous";
            const requestId = metadata.get(REQUEST_ID_KEY)[0];
            if (!budgets.limited(caller)) {
              // Counted as open, with no store to ask: nothing to wait for.
              admitted = budgets.count(caller);
              nextMetadata(metadata);
              return;
            }
            budgets.admit(caller).then(
              (outcome) => {
                if (outcome.ok) {
                  admitted = outcome;
                  if (cancelled) return release();
                  nextMetadata(metadata);
                  return;
                }
                const code = outcome.limit === "unavailable" ? status.UNAVAILABLE : status.RESOURCE_EXHAUSTED;
                const cause = REFUSAL_CAUSES[outcome.limit];
                options.onRefused?.(method.path, method.responseStream, code, cause, caller, outcome.details);
                if (cancelled) return;
                const refusal = { code, details: outcome.details, cause, retryAfterSeconds: outcome.retryAfterSeconds };
                const trailers = errorTrailers(refusal, {
                  requestId: typeof requestId === "string" ? requestId.slice(0, 128) : undefined,
                });
                call.sendStatus({ code, details: outcome.details, metadata: trailers });
              },
              // admit never rejects (store failures are its failure mode's to decide): a bug, but the
              // call still gets an answer.
              () =>
                call.sendStatus({
                  code: status.INTERNAL,
                  details: "internal error",
                  metadata: errorTrailers({ code: status.INTERNAL, details: "internal error", cause: "internal" }),
                }),
            );
          },
          onCancel() {
            cancelled = true;
            release();
          },
        });
      },
      sendStatus(s, next) {
        release();
        next(s);
      },
    });
  };
}
