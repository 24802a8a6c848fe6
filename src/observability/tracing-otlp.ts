// The OpenTelemetry side of tracing.ts, loaded only when an OTLP endpoint is configured: one server
// span per stream, named and attributed after the GenAI semantic conventions, exported over
// OTLP/HTTP to `<endpoint>/v1/traces`.
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { status } from "@grpc/grpc-js";
import { metadataGetter, propagator, type Tracing } from "./tracing-shared.js";

export function otlpTracing(endpoint: string, serviceName: string): Tracing {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint.replace(/\/$/, "")}/v1/traces` })),
    ],
  });
  const tracer = provider.getTracer("chat-gateway");

  return {
    start(metadata, model) {
      const parent = propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
      const span = tracer.startSpan(
        `chat ${model}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "rpc.system": "grpc",
            "rpc.method": "Chat",
            "rpc.service": "chat.v1.ChatService",
          },
        },
        parent,
      );
      const carrier: Record<string, string> = {};
      propagator.inject(trace.setSpan(parent, span), carrier, { set: (c, k, v) => (c[k] = v) });
      return {
        traceparent: carrier.traceparent ?? "",
        tracestate: carrier.tracestate,
        traceId: span.spanContext().traceId,
        end(outcome) {
          span.setAttributes({
            "rpc.grpc.status_code": outcome.code,
            ...(outcome.upstream !== undefined && { "chat_gateway.upstream": outcome.upstream }),
            "chat_gateway.caller": outcome.caller,
            ...(outcome.inputTokens !== undefined && { "gen_ai.usage.input_tokens": outcome.inputTokens }),
            ...(outcome.outputTokens !== undefined && { "gen_ai.usage.output_tokens": outcome.outputTokens }),
            ...(outcome.finishReason !== undefined && { "gen_ai.response.finish_reasons": [outcome.finishReason] }),
            ...(outcome.cause !== undefined && { "error.type": outcome.cause }),
          });
          if (outcome.code !== status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: status[outcome.code] });
          span.end();
        },
      };
    },
    shutdown: () => provider.shutdown(),
  };
}
