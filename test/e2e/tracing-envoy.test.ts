// W3C trace context from the caller to the upstream request (gRPC metadata, and HTTP headers through
// the real Envoy), request ids in the log line, and the optional OTLP export to a local collector.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Metadata, status } from "@grpc/grpc-js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { post, allEvents } from "../support/http.js";
import { startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function traced(traceparent: string, extra: Record<string, string> = {}): Metadata {
  const metadata = new Metadata();
  metadata.set("traceparent", traceparent);
  for (const [k, v] of Object.entries(extra)) metadata.set(k, v);
  return metadata;
}

describe("trace context propagation", () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
  });
  afterAll(() => harness?.close());
  const lastUpstreamHeaders = () => harness.upstream.requests.at(-1)?.headers ?? {};
  const lastLog = () => harness.logs.filter((l) => l.msg === "stream ended").at(-1) ?? {};

  it("continues the caller's trace into the upstream request, with the gateway's span as parent", async () => {
    const result = await collect(
      harness.client,
      { text: "hi" },
      traced(`00-${TRACE_ID}-${CALLER_SPAN}-01`, { tracestate: "vendor=abc", "x-request-id": "req-123" }),
    );
    expect(result.code).toBe(status.OK);
    const headers = lastUpstreamHeaders();
    const [, traceId, spanId, flags] = TRACEPARENT.exec(String(headers.traceparent)) ?? [];
    expect(traceId).toBe(TRACE_ID);
    expect(flags).toBe("01");
    expect(spanId).not.toBe(CALLER_SPAN);
    expect(headers.tracestate).toBe("vendor=abc");
    expect(headers["x-request-id"]).toBe("req-123");
    expect(lastLog()).toMatchObject({ requestId: "req-123", traceId: TRACE_ID });
  });

  it("starts a new trace and request id when the caller sends none, or an invalid traceparent", async () => {
    const invalid = [
      "00-not-a-trace-01",
      `00-${"0".repeat(32)}-${CALLER_SPAN}-01`,
      `00-${TRACE_ID}-${"0".repeat(16)}-01`,
      // Version ff is forbidden, and the ids are lowercase hex (W3C Trace Context).
      `ff-${TRACE_ID}-${CALLER_SPAN}-01`,
      `00-${TRACE_ID.toUpperCase()}-${CALLER_SPAN}-01`,
    ];
    for (const metadata of [
      new Metadata(),
      ...invalid.map((traceparent) => traced(traceparent, { tracestate: "vendor=abc" })),
    ]) {
      await collect(harness.client, { text: "hi" }, metadata);
      const headers = lastUpstreamHeaders();
      const [, traceId] = TRACEPARENT.exec(String(headers.traceparent)) ?? [];
      expect(traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(traceId).not.toBe("0".repeat(32));
      expect(headers.tracestate).toBeUndefined();
      const log = lastLog();
      expect(log.traceId).toBe(traceId);
      expect(log.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(headers["x-request-id"]).toBe(log.requestId);
    }
  });
});

describe("trace context through Envoy", () => {
  let harness: Harness;
  let envoy: RunningEnvoy;
  beforeAll(async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    envoy = await startEnvoy({ servicePort: harness.gateway.port, httpHost: "127.0.0.1", stderr: "ignore" });
  });
  afterAll(async () => {
    await envoy?.stop();
    await harness?.close();
  });

  it("takes traceparent from the HTTP request and Envoy's x-request-id into the log", async () => {
    const response = await post(envoy.httpPort, "/chat", JSON.stringify({ text: "hi" }), {
      "content-type": "application/json",
      traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01`,
    });
    expect(response.status).toBe(200);
    await allEvents(response);
    const upstreamTrace = String(harness.upstream.requests.at(-1)?.headers.traceparent);
    expect(TRACEPARENT.exec(upstreamTrace)?.[1]).toBe(TRACE_ID);
    const log = harness.logs.find((l) => l.msg === "stream ended");
    // Envoy generated the request id (generate_request_id: true) and passed it on.
    expect(log?.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(harness.upstream.requests.at(-1)?.headers["x-request-id"]).toBe(log?.requestId);
  });
});

describe("OTLP export", () => {
  it("is off by default, and when configured sends a span per stream to the collector", async () => {
    const bodies: string[] = [];
    const collector = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        if (req.url === "/v1/traces") bodies.push(body);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    collector.listen(0, "127.0.0.1");
    await once(collector, "listening");
    const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
    const harness = await startHarness({
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: "gw-under-test" },
      upstream: { reply: () => ({ tokens: ["ok"] }) },
    });
    try {
      const result = await collect(harness.client, { text: "hi" }, traced(`00-${TRACE_ID}-${CALLER_SPAN}-01`));
      expect(result.code).toBe(status.OK);
      // Shutting down flushes the batch.
      await harness.gateway.shutdown(0);
      const all = bodies.join("\n");
      expect(all).toContain(TRACE_ID);
      expect(all).toContain("chat fake-model");
      expect(all).toContain("gw-under-test");
      expect(all).toContain("gen_ai.usage.output_tokens");
      const upstreamTrace = String(harness.upstream.requests.at(-1)?.headers.traceparent);
      // The span the upstream was told about is the exported one.
      expect(all).toContain(TRACEPARENT.exec(upstreamTrace)?.[2]);
    } finally {
      await harness.close();
      collector.close();
    }
  });
});
