// The ChatService in-process: a real grpc-js server on a random port, a real client, and the fake
// OpenAI-compatible upstream speaking SSE to the real openai SDK.
import { afterEach, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { collect, startHarness, type Harness } from "../support/grpc.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe("Chat", () => {
  it("streams the upstream's deltas in order, one message each, then a finish with usage", async () => {
    const tokens = ["The", " quick", " brown", " fox", "."];
    harness = await startHarness({ upstream: { reply: () => ({ tokens, finishReason: "stop" }) } });
    const result = await collect(harness.client, { text: "tell me about foxes" });

    expect(result.code).toBe(status.OK);
    const deltas = result.responses.filter((r) => r.event?.$case === "delta");
    expect(deltas.map((r) => (r.event?.$case === "delta" ? r.event.value.text : ""))).toEqual(tokens);
    const last = result.responses.at(-1);
    expect(last?.event?.$case).toBe("finish");
    if (last?.event?.$case !== "finish") return;
    expect(last.event.value.finishReason).toBe("stop");
    expect(last.event.value.model).toBe("fake-model");
    expect(last.event.value.usage?.completionTokens).toBe(tokens.length);
    expect(result.responses).toHaveLength(tokens.length + 1);
  });

  it("passes multi-turn messages, the model override and sampling parameters to the upstream intact", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    const result = await collect(harness.client, {
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello." },
      ],
      text: "And now?",
      model: "other-model",
      temperature: 0.5,
      maxTokens: 64,
      stop: ["\n\n"],
    });
    expect(result.code).toBe(status.OK);
    const body = harness.upstream.requests[0]?.body;
    expect(body?.messages).toEqual([
      { role: "system", content: "You are terse." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello." },
      { role: "user", content: "And now?" },
    ]);
    expect(body?.model).toBe("other-model");
    expect(body?.temperature).toBe(0.5);
    expect(body?.max_tokens).toBe(64);
    expect(body?.stop).toEqual(["\n\n"]);
    expect(body?.stream).toBe(true);
    expect(body?.stream_options).toEqual({ include_usage: true });
    expect(harness.upstream.requests[0]?.headers.authorization).toBe("Bearer sk-test-harness-key");
  });

  it("sends the sampling parameters as the caller wrote them, not as the float32 protobuf carries them", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    const result = await collect(harness.client, {
      text: "hi",
      temperature: 0.2,
      topP: 0.9,
      presencePenalty: -0.3,
      frequencyPenalty: 1.7,
    });
    expect(result.code).toBe(status.OK);
    const body = harness.upstream.requests[0]?.body;
    expect([body?.temperature, body?.top_p, body?.presence_penalty, body?.frequency_penalty]).toEqual([
      0.2, 0.9, -0.3, 1.7,
    ]);

    const refused = await collect(harness.client, { text: "hi", temperature: 2.1 });
    expect([refused.code, refused.details]).toEqual([status.INVALID_ARGUMENT, "temperature: 2.1 is outside [0, 2]"]);
  });

  it.each([
    ["no text", {}],
    ["blank text", { text: "  \n" }],
    ["an unknown role", { messages: [{ role: "wizard", content: "hi" }] }],
    ["temperature out of range", { text: "hi", temperature: 3 }],
  ])("answers %s with INVALID_ARGUMENT, no messages, and no upstream call", async (_name, request) => {
    harness = await startHarness();
    const result = await collect(harness.client, request);
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toMatch(/^(text|messages\[0\]\.role|temperature):/);
    expect(result.responses).toEqual([]);
    expect(harness.upstream.requests).toHaveLength(0);
  });

  it("answers UNAVAILABLE when the upstream is unreachable", async () => {
    harness = await startHarness();
    await harness.upstream.close();
    const result = await collect(harness.client, { text: "hello" });
    expect(result.code).toBe(status.UNAVAILABLE);
    expect(result.details).toBe("upstream unreachable");
    expect(result.responses).toEqual([]);
  });

  it("streams 10,000 deltas without losing or reordering one", async () => {
    const tokens = Array.from({ length: 10_000 }, (_, i) => `${i} `);
    harness = await startHarness({ upstream: { reply: () => ({ tokens }) } });
    const result = await collect(harness.client, { text: "count" });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe(tokens.join(""));
  });
});
