// W3C trace context: the caller's `traceparent`/`tracestate` (gRPC metadata, or HTTP headers that
// Envoy passes on as metadata) continue into the upstream request, with the gateway as a span in
// between. Without an OTLP endpoint nothing is recorded or sent: the gateway only makes a span id.
// With OTEL_EXPORTER_OTLP_ENDPOINT set, the OpenTelemetry SDK is loaded (lazily: it is not needed
// otherwise) and each stream is exported as a server span. Both read the caller's headers with
// OpenTelemetry's own W3C propagator (tracing-shared.ts; @opentelemetry/core, about 1 MB of heap
// at start-up), so they accept and refuse the same `traceparent`s.
import { randomFillSync } from "node:crypto";
import { ROOT_CONTEXT, trace, TraceFlags, type SpanContext } from "@opentelemetry/api";
import type { Metadata } from "@grpc/grpc-js";
import { metadataGetter, propagator, type Tracing } from "./tracing-shared.js";

export type { SpanOutcome, StreamSpan, Tracing } from "./tracing-shared.js";

/**
 * The caller's span context, when its `traceparent` is valid (the W3C rules: lowercase hex, a version
 * other than ff, trace and parent ids not all zeros), with its `tracestate`; else undefined.
 */
function callerSpanContext(metadata: Metadata): SpanContext | undefined {
  return trace.getSpanContext(propagator.extract(ROOT_CONTEXT, metadata, metadataGetter));
}

export function metadataText(metadata: Metadata, key: string): string | undefined {
  const value = metadata.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/** Propagation only: a new span id under the caller's trace, or a new (unsampled) trace. */
export function propagatingTracing(): Tracing {
  const random = new RandomHex();
  return {
    start(metadata) {
      const parent = callerSpanContext(metadata);
      const traceId = parent?.traceId ?? random.hex(16);
      const spanId = random.hex(8);
      // Written here rather than by propagator.inject, which would print flags of 0x10 and above
      // with three digits: the caller's flags are passed on as they came.
      const flags = (parent?.traceFlags ?? TraceFlags.NONE).toString(16).padStart(2, "0");
      return {
        traceparent: `00-${traceId}-${spanId}-${flags}`,
        tracestate: parent?.traceState?.serialize(),
        traceId,
        end() {},
      };
    },
    shutdown: () => Promise.resolve(),
  };
}

/**
 * Random ids from a pool filled 4 KiB at a time: two `randomBytes` calls per request cost more than
 * the rest of the span (the CSPRNG per call; 1.8% of the service's CPU per request in issue 24's
 * profile).
 */
class RandomHex {
  private readonly pool = Buffer.alloc(4096);
  private at = this.pool.length;

  hex(bytes: number): string {
    if (this.at + bytes > this.pool.length) {
      randomFillSync(this.pool);
      this.at = 0;
    }
    const text = this.pool.toString("hex", this.at, this.at + bytes);
    this.at += bytes;
    return text;
  }
}

export async function createTracing(options: {
  otlpEndpoint: string | undefined;
  serviceName: string;
}): Promise<Tracing> {
  if (!options.otlpEndpoint) return propagatingTracing();
  const { otlpTracing } = await import("./tracing-otlp.js");
  return otlpTracing(options.otlpEndpoint, options.serviceName);
}
