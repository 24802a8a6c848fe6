// The events of a reply through the real Envoy and the built service, as HTTP clients (curl -N)
// and grpcurl see them: recorded reasoning and tool-call streams, a whole agent round trip over
// HTTP, merging behind a paused client, the bytes a text-only client of today gets (compared with
// main's), and error details as Envoy's transcoder prints them.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  startFakeUpstream,
  wire,
  type FakeUpstream,
  type RecordedRequest,
  type Reply,
  type WireDelta,
} from "../support/fake-model.js";
import { grpcurl, startStack, type Stack } from "../support/processes.js";
import { allEvents, post } from "../support/http.js";
import { never } from "../support/gates.js";
import {
  EXPECTED,
  fixture,
  joinedOf,
  kindsOf,
  seenFromJson,
  splitSurrogatesStream,
  toolCallsOf,
  type Seen,
} from "../support/events.js";

let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
    UPSTREAM_IDLE_TIMEOUT_MS: "1000",
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});
beforeEach(() => {
  reply = () => ({ tokens: ["ok"] });
});

const http = (body: unknown) => post(stack.envoy.httpPort, "/chat", JSON.stringify(body));
const sseEvents = async (body: unknown): Promise<Seen[]> =>
  (await allEvents(await http(body))).map((e) => seenFromJson(e as Record<string, unknown>));

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

describe("events through Envoy", () => {
  it.each(["deepseek-reasoner", "openai-parallel-tool-calls", "deepseek-reused-index", "openai-refusal"])(
    "streams the recorded %s as server-sent events",
    async (name) => {
      reply = () => ({ sse: fixture(name), writeBytes: 97 });
      expect(await sseEvents({ text: "hi" })).toEqual(EXPECTED[name]);
    },
  );

  it("joins a character the upstream cut between two chunks, in every kind, as the caller reads it", async () => {
    const { sse, meant } = splitSurrogatesStream();
    reply = () => ({ sse, writeBytes: 5 });
    const seen = await sseEvents({ text: "hi" });
    expect(joinedOf(seen)).toEqual(meant);
    expect(JSON.stringify(seen)).not.toContain("\uFFFD");
  });

  it("prints the events with the JSON names of the contract", async () => {
    reply = () => ({ sse: fixture("openai-parallel-tool-calls") });
    const body = await (await http({ text: "hi" })).body();
    expect(body.split("\n\n")[0]).toBe(
      'data: {"toolCall":{"id":"call_9XQ3mXyq6bNqV3cPd4zK1a2B","name":"get_weather"}}',
    );
    expect(body).toContain('data: {"toolCall":{"index":1,"arguments":"okyo\\"}"}}');
    expect(body).toContain(
      '"usage":{"promptTokens":82,"completionTokens":51,"totalTokens":133,"cachedPromptTokens":64}',
    );
    reply = () => ({ sse: fixture("deepseek-reasoner") });
    expect((await (await http({ text: "hi" })).body()).split("\n\n")[0]).toBe('data: {"reasoning":{"text":"Okay"}}');
  });

  it("runs a whole agent round trip over HTTP, with tools and messages as OpenAI writes them", async () => {
    reply = (r) =>
      r.body.messages?.at(-1)?.role === "tool"
        ? { tokens: ["18°C."] }
        : {
            deltas: [
              wire.reasoning("Need the weather."),
              wire.toolCall(0, "call_abc", "get_weather", '{"city":'),
              wire.toolArgs(0, '"Paris"}'),
            ],
            tokens: [],
            finishReason: "tool_calls",
          };
    const first = upstream.requests.length;
    const question = { role: "user", content: "Weather in Paris?" };
    const seen = await sseEvents({ messages: [question], tools: [WEATHER_TOOL], tool_choice: { mode: "auto" } });
    expect(seen.at(-1)).toMatchObject({ finish: { finishReason: "tool_calls" } });
    const calls = toolCallsOf(seen);
    expect(calls).toEqual([
      { id: "call_abc", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
    ]);

    // Sent back as an OpenAI client would: the assistant's turn as returned, and a tool message.
    const answer = await sseEvents({
      messages: [
        question,
        { role: "assistant", content: null, refusal: null, tool_calls: calls },
        { role: "tool", tool_call_id: "call_abc", content: '{"celsius":18}' },
      ],
      tools: [WEATHER_TOOL],
    });
    expect(answer.map((e) => ("delta" in e ? e.delta : Object.keys(e)[0]))).toEqual(["18°C.", "finish"]);
    expect(upstream.requests[first]?.body).toMatchObject({
      messages: [question],
      tools: [WEATHER_TOOL],
      tool_choice: "auto",
    });
    expect(upstream.requests[first + 1]?.body.messages).toEqual([
      question,
      { role: "assistant", content: null, tool_calls: calls },
      { role: "tool", tool_call_id: "call_abc", content: '{"celsius":18}' },
    ]);
  });

  it("keeps every event and the order of kinds for a paused HTTP client", async () => {
    const steps: WireDelta[] = [wire.toolCall(0, "call_a", "fa"), wire.toolCall(1, "call_b", "fb")];
    for (let i = 0; i < 2_000; i++) {
      const pad = (s: string) => s.padEnd(100, ".");
      steps.push(
        wire.reasoning(pad(`R${i}`)),
        wire.content(pad(`T${i}`)),
        wire.toolArgs(0, pad(`A${i}`)),
        wire.toolArgs(1, pad(`B${i}`)),
      );
    }
    reply = () => ({ deltas: steps, tokens: [], finishReason: "tool_calls" });
    const index = upstream.requests.length;
    const response = await http({ text: "a lot" });
    response.pause();
    await upstream.blocked(index);
    response.resume();
    const seen = (await allEvents(response)).map((e) => seenFromJson(e as Record<string, unknown>)).slice(0, -1);
    const joined = (pick: (s: Seen) => string | undefined) =>
      seen
        .map(pick)
        .filter((t) => t !== undefined)
        .join("");
    expect(joined((s) => ("reasoning" in s ? s.reasoning : undefined))).toBe(
      steps.flatMap((d) => (typeof d.reasoning_content === "string" ? [d.reasoning_content] : [])).join(""),
    );
    expect(joined((s) => ("delta" in s ? s.delta : undefined))).toBe(
      steps.flatMap((d) => (typeof d.content === "string" ? [d.content] : [])).join(""),
    );
    expect(toolCallsOf(seen).map((c) => c.function.arguments.replace(/[A-Z]\d+\.*/g, (m) => m[0] ?? ""))).toEqual([
      "A".repeat(2_000),
      "B".repeat(2_000),
    ]);
    expect(kindsOf(seen).slice(0, 6)).toEqual([
      "toolCall0",
      "toolCall1",
      "reasoning",
      "delta",
      "toolCall0",
      "toolCall1",
    ]);
    expect(kindsOf(seen)).toHaveLength(2 + 4 * 2_000);
  });

  it("keeps a stream alive while it reasons for longer than the idle timeout, and ends a stall in the reasoning in-band", async () => {
    const thinking = Array.from({ length: 60 }, (_, i) => wire.reasoning(`step ${i}. `));
    reply = () => ({ deltas: thinking, tokens: ["answer"], tokenDelayMs: 25 });
    const thought = await sseEvents({ text: "think" });
    expect(thought.filter((e) => "reasoning" in e)).toHaveLength(60);
    expect(thought.at(-2)).toEqual({ delta: "answer" });

    reply = () => ({ deltas: thinking, tokens: ["answer"], gate: (i) => (i === 5 ? never : undefined) });
    const stalled = await sseEvents({ text: "think" });
    expect(stalled).toEqual([
      ...thinking.slice(0, 5).map((d) => ({ reasoning: d.reasoning_content as string })),
      { error: { code: 14, message: "upstream stalled: no data for 1.0s" } },
    ]);
  });
});

describe("grpcurl", () => {
  it.each([
    ["the service's own port", () => stack.service.port],
    ["Envoy's port", () => stack.envoy.httpPort],
  ])("shows tool-call and reasoning events on %s", async (_where, port) => {
    reply = () => ({ sse: fixture("deepseek-reused-index") });
    const { stdout, code } = await grpcurl(port(), ["-d", JSON.stringify({ text: "hi" })], "chat.v1.ChatService/Chat");
    expect(code).toBe(0);
    const messages = stdout
      .trim()
      .split(/\n(?=\{)/)
      .map((m) => seenFromJson(JSON.parse(m) as Record<string, unknown>));
    expect(messages).toEqual(EXPECTED["deepseek-reused-index"]);
  });
});

describe("a text-only client of today", () => {
  const recorded = (name: string) =>
    readFileSync(fileURLToPath(new URL(`../fixtures/text-only/${name}.sse`, import.meta.url)), "utf8");
  const TOKENS = [
    "Plain",
    " text,",
    ' "quoted"',
    " and\nnew lines,",
    " ünïcödé",
    " 你好",
    " 👋",
    " <tags> & \\ back\\slash",
    ".",
  ];

  it("gets exactly the bytes main sent, for a reply and for a failure after the first token", async () => {
    reply = () => ({ tokens: TOKENS });
    const ok = await http({ text: "a text-only request" });
    expect(ok.status).toBe(200);
    expect(await ok.body()).toBe(recorded("stream"));

    reply = () => ({ tokens: TOKENS.slice(0, 3), end: "error-event" });
    expect(await (await http({ text: "a text-only request" })).body()).toBe(recorded("error"));
  });
});

describe("error details through Envoy's transcoder", () => {
  it("adds google.rpc.Status details to the JSON body of an error status, beside code and message", async () => {
    const response = await http({ text: "" });
    expect(response.status).toBe(400);
    expect(response.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(await response.body())).toEqual({
      code: 3,
      message: "text: must not be empty (send `text`, or `messages` with some content)",
      details: [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_REQUEST", domain: "chat-gateway" },
      ],
    });
  });

  it("carries RetryInfo, retry-after and one x-request-id, the one the service logged", async () => {
    reply = () => ({ status: 429, headers: { "retry-after": "7" } });
    const response = await http({ text: "hi" });
    expect(response.status).toBe(429);
    expect(response.headers["retry-after"]).toBe("7");
    expect(JSON.parse(await response.body())).toEqual({
      code: 8,
      message: "upstream rate limit reached; retry after 7s",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.ErrorInfo",
          reason: "UPSTREAM_RATE_LIMITED",
          domain: "chat-gateway",
          metadata: { upstream: "default" },
        },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "7s" },
      ],
    });
    const requestId = response.headers["x-request-id"];
    expect(typeof requestId).toBe("string");
    const logged = await stack.service.logLine((l) => l.msg === "stream ended" && l.requestId === requestId);
    expect(logged.cause).toBe("upstream_rate_limited");
  });
});
