// Each Chat call's context (chat/context.ts), made when the call arrives: its request id, the
// caller the auth interceptor found, a trace span, and the observer that turns what the handler
// reports into the stream's log line, metrics, budget charge and span end. The bookkeeping of a
// stream lives here, in one place, out of the handler's data path.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { CallContext, CallObserver, Refusal, StreamSummary } from "../chat/context.js";
import type { AnyCall } from "../chat/outbox.js";
import type { ChatRequest, ChatResponse } from "../contract/chat.js";
import type { CallerBudgets } from "../limits/budgets.js";
import { promptBytes, sentBytes, streamTokens } from "../limits/estimate.js";
import type { Logger } from "../observability/logger.js";
import type { GatewayMetrics } from "../observability/metrics.js";
import type { RefusalFields } from "../observability/refusal-log.js";
import { logStreamEnd } from "../observability/stream-log.js";
import { metadataText, type StreamSpan, type Tracing } from "../observability/tracing.js";
import type { Callers } from "./callers.js";

export interface CallContextDeps {
  logger: Logger;
  metrics: GatewayMetrics;
  tracing: Tracing;
  budgets: CallerBudgets;
  callers: Callers;
  logRefusal: (fields: RefusalFields) => void;
  defaultModel: string;
  /** Models the configuration lists: metric labels name only these ("other" for the rest). */
  knownModels: ReadonlySet<string>;
  /** Collect the prompt and the reply for the log line (LOG_PROMPTS). */
  logPrompts: boolean;
}

/** Longest prompt or reply kept for the log, in characters. */
const MAX_LOGGED_TEXT = 16 * 1024;

/** Each call's context; `request` is the call's request as chat.v1 reads it (decoded from an API shape's body). */
export function callContexts(deps: CallContextDeps): (call: AnyCall, request: ChatRequest) => CallContext {
  return (call, request) => {
    const requestId = metadataText(call.metadata, "x-request-id")?.slice(0, 128) || randomUUID();
    const caller = deps.callers.of(call.metadata) ?? "anonymous";
    const span = deps.tracing.start(call.metadata, request.model || deps.defaultModel);
    const upstreamHeaders: Record<string, string> = { traceparent: span.traceparent, "x-request-id": requestId };
    if (span.tracestate) upstreamHeaders.tracestate = span.tracestate;
    return {
      requestId,
      upstreamHeaders,
      caller,
      observer: new StreamBookkeeping(deps, request, requestId, caller, span),
    };
  };
}

class StreamBookkeeping implements CallObserver {
  readonly sent: ((message: ChatResponse) => void) | undefined;
  private upstream = "default";
  private retries = 0;
  /** UTF-8 bytes of the model text sent to the caller: the tokens estimate when the upstream reports no usage. */
  private sentBytes = 0;
  private readonly promptBytes: number;
  private readonly prompt: string | undefined;
  private reply: string | undefined;

  constructor(
    private readonly deps: CallContextDeps,
    request: ChatRequest,
    private readonly requestId: string,
    private readonly caller: string,
    private readonly span: StreamSpan,
  ) {
    this.promptBytes = promptBytes(request);
    if (deps.logPrompts) {
      const { text, messages } = request;
      const turns = [...messages.map((m) => `${m.role}: ${m.content}`), ...(text ? [`user: ${text}`] : [])];
      this.prompt = turns.join("\n").slice(0, MAX_LOGGED_TEXT);
      this.reply = "";
      this.sent = (message) => {
        this.sentBytes += sentBytes(message);
        if (message.event?.$case === "delta" && this.reply !== undefined && this.reply.length < MAX_LOGGED_TEXT) {
          this.reply += message.event.value.text;
        }
      };
    } else {
      this.sent = (message) => {
        this.sentBytes += sentBytes(message);
      };
    }
  }

  routed(name: string): void {
    this.upstream = name;
  }

  fellBack(cause: string): void {
    this.deps.metrics.fallback(this.upstream, cause);
    this.upstream = "fallback";
  }

  retried(): void {
    this.retries++;
    this.deps.metrics.upstreamRetry(this.upstream);
  }

  refused(r: Refusal): void {
    const { metrics, logRefusal, knownModels } = this.deps;
    metrics.callRefused(r.code, r.cause, this.caller);
    logRefusal({
      requestId: this.requestId,
      traceId: this.span.traceId,
      caller: this.caller,
      model: knownModels.has(r.model) ? r.model : "other",
      code: status[r.code],
      cause: r.cause,
      message: r.details,
    });
    this.span.end({
      code: r.code,
      cause: r.cause,
      upstream: undefined,
      caller: this.caller,
      inputTokens: undefined,
      outputTokens: undefined,
      finishReason: undefined,
    });
  }

  ended(s: StreamSummary): void {
    const { logger, metrics, budgets, knownModels } = this.deps;
    const { caller, upstream } = this;
    logStreamEnd(logger, s, {
      requestId: this.requestId,
      traceId: this.span.traceId,
      caller,
      upstream,
      retries: this.retries,
      prompt: this.prompt,
      reply: this.reply,
    });
    const model = knownModels.has(s.model) ? s.model : "other";
    metrics.streamEnded(s, { model, upstream, caller });
    // What the stream used, charged to its caller's budget (and usage) after it ended.
    const tokens = streamTokens(s.usage, this.promptBytes, this.sentBytes);
    if (tokens) {
      metrics.tokensCharged(caller, model, tokens);
      budgets.charge(caller, { model, ...tokens });
    }
    this.span.end({
      code: s.code,
      cause: s.cause,
      upstream,
      caller,
      inputTokens: s.usage?.promptTokens,
      outputTokens: s.usage?.completionTokens,
      finishReason: s.finishReason,
    });
  }
}
