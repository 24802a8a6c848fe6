// What tracing.ts (propagation only) and tracing-otlp.ts (exported spans) share: the interface the
// gateway traces through, and the reading of the caller's W3C trace context from grpc-js metadata
// with OpenTelemetry's propagator, so both accept and refuse the same `traceparent`s. Apart from
// tracing.ts, which loads tracing-otlp.ts, so that the two do not import each other.
import type { TextMapGetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { status as grpcStatus, Metadata } from "@grpc/grpc-js";

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

/** grpc-js metadata as OpenTelemetry's propagators read a carrier. */
export const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key).map(String);
    return values.length === 0 ? undefined : values;
  },
};

export const propagator = new W3CTraceContextPropagator();
