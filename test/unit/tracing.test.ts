// Propagation without an OTLP endpoint: each stream gets a new span id (and, with no caller's
// trace, a new trace id), random and never repeated, past the random pool's refills.
import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { propagatingTracing } from "../../src/observability/tracing.js";

describe("propagatingTracing", () => {
  it("gives every stream its own trace and span ids, across many pool refills", () => {
    const tracing = propagatingTracing();
    const traces = new Set<string>();
    const spans = new Set<string>();
    for (let i = 0; i < 2_000; i++) {
      const span = tracing.start(new Metadata(), "m");
      const [version, traceId, spanId, flags] = span.traceparent.split("-");
      expect([version, flags]).toEqual(["00", "00"]);
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(spanId).toMatch(/^[0-9a-f]{16}$/);
      expect(span.traceId).toBe(traceId);
      traces.add(traceId!);
      spans.add(spanId!);
    }
    expect(traces.size).toBe(2_000);
    expect(spans.size).toBe(2_000);
  });

  it("keeps the caller's trace id and flags, with a new span id of its own", () => {
    const metadata = new Metadata();
    metadata.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    const span = propagatingTracing().start(metadata, "m");
    expect(span.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-(?!00f067aa0ba902b7)[0-9a-f]{16}-01$/);
  });
});
