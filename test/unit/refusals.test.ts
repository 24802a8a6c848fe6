// Calls refused before they became a stream (bad input, the concurrency limit, draining, caller keys)
// leave a trace: counted by code and cause, logged (rate-limited), and their trace span ended.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Metadata, status } from "@grpc/grpc-js";
import { createLogger } from "../../src/observability/logger.js";
import { createRefusalLog } from "../../src/observability/refusal-log.js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { scrape } from "../support/metrics.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  vi.useRealTimers();
});

const withRequestId = (id: string) => {
  const metadata = new Metadata();
  metadata.set("x-request-id", id);
  return metadata;
};

describe("refused calls", () => {
  it("are counted by code and cause and logged one line each, with the reason", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      env: { METRICS_HOST: "127.0.0.1", METRICS_PORT: "0", MAX_CONCURRENT_STREAMS: "1" },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate : undefined) }) },
    });
    expect((await collect(harness.client, { text: " " }, withRequestId("r-invalid"))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    const held = collect(harness.client, { text: "hold" });
    await harness.upstream.received(0);
    expect((await collect(harness.client, { text: "hi", model: "made-up" }, withRequestId("r-busy"))).code).toBe(
      status.RESOURCE_EXHAUSTED,
    );
    const stopped = harness.gateway.shutdown(60_000);
    expect((await collect(harness.client, { text: "hi" }, withRequestId("r-late"))).code).toBe(status.UNAVAILABLE);

    const s = await scrape(harness.gateway.metricsPort ?? 0);
    const refused = (grpc_code: string, cause: string) =>
      s.value("chat_gateway_refused_calls_total", { grpc_code, cause, caller: "anonymous" });
    expect(refused("INVALID_ARGUMENT", "invalid_request")).toBe(1);
    expect(refused("RESOURCE_EXHAUSTED", "concurrency_limit")).toBe(1);
    expect(refused("UNAVAILABLE", "draining")).toBe(1);
    expect(s.value("chat_gateway_refused_calls_total")).toBe(3);

    const lines = harness.logs.filter((l) => l.msg === "call refused");
    expect(lines).toEqual([
      expect.objectContaining({
        requestId: "r-invalid",
        caller: "anonymous",
        model: "fake-model",
        code: "INVALID_ARGUMENT",
        cause: "invalid_request",
        message: "text: must not be empty (send `text`, or `messages` with some content)",
      }),
      expect.objectContaining({
        requestId: "r-busy",
        model: "other",
        code: "RESOURCE_EXHAUSTED",
        cause: "concurrency_limit",
        message: "too many concurrent streams (limit 1); retry later",
      }),
      expect.objectContaining({
        requestId: "r-late",
        code: "UNAVAILABLE",
        cause: "draining",
        message: "gateway is shutting down; retry",
      }),
    ]);
    for (const line of lines) expect(line.traceId).toMatch(/^[0-9a-f]{32}$/);

    release();
    expect((await held).code).toBe(status.OK);
    await stopped;
  });

  it("refused by caller keys are counted and logged too, without the key", async () => {
    harness = await startHarness({
      env: { METRICS_HOST: "127.0.0.1", METRICS_PORT: "0", CALLER_KEYS: "ops ops-key-0123456789abcdef" },
    });
    const wrong = new Metadata();
    wrong.set("authorization", "Bearer not-the-key-0123456789");
    expect((await collect(harness.client, { text: "hi" }, wrong)).code).toBe(status.UNAUTHENTICATED);

    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(
      s.value("chat_gateway_refused_calls_total", {
        grpc_code: "UNAUTHENTICATED",
        cause: "unauthenticated",
        caller: "unauthenticated",
      }),
    ).toBe(1);
    const lines = harness.logs.filter((l) => l.msg === "call refused");
    expect(lines).toEqual([expect.objectContaining({ code: "UNAUTHENTICATED", cause: "unauthenticated" })]);
    expect(JSON.stringify(harness.logs)).not.toContain("not-the-key");
  });

  it("end their trace span, exported with the code and cause", async () => {
    const bodies: string[] = [];
    const collector = createServer((req, res) => {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (c: string) => (body += c));
      req.on("end", () => {
        bodies.push(body);
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    collector.listen(0, "127.0.0.1");
    await once(collector, "listening");
    try {
      harness = await startHarness({
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}` },
      });
      const traced = new Metadata();
      traced.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
      expect((await collect(harness.client, { text: "x", topP: 2 }, traced)).code).toBe(status.INVALID_ARGUMENT);
      // Shutting down flushes the batch.
      await harness.gateway.shutdown(0);
      const all = bodies.join("\n");
      expect(all).toContain("4bf92f3577b34da6a3ce929d0e0e4736");
      expect(all).toContain("chat fake-model");
      expect(all).toContain("invalid_request");
    } finally {
      collector.close();
    }
  });
});

describe("the refusal log", () => {
  it("logs the first lines of each cause in a window, then one line with how many it left out", () => {
    vi.useFakeTimers();
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({
      level: "info",
      destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    });
    const log = createRefusalLog(logger, { perWindow: 2, windowMs: 1000 });
    for (let i = 0; i < 5; i++) log({ code: "INVALID_ARGUMENT", cause: "invalid_request", message: `bad ${i}` });
    log({ code: "UNAVAILABLE", cause: "draining" });
    const fields = () => lines.map(({ msg, cause, message, suppressed }) => ({ msg, cause, message, suppressed }));
    expect(fields()).toEqual([
      { msg: "call refused", cause: "invalid_request", message: "bad 0", suppressed: undefined },
      { msg: "call refused", cause: "invalid_request", message: "bad 1", suppressed: undefined },
      { msg: "call refused", cause: "draining", message: undefined, suppressed: undefined },
    ]);
    vi.advanceTimersByTime(1000);
    log({ code: "INVALID_ARGUMENT", cause: "invalid_request", message: "bad again" });
    expect(fields().slice(3)).toEqual([
      { msg: "calls refused, not logged one by one", cause: "invalid_request", message: undefined, suppressed: 3 },
      { msg: "call refused", cause: "invalid_request", message: "bad again", suppressed: undefined },
    ]);
  });
});
