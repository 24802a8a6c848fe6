// W3C trace context: the caller's `traceparent`/`tracestate` (gRPC metadata, or HTTP headers that
// Envoy passes on as metadata) continue into the upstream request, with the gateway as a span in
// between. Without an OTLP endpoint nothing is recorded or sent: the gateway only makes a span id.
// With OTEL_EXPORTER_OTLP_ENDPOINT set, the OpenTelemetry SDK is loaded (lazily: it is not needed
// otherwise) and each stream is exported as a server span.
import { randomBytes } from "node:crypto";
import { status as grpcStatus, type Metadata } from "@grpc/grpc-js";

export interface StreamSpan {
  /** The header value for the upstream request: this trace, with the gateway's span as parent. */
  readonly traceparent: string;
  readonly tracestate: string | undefined;
  readonly traceId: string;
  end(outcome: SpanOutcome): void;
}

export interface SpanOutcome {
  code: grpcStatus;
  cause: string | undefined;
  /** Undefined for a call refused before it reached any upstream. */
  upstream: string | undefined;
  caller: string;
  inputTokens: number | undefined;
  outputTokens: number | undefined;
  finishReason: string | undefined;
}

export interface Tracing {
  start(metadata: Metadata, model: string): StreamSpan;
  /** Sends what is buffered and stops. */
  shutdown(): Promise<void>;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The trace id and flags of a valid `traceparent`, else undefined. */
export function parseTraceparent(value: string | undefined): { traceId: string; flags: string } | undefined {
  const match = value === undefined ? null : TRACEPARENT.exec(value.trim().toLowerCase());
  if (!match?.[2] || !match[4] || match[1] === "ff" || /^0+$/.test(match[2]) || /^0+$/.test(match[3] ?? "")) return undefined;
  return { traceId: match[2], flags: match[4] };
}

export function metadataText(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/** Propagation only: a new span id under the caller's trace, or a new (unsampled) trace. */
export function propagatingTracing(): Tracing {
  return {
    start(metadata) {
      const parent = parseTraceparent(metadataText(metadata, "traceparent"));
      const traceId = parent?.traceId ?? randomBytes(16).toString("hex");
      const spanId = randomBytes(8).toString("hex");
      return {
        traceparent: `00-${traceId}-${spanId}-${parent?.flags ?? "00"}`,
        tracestate: parent ? metadataText(metadata, "tracestate") : undefined,
        traceId,
        end() {},
      };
    },
    shutdown: () => Promise.resolve(),
  };
}

export async function createTracing(options: { otlpEndpoint: string | undefined; serviceName: string }): Promise<Tracing> {
  if (!options.otlpEndpoint) return propagatingTracing();
  const { otlpTracing } = await import("./tracing-otlp.js");
  return otlpTracing(options.otlpEndpoint, options.serviceName);
}
