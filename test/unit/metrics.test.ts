// The Prometheus endpoint on its own port, scraped over HTTP after real streams through a real
// gRPC server and the real openai SDK against the fake upstream.
import { afterEach, describe, expect, it, vi } from "vitest";
import { status } from "@grpc/grpc-js";
import { ChatRequest } from "../../src/gen/chat/v1/chat.js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { scrape } from "../support/metrics.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";

const METRICS = { METRICS_HOST: "127.0.0.1", METRICS_PORT: "0" };
const CHAT = { grpc_service: "chat.v1.ChatService", grpc_method: "Chat" };
let harness: Harness | undefined;
let other: FakeUpstream | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await harness?.close();
  await other?.close();
  harness = undefined;
  other = undefined;
});

function metricsPort(h: Harness): number {
  const port = h.gateway.metricsPort;
  if (port === undefined) throw new Error("metrics are off");
  return port;
}

describe("metrics", () => {
  it("are off unless METRICS_PORT is set", async () => {
    harness = await startHarness();
    expect(harness.gateway.metricsPort).toBeUndefined();
  });

  it("count requests by method and final code, time to first token, time per token, duration and tokens", async () => {
    let reply: Reply = { tokens: ["a", "b", "c", "d"] };
    harness = await startHarness({ env: METRICS, upstream: { reply: () => reply } });
    const port = metricsPort(harness);
    const before = await scrape(port);
    expect(before.value("grpc_server_handled_total", CHAT)).toBe(0);
    expect(before.has("process_cpu_seconds_total")).toBe(true);

    const ok = await collect(harness.client, { text: "12345678" }); // 8 characters: 2 prompt tokens
    expect(ok.code).toBe(status.OK);
    await collect(harness.client, { text: "again" });
    expect((await collect(harness.client, {})).code).toBe(status.INVALID_ARGUMENT);
    reply = { status: 500 };
    expect((await collect(harness.client, { text: "fail" })).code).toBe(status.UNAVAILABLE);

    const after = await scrape(port);
    expect(after.value("grpc_server_started_total", CHAT)).toBe(4);
    expect(after.value("grpc_server_handled_total", { ...CHAT, grpc_code: "OK", caller: "anonymous" })).toBe(2);
    expect(after.value("grpc_server_handled_total", { ...CHAT, grpc_code: "INVALID_ARGUMENT" })).toBe(1);
    expect(after.value("grpc_server_handled_total", { ...CHAT, grpc_code: "UNAVAILABLE" })).toBe(1);

    const model = { gen_ai_request_model: "fake-model", gen_ai_operation_name: "chat", upstream: "default" };
    expect(after.value("gen_ai_server_time_to_first_token_seconds_count", model)).toBe(2);
    expect(after.value("gen_ai_server_time_per_output_token_seconds_count", model)).toBe(2);
    // Both streams and the failed one; the invalid request never became a stream.
    expect(after.value("gen_ai_server_request_duration_seconds_count", model)).toBe(3);
    expect(after.value("gen_ai_server_request_duration_seconds_count", { ...model, error_type: "upstream_5xx" })).toBe(
      1,
    );
    expect(after.value("gen_ai_client_token_usage_sum", { ...model, gen_ai_token_type: "output" })).toBe(8);
    expect(after.value("gen_ai_client_token_usage_count", { ...model, gen_ai_token_type: "output" })).toBe(2);
    // The fake upstream counts a token per 4 prompt characters, rounded up: 2 + 2.
    expect(after.value("gen_ai_client_token_usage_sum", { ...model, gen_ai_token_type: "input" })).toBe(4);
    expect(after.value("chat_gateway_upstream_errors_total", { upstream: "default", error_type: "upstream_5xx" })).toBe(
      1,
    );
    expect(after.value("chat_gateway_active_streams")).toBe(0);
  });

  it("time the first token, the tokens after it and the whole stream, in seconds, to the millisecond", async () => {
    // The stream loop reads performance.now(); the test moves that clock (and nothing else: sockets
    // and timers stay real) while the upstream is held before each token.
    const gates = [hold(), hold(), hold(), hold()];
    harness = await startHarness({
      env: METRICS,
      upstream: { reply: () => ({ tokens: ["a", "b", "c"], gate: (i) => gates[i]?.promise }) },
    });
    const arrived = harness.upstream.received(0);
    vi.useFakeTimers({ toFake: ["performance"] });
    const call = harness.client.chat(ChatRequest.fromPartial({ text: "hi" }));
    const messages: unknown[] = [];
    const waiters: (() => void)[] = [];
    call.on("data", (m) => {
      messages.push(m);
      waiters.shift()?.();
    });
    const ended = new Promise((resolve) => call.on("end", resolve));
    const next = () => new Promise<void>((resolve) => waiters.push(resolve));
    await arrived;
    // First token 250 ms after the request, then one every 100 ms; the stream ends with the last.
    for (const [i, ms] of [250, 100, 100].entries()) {
      vi.advanceTimersByTime(ms);
      const delivered = next();
      gates[i]!.release();
      await delivered;
    }
    gates[3]!.release();
    await ended;
    vi.useRealTimers();
    expect(messages).toHaveLength(4); // three deltas and the finish

    const s = await scrape(metricsPort(harness));
    const model = { gen_ai_request_model: "fake-model", upstream: "default" };
    expect(s.value("gen_ai_server_time_to_first_token_seconds_sum", model)).toBeCloseTo(0.25, 9);
    expect(s.value("gen_ai_server_time_per_output_token_seconds_sum", model)).toBeCloseTo(0.1, 9);
    expect(s.value("gen_ai_server_request_duration_seconds_sum", model)).toBeCloseTo(0.45, 9);
    // In the buckets the conventions give: 0.25 s is in le=0.25 and not in le=0.1.
    expect(s.value("gen_ai_server_time_to_first_token_seconds_bucket", { ...model, le: "0.25" })).toBe(1);
    expect(s.value("gen_ai_server_time_to_first_token_seconds_bucket", { ...model, le: "0.1" })).toBe(0);
    expect(s.value("gen_ai_server_time_per_output_token_seconds_bucket", { ...model, le: "0.1" })).toBe(1);
    expect(s.value("gen_ai_server_time_per_output_token_seconds_bucket", { ...model, le: "0.075" })).toBe(0);
    expect(s.value("gen_ai_server_request_duration_seconds_bucket", { ...model, le: "0.64" })).toBe(1);
    expect(s.value("gen_ai_server_request_duration_seconds_bucket", { ...model, le: "0.32" })).toBe(0);
  });

  it("show the streams open now", async () => {
    const { promise: held, release } = hold();
    harness = await startHarness({
      env: METRICS,
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? held : undefined) }) },
    });
    const port = metricsPort(harness);
    const call = harness.client.chat(ChatRequest.fromPartial({ text: "hold" }));
    // The first delta has reached the caller and the upstream holds the second: the stream is open.
    await new Promise((resolve) => call.once("data", resolve));
    expect((await scrape(port)).value("chat_gateway_active_streams")).toBe(1);
    release();
    await new Promise((resolve) => call.on("data", () => undefined).once("end", resolve));
    expect((await scrape(port)).value("chat_gateway_active_streams")).toBe(0);
  });

  it("count the SDK's retries and the fallbacks, by upstream", async () => {
    other = await startFakeUpstream({ reply: () => ({ tokens: ["saved"] }) });
    harness = await startHarness({
      env: { ...METRICS, UPSTREAM_MAX_RETRIES: "2", FALLBACK_BASE_URL: other.baseURL },
      upstream: { reply: () => ({ status: 503, headers: { "retry-after-ms": "1" } }) },
    });
    const result = await collect(harness.client, { text: "hello" });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe("saved");
    expect(harness.upstream.requests).toHaveLength(3);

    const s = await scrape(metricsPort(harness));
    expect(s.value("chat_gateway_upstream_retries_total", { upstream: "default" })).toBe(2);
    expect(s.value("chat_gateway_upstream_fallbacks_total", { upstream: "default", error_type: "upstream_5xx" })).toBe(
      1,
    );
    expect(s.value("chat_gateway_upstream_errors_total", { upstream: "default", error_type: "upstream_5xx" })).toBe(1);
    expect(s.value("gen_ai_server_request_duration_seconds_count", { upstream: "fallback", error_type: "" })).toBe(1);
    const line = harness.logs.find((l) => l.msg === "stream ended");
    expect(line).toMatchObject({ upstream: "fallback", retries: 2, code: "OK" });
  });

  it("label models the configuration does not name as `other`, so callers cannot grow the series", async () => {
    harness = await startHarness({ env: METRICS, upstream: { reply: () => ({ tokens: ["x"] }) } });
    for (const model of ["made-up-1", "made-up-2"]) await collect(harness.client, { text: "hi", model });
    const s = await scrape(metricsPort(harness));
    expect(s.value("gen_ai_server_request_duration_seconds_count", { gen_ai_request_model: "other" })).toBe(2);
    expect(s.text).not.toContain("made-up");
  });

  it("serve only /metrics", async () => {
    harness = await startHarness({ env: METRICS });
    const response = await fetch(`http://127.0.0.1:${metricsPort(harness)}/`);
    expect(response.status).toBe(404);
  });
});
