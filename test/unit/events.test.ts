// Every kind of event over gRPC, in-process with the fake upstream and the real openai SDK: order
// and completeness, each event sent as it arrives, a whole agent round trip with tools, merging
// under backpressure (same kind and same call only), the idle watchdog around reasoning, and the
// response metadata (x-request-id) and error details (google.rpc.Status) of every outcome.
import { connect, constants as h2 } from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { Metadata, status } from "@grpc/grpc-js";
import { ChatRequest } from "../../src/gen/chat/v1/chat.js";
import { Status } from "../../src/gen/google/rpc/status.js";
import { ErrorInfo, RetryInfo } from "../../src/gen/google/rpc/error_details.js";
import { wire, type RecordedRequest, type Reply, type WireDelta } from "../support/fake-model.js";
import { collect, openStream, startHarness, type Harness } from "../support/grpc.js";
import { never } from "../support/gates.js";
import { kindsOf, seenFromResponse, toolCallsOf, type Seen } from "../support/events.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

function detailsOf(trailers: Metadata | undefined) {
  const raw = trailers?.get("grpc-status-details-bin")[0];
  if (!(raw instanceof Buffer)) return undefined;
  const decoded = Status.decode(raw);
  return {
    code: decoded.code,
    message: decoded.message,
    details: decoded.details.map((any) =>
      any.typeUrl.endsWith("ErrorInfo")
        ? { "@type": any.typeUrl, ...ErrorInfo.decode(any.value) }
        : { "@type": any.typeUrl, retryDelaySeconds: Number(RetryInfo.decode(any.value).retryDelay?.seconds ?? -1) },
    ),
  };
}

describe("the events of a reply, over gRPC", () => {
  it("streams each event as it arrives: reasoning, text, tool calls, never held back until a call is complete", async () => {
    const steps: WireDelta[] = [
      wire.reasoning("Let me"),
      wire.reasoning(" look.", "reasoning"),
      wire.content("Checking both."),
      wire.toolCall(0, "call_w", "get_weather"),
      wire.toolArgs(0, '{"city":'),
      wire.toolCall(1, "call_t", "get_time", '{"tz":'),
      wire.toolArgs(0, '"Paris"}'),
      wire.toolArgs(1, '"CET"}'),
    ];
    let stream: ReturnType<typeof openStream> | undefined;
    harness = await startHarness({
      upstream: {
        // Step i waits until the caller has every event before it: a gateway that held anything back
        // would never get step i, and the call would time out.
        reply: () => ({
          deltas: steps,
          tokens: [],
          finishReason: "tool_calls",
          usageDetails: {
            completion_tokens_details: { reasoning_tokens: 2 },
            prompt_tokens_details: { cached_tokens: 1 },
          },
          gate: (i) => stream?.received(i),
        }),
      },
    });
    stream = openStream(harness, { text: "weather and time?", tools: [WEATHER_TOOL] });
    expect((await stream.ended).code).toBe(status.OK);
    expect(stream.seen()).toEqual([
      { reasoning: "Let me" },
      { reasoning: " look." },
      { delta: "Checking both." },
      { toolCall: { id: "call_w", name: "get_weather" } },
      { toolCall: { arguments: '{"city":' } },
      { toolCall: { index: 1, id: "call_t", name: "get_time", arguments: '{"tz":' } },
      { toolCall: { arguments: '"Paris"}' } },
      { toolCall: { index: 1, arguments: '"CET"}' } },
      {
        finish: {
          finishReason: "tool_calls",
          model: "fake-model",
          usage: { promptTokens: 5, completionTokens: 8, totalTokens: 13, reasoningTokens: 2, cachedPromptTokens: 1 },
        },
      },
    ]);
  });

  it("streams a refusal as its own event", async () => {
    harness = await startHarness({
      upstream: { reply: () => ({ deltas: [wire.refusal("I can't"), wire.refusal(" help.")], tokens: [] }) },
    });
    const result = await collect(harness.client, { text: "x", responseFormat: { type: "json_object" } });
    expect(result.responses.map(seenFromResponse).slice(0, -1)).toEqual([
      { refusal: "I can't" },
      { refusal: " help." },
    ]);
  });

  it("runs a whole agent round trip: the calls streamed go back as the assistant's turn, the results as tool messages", async () => {
    harness = await startHarness({
      upstream: {
        reply: (r: RecordedRequest): Reply =>
          r.index === 0
            ? {
                deltas: [
                  wire.toolCall(0, "call_paris", "get_weather", '{"ci'),
                  wire.toolCall(1, "call_oslo", "get_weather"),
                  wire.toolArgs(1, '{"city":"Oslo"}'),
                  wire.toolArgs(0, 'ty":"Paris"}'),
                ],
                tokens: [],
                finishReason: "tool_calls",
              }
            : { tokens: ["18°C in Paris, ", "4°C in Oslo."] },
      },
    });
    const question = { role: "user", content: "Weather in Paris and Oslo?" };
    const first = await collect(harness.client, {
      messages: [question],
      tools: [WEATHER_TOOL],
      toolChoice: { choice: { $case: "mode", value: "auto" } },
    });
    const seen = first.responses.map(seenFromResponse);
    expect(seen.at(-1)).toMatchObject({ finish: { finishReason: "tool_calls" } });

    // The agent: put the streamed calls together, run them, send everything back.
    const calls = toolCallsOf(seen);
    expect(calls).toEqual([
      { id: "call_paris", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      { id: "call_oslo", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
    ]);
    const results = calls.map((c) => ({
      role: "tool",
      toolCallId: c.id,
      content: JSON.parse(c.function.arguments).city === "Paris" ? '{"celsius":18}' : '{"celsius":4}',
    }));
    const second = await collect(harness.client, {
      messages: [question, { role: "assistant", toolCalls: calls }, ...results],
      tools: [WEATHER_TOOL],
    });
    expect([second.code, second.text]).toEqual([status.OK, "18°C in Paris, 4°C in Oslo."]);

    const [asked, answered] = harness.upstream.requests;
    expect(asked?.body.messages).toEqual([question]);
    expect(asked?.body.tools).toEqual([WEATHER_TOOL]);
    expect(asked?.body.tool_choice).toBe("auto");
    expect(answered?.body.messages).toEqual([
      question,
      { role: "assistant", content: null, tool_calls: calls },
      { role: "tool", tool_call_id: "call_paris", content: '{"celsius":18}' },
      { role: "tool", tool_call_id: "call_oslo", content: '{"celsius":4}' },
    ]);
  });
});

describe("merging while the caller is behind", () => {
  it("joins only consecutive events of one kind and one call, keeps the order across kinds, and loses nothing", async () => {
    // Rounds of two reasoning pieces, two text pieces, then pieces of two tool calls in turn, each
    // piece marked with its kind, its round and a letter, so any wrong join shows.
    const pad = (s: string) => s.padEnd(100, ".");
    const steps: WireDelta[] = [wire.toolCall(0, "call_a", "fa"), wire.toolCall(1, "call_b", "fb")];
    const sent: Seen[] = [
      { toolCall: { id: "call_a", name: "fa" } },
      { toolCall: { index: 1, id: "call_b", name: "fb" } },
    ];
    for (let i = 0; i < 2_500; i++) {
      for (const [delta, seen] of [
        [wire.reasoning(pad(`R${i}r`)), { reasoning: pad(`R${i}r`) }],
        [wire.reasoning(pad(`R${i}s`)), { reasoning: pad(`R${i}s`) }],
        [wire.content(pad(`T${i}t`)), { delta: pad(`T${i}t`) }],
        [wire.content(pad(`T${i}u`)), { delta: pad(`T${i}u`) }],
        [wire.toolArgs(0, pad(`A${i}a`)), { toolCall: { arguments: pad(`A${i}a`) } }],
        [wire.toolArgs(1, pad(`B${i}b`)), { toolCall: { index: 1, arguments: pad(`B${i}b`) } }],
        [wire.toolArgs(0, pad(`A${i}c`)), { toolCall: { arguments: pad(`A${i}c`) } }],
      ] as const) {
        steps.push(delta);
        sent.push(seen as Seen);
      }
    }
    harness = await startHarness({
      upstream: { reply: () => ({ deltas: steps, tokens: [], finishReason: "tool_calls" }) },
    });
    const stream = openStream(harness, { text: "a lot" });
    stream.call.pause();
    // The gateway has stopped reading the upstream, which can no longer write: it is behind.
    await harness.upstream.blocked(0);
    stream.call.resume();
    expect((await stream.ended).code).toBe(status.OK);
    const seen = stream.seen().slice(0, -1);

    // Nothing lost or reordered: each kind (each call) carries exactly what was sent, in order.
    const textOf = (list: Seen[], pick: (s: Seen) => string | undefined) =>
      list
        .map(pick)
        .filter((t) => t !== undefined)
        .join("");
    const pickers: Record<string, (s: Seen) => string | undefined> = {
      reasoning: (s) => ("reasoning" in s ? s.reasoning : undefined),
      delta: (s) => ("delta" in s ? s.delta : undefined),
      call0: (s) => ("toolCall" in s && (s.toolCall.index ?? 0) === 0 ? (s.toolCall.arguments ?? "") : undefined),
      call1: (s) => ("toolCall" in s && s.toolCall.index === 1 ? (s.toolCall.arguments ?? "") : undefined),
    };
    for (const [name, pick] of Object.entries(pickers))
      expect([name, textOf(seen, pick)]).toEqual([name, textOf(sent, pick)]);
    // No join across kinds or calls: every message holds one kind's markers only...
    const markers: [string, RegExp][] = [
      ["reasoning", /^(R\d+[rs]\.*)+$/],
      ["delta", /^(T\d+[tu]\.*)+$/],
      ["call0", /^(A\d+[ac]\.*)*$/],
      ["call1", /^(B\d+b\.*)*$/],
    ];
    for (const [name, pattern] of markers) {
      const wrong = seen
        .map(pickers[name] as (s: Seen) => string | undefined)
        .filter((t) => t !== undefined && !pattern.test(t));
      expect([name, wrong.slice(0, 1)]).toEqual([name, []]);
    }
    // ...the order of kinds is the order sent, and the calls' ids and names came once, first.
    expect(kindsOf(seen)).toEqual(kindsOf(sent));
    const firsts = seen.flatMap((s) =>
      "toolCall" in s && s.toolCall.id ? [[s.toolCall.index ?? 0, s.toolCall.id, s.toolCall.name]] : [],
    );
    expect(firsts).toEqual([
      [0, "call_a", "fa"],
      [1, "call_b", "fb"],
    ]);
    // And merging did happen: fewer messages than events.
    expect(seen.length).toBeLessThan(sent.length);
  });
});

describe("the idle watchdog around reasoning", () => {
  it("does not fire while reasoning streams for longer than the idle timeout, and still fires on a stall", async () => {
    const thinking = Array.from({ length: 60 }, (_, i) => wire.reasoning(`step ${i}. `));
    let stall = false;
    harness = await startHarness({
      env: { UPSTREAM_IDLE_TIMEOUT_MS: "1000" },
      // A reasoning piece every 25 ms for 1.5 times the idle timeout; or, the second time, a stall in the middle of it.
      upstream: {
        reply: () => ({
          deltas: thinking,
          tokens: ["answer"],
          tokenDelayMs: 25,
          gate: (i) => (stall && i === 10 ? never : undefined),
        }),
      },
    });
    const thought = await collect(harness.client, { text: "think" });
    expect([thought.code, thought.text]).toEqual([status.OK, "answer"]);
    expect(thought.responses.filter((r) => r.event?.$case === "reasoning")).toHaveLength(60);

    stall = true;
    const stalled = await collect(harness.client, { text: "think" });
    expect([stalled.code, stalled.details]).toEqual([status.UNAVAILABLE, "upstream stalled: no data for 1.0s"]);
    expect(stalled.responses.map(seenFromResponse)).toEqual([
      ...thinking.slice(0, 10).map((d) => ({ reasoning: d.reasoning_content as string })),
      { error: { code: status.UNAVAILABLE, message: "upstream stalled: no data for 1.0s" } },
    ]);
  });
});

describe("response metadata and error details", () => {
  it("sends x-request-id with the first message and in the trailers of a stream that ended well", async () => {
    harness = await startHarness();
    const metadata = new Metadata();
    metadata.set("x-request-id", "req-from-the-caller");
    const stream = openStream(harness, { text: "hi" }, metadata);
    const end = await stream.ended;
    expect(end.code).toBe(status.OK);
    expect(stream.headers()?.get("x-request-id")).toEqual(["req-from-the-caller"]);
    expect(end.trailers.get("x-request-id")).toEqual(["req-from-the-caller"]);
    expect(end.trailers.get("grpc-status-details-bin")).toEqual([]);
  });

  it("answers a refused call trailers-only, with ErrorInfo and the request id", async () => {
    harness = await startHarness();
    const result = await collect(harness.client, { text: "" });
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(detailsOf(result.trailers)).toEqual({
      code: status.INVALID_ARGUMENT,
      message: result.details,
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
          reason: "INVALID_REQUEST",
          domain: "chat-gateway",
          metadata: {},
        },
      ],
    });
    // A generated id when the caller sent none.
    expect(result.trailers?.get("x-request-id")[0]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("adds RetryInfo from the response's retry-after when a 429 comes as an error event in the stream", async () => {
    // The provider keeps no copy of the response's headers while it reads the body: made again here.
    const errorEvent = { error: { message: "Too many requests", type: "RateLimitError", param: null, code: 429 } };
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: [], end: "error-event", errorEvent, headers: { "retry-after": "7" } }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(result.trailers?.get("retry-after")).toEqual(["7"]);
  });

  it("adds RetryInfo when the upstream said retry-after, and names the upstream", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ status: 429, headers: { "retry-after": "7" } }) } });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(result.trailers?.get("retry-after")).toEqual(["7"]);
    expect(detailsOf(result.trailers)).toEqual({
      code: status.RESOURCE_EXHAUSTED,
      message: "upstream rate limit reached; retry after 7s",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
          reason: "UPSTREAM_RATE_LIMITED",
          domain: "chat-gateway",
          metadata: { upstream: "default" },
        },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelaySeconds: 7 },
      ],
    });
  });

  it("puts the details beside the in-band error of a stream that failed after its first event", async () => {
    harness = await startHarness({
      env: { UPSTREAM_IDLE_TIMEOUT_MS: "200" },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const stream = openStream(harness, { text: "hi" });
    const end = await stream.ended;
    expect(stream.seen().at(-1)).toEqual({ error: { code: status.UNAVAILABLE, message: end.details } });
    expect(detailsOf(end.trailers)?.details[0]).toMatchObject({
      reason: "UPSTREAM_IDLE",
      metadata: { upstream: "default" },
    });
    expect(stream.headers()?.get("x-request-id")).toEqual(end.trailers.get("x-request-id"));
  });

  it("sends no response headers before the first message: an early failure stays trailers-only", async () => {
    // Raw HTTP/2, to see the frames: a stream the upstream ends before its first token (no finish
    // reason) must be answered with one HEADERS frame that carries the status and ends the stream.
    harness = await startHarness({ upstream: { reply: () => ({ tokens: [], end: "quiet" }) } });
    const session = connect(`http://127.0.0.1:${harness.gateway.port}`);
    try {
      const body = ChatRequest.encode(ChatRequest.fromPartial({ text: "hi" })).finish();
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
      const stream = session.request({
        [h2.HTTP2_HEADER_METHOD]: "POST",
        [h2.HTTP2_HEADER_PATH]: "/chat.v1.ChatService/Chat",
        "content-type": "application/grpc",
        te: "trailers",
        "x-request-id": "early",
      });
      stream.end(frame);
      const [headers, flags] = await new Promise<[Record<string, unknown>, number]>((resolve) =>
        stream.once("response", (h, f) => resolve([h, f])),
      );
      expect(flags & h2.NGHTTP2_FLAG_END_STREAM).toBe(h2.NGHTTP2_FLAG_END_STREAM);
      expect(headers).toMatchObject({
        ":status": 200,
        "grpc-status": String(status.UNAVAILABLE),
        "x-request-id": "early",
      });
      const details = Status.decode(Buffer.from(String(headers["grpc-status-details-bin"]), "base64"));
      expect(details.message).toBe("upstream ended the stream without finishing");
    } finally {
      session.close();
    }
  });
});
