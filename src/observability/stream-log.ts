// One structured log line per stream, at its end: who asked, what answered, how it went. Prompts
// and replies appear only when LOG_PROMPTS is on.
import { status } from "@grpc/grpc-js";
import type { Logger } from "./logger.js";
import type { StreamSummary } from "../chat/service.js";
import type { StreamContext } from "../server/stream-context.js";

export function logStreamEnd(logger: Logger, s: StreamSummary, context?: StreamContext): void {
  const requestId = context?.requestId ?? s.metadata.get("x-request-id")[0];
  logger.info(
    {
      ...(requestId !== undefined && { requestId: String(requestId) }),
      ...(context && { traceId: context.span.traceId, caller: context.caller, upstream: context.upstream }),
      model: s.model,
      code: status[s.code],
      ...(s.cause !== undefined && { cause: s.cause }),
      deltas: s.deltas,
      ...(s.firstDeltaMs !== undefined && { ttftMs: round(s.firstDeltaMs) }),
      durationMs: round(s.durationMs),
      ...(s.finishReason !== undefined && { finishReason: s.finishReason }),
      ...(s.usage && { promptTokens: s.usage.promptTokens, completionTokens: s.usage.completionTokens }),
      ...(context && context.retries > 0 && { retries: context.retries }),
      peakBufferedChars: s.peakBufferedChars,
      ...(context?.prompt !== undefined && { prompt: context.prompt }),
      ...(context?.reply !== undefined && { reply: context.reply }),
    },
    "stream ended",
  );
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
