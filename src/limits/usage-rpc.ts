// GetUsage: the calling caller key's usage today and what is left of its limits. The caller is the
// one the auth interceptor named (with caller keys off, "anonymous"). It spends no budget; when the
// limits store cannot be read it answers UNAVAILABLE, whatever the failure mode for streams.
import { status, type handleUnaryCall, type Metadata } from "@grpc/grpc-js";
import type { Budget, GetUsageRequest, GetUsageResponse } from "../contract/chat.js";
import type { CallerBudgets, UsageReport } from "./budgets.js";
import type { BudgetLeft } from "./store.js";

export function getUsageHandler(
  budgets: CallerBudgets,
  callerOf: (metadata: Metadata) => string | undefined,
): handleUnaryCall<GetUsageRequest, GetUsageResponse> {
  return (call, callback) => {
    const caller = callerOf(call.metadata) || "anonymous";
    budgets.report(caller).then(
      (report) => callback(null, toResponse(report)),
      () =>
        callback({
          code: status.UNAVAILABLE,
          details: "usage cannot be read now (the limits store is unreachable); retry",
        }),
    );
  };
}

function toResponse(report: UsageReport): GetUsageResponse {
  const budget = (b: BudgetLeft): Budget => ({
    limit: b.limit,
    remaining: b.remaining,
    fullInSeconds: Math.ceil(b.fullInMs / 1000),
  });
  return {
    caller: report.caller,
    since: report.since,
    models: report.models.map((m) => ({
      model: m.model,
      requests: BigInt(m.requests),
      promptTokens: BigInt(m.promptTokens),
      completionTokens: BigInt(m.completionTokens),
      totalTokens: BigInt(m.promptTokens + m.completionTokens),
      estimatedTokens: BigInt(m.estimatedTokens),
    })),
    streams: report.streams && {
      limit: report.streams.limit,
      remaining: Math.max(0, report.streams.limit - report.streams.open),
      fullInSeconds: 0,
    },
    requestsPerMinute: report.rpm && budget(report.rpm),
    tokensPerMinute: report.tpm && budget(report.tpm),
  };
}
