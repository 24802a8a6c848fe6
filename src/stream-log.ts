// One structured log line per stream, at its end. Prompts and replies are never logged.
import { status } from "@grpc/grpc-js";
import type { Logger } from "./logger.js";
import type { StreamSummary } from "./chat/service.js";

export function logStreamEnd(logger: Logger, s: StreamSummary): void {
  const requestId = s.metadata.get("x-request-id")[0];
  logger.info(
    {
      ...(requestId !== undefined && { requestId: String(requestId) }),
      model: s.model,
      code: status[s.code],
      ...(s.cause !== undefined && { cause: s.cause }),
      deltas: s.deltas,
      ...(s.firstDeltaMs !== undefined && { ttftMs: round(s.firstDeltaMs) }),
      durationMs: round(s.durationMs),
      ...(s.finishReason !== undefined && { finishReason: s.finishReason }),
      ...(s.usage && { promptTokens: s.usage.promptTokens, completionTokens: s.usage.completionTokens }),
      peakBufferedChars: s.peakBufferedChars,
    },
    "stream ended",
  );
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
