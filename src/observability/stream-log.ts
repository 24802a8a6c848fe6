// One structured log line per stream, at its end: who asked, what answered, how it went. Prompts
// and replies appear only when LOG_PROMPTS is on.
import { status } from "@grpc/grpc-js";
import type { Logger } from "./logger.js";
import type { StreamSummary } from "../chat/context.js";

/** Who asked and what answered: the call's side of the line, besides the stream's summary. */
export interface StreamLogFields {
  requestId: string;
  traceId: string;
  caller: string;
  upstream: string;
  /** Upstream HTTP requests repeated after a failure. */
  retries: number;
  /** Collected only when LOG_PROMPTS is on. */
  prompt: string | undefined;
  reply: string | undefined;
}

export function logStreamEnd(logger: Logger, s: StreamSummary, call: StreamLogFields): void {
  logger.info(
    {
      requestId: call.requestId,
      traceId: call.traceId,
      caller: call.caller,
      upstream: call.upstream,
      model: s.model,
      code: status[s.code],
      ...(s.cause !== undefined && { cause: s.cause }),
      deltas: s.deltas,
      ...(s.firstDeltaMs !== undefined && { ttftMs: round(s.firstDeltaMs) }),
      durationMs: round(s.durationMs),
      ...(s.finishReason !== undefined && { finishReason: s.finishReason }),
      ...(s.usage && { promptTokens: s.usage.promptTokens, completionTokens: s.usage.completionTokens }),
      ...(call.retries > 0 && { retries: call.retries }),
      peakBufferedChars: s.peakBufferedChars,
      ...(call.prompt !== undefined && { prompt: call.prompt }),
      ...(call.reply !== undefined && { reply: call.reply }),
    },
    "stream ended",
  );
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
