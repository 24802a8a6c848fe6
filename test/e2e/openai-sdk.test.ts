// The OpenAI API through the real Envoy and the built service, with the official `openai` SDK as the
// client, pointed at the gateway by its base URL alone: Chat Completions and Responses streamed and
// not, reasoning, a tool round trip, usage, the models, each error as the SDK's own class, and an
// abort that closes the upstream's request.
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeUpstream, wire, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";

const KEY = "sdk-key-0123456789abcdef";
const LIMITED = "one-stream-key-0123456789ab";
let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startFakeUpstream({
    reply: (r) => reply(r),
    models: () => ({ ids: ["fake-model", "other-model"] }),
  });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    CALLER_KEYS: `sdk ${KEY}, limited ${LIMITED} streams=1`,
  });
  client = new OpenAI({ baseURL: `http://127.0.0.1:${stack.envoy.httpPort}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});
beforeEach(() => {
  reply = () => ({ tokens: ["Hello", " from", " the", " gateway"] });
});

describe("Chat Completions with the openai SDK", () => {
  it("streams chat.completion.chunk events as the model writes them, then the usage and [DONE]", async () => {
    const stream = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("Hello from the gateway");
    expect(chunks[0]?.choices[0]?.delta.role).toBe("assistant");
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0]?.id)).toBe(true);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe("stop");
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage?.total_tokens).toBeGreaterThan(0);
    expect(upstream.requests.at(-1)?.body.messages).toEqual([{ role: "user", content: "hi" }]);
  });

  it("delivers each chunk before the upstream sends the next (nothing buffers on the way)", async () => {
    // The upstream holds its second token until the first has reached this client: a buffer on the
    // path would deadlock the stream and fail the test on its timeout.
    let firstSeen!: () => void;
    const seen = new Promise<void>((resolve) => (firstSeen = resolve));
    reply = () => ({ tokens: ["first", " second"], gate: (i) => (i === 1 ? seen : undefined) });
    const stream = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "hold on" }],
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (text === "first") firstSeen();
    }
    expect(text).toBe("first second");
  });

  it("answers without stream with one chat.completion", async () => {
    const completion = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "hi" }],
    });
    expect(completion.object).toBe("chat.completion");
    expect(completion.choices[0]?.message).toMatchObject({ role: "assistant", content: "Hello from the gateway" });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
  });

  it("streams reasoning as reasoning_content before the answer", async () => {
    reply = () => ({ deltas: [wire.reasoning("Thinking "), wire.reasoning("hard.")], tokens: ["Done."] });
    const stream = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "think" }],
      reasoning_effort: "low",
      stream: true,
    });
    let reasoning = "";
    let content = "";
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string | null; reasoning_content?: string } | undefined;
      reasoning += delta?.reasoning_content ?? "";
      content += delta?.content ?? "";
    }
    expect(reasoning).toBe("Thinking hard.");
    expect(content).toBe("Done.");
    expect(upstream.requests.at(-1)?.body.reasoning_effort).toBe("low");
  });

  it("carries a tool round trip: the model's call, the tool's output back, valid messages upstream", async () => {
    reply = () => ({
      deltas: [wire.toolCall(0, "call_1", "get_weather"), wire.toolArgs(0, '{"city":'), wire.toolArgs(0, '"Paris"}')],
      tokens: [],
      finishReason: "tool_calls",
    });
    const tools = [
      {
        type: "function" as const,
        function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
      },
    ];
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "weather in Paris?" }];
    const first = await client.chat.completions.create({ model: "fake-model", messages, tools });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(call).toMatchObject({
      id: "call_1",
      type: "function",
      function: { name: "get_weather", arguments: '{"city":"Paris"}' },
    });

    reply = () => ({ tokens: ["Sunny."] });
    messages.push(first.choices[0]!.message, { role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" });
    const second = await client.chat.completions.create({ model: "fake-model", messages, tools });
    expect(second.choices[0]?.message.content).toBe("Sunny.");
    const sent = upstream.requests.at(-1)?.body;
    expect(sent?.messages?.[1]).toMatchObject({
      role: "assistant",
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      ],
    });
    expect(sent?.messages?.[2]).toEqual({ role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" });
    expect(sent?.tools).toEqual(tools);
  });

  it("passes images, JSON schema output and sampling through as the upstream's fields", async () => {
    await client.chat.completions.create({
      model: "fake-model",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "what is this?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
          ],
        },
      ],
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "answer",
          schema: { type: "object", properties: { kind: { type: "string" } } },
          strict: true,
        },
      },
      temperature: 0.5,
      max_completion_tokens: 100,
      seed: 7,
      stop: ["\n\n"],
    });
    const body = upstream.requests.at(-1)?.body;
    expect(body?.messages?.[0]?.content).toEqual([
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
    ]);
    expect(body?.response_format).toMatchObject({ type: "json_schema", json_schema: { name: "answer", strict: true } });
    expect(body).toMatchObject({ temperature: 0.5, seed: 7, stop: ["\n\n"] });
  });

  it("raises each error as the SDK's own class, with OpenAI's error shape", async () => {
    const bad = await client.chat.completions
      .create({ model: "fake-model", messages: [{ role: "wizard", content: "hi" }] as never })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ type: "invalid_request_error" });
    expect((bad as Error).message).toMatch(/messages\[0\]\.role/);

    const refused = await client.chat.completions
      .create({ model: "fake-model", messages: [{ role: "user", content: "hi" }], n: 2 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("n");

    const anonymous = new OpenAI({ baseURL: client.baseURL, apiKey: "not-a-key", maxRetries: 0 });
    const unauthenticated = await anonymous.models.list().catch((e: unknown) => e);
    expect(unauthenticated).toBeInstanceOf(OpenAI.AuthenticationError);

    reply = () => ({ status: 503, errorMessage: "overloaded" });
    const unavailable = await client.chat.completions
      .create({ model: "fake-model", messages: [{ role: "user", content: "hi" }] })
      .catch((e: unknown) => e);
    expect(unavailable).toBeInstanceOf(OpenAI.InternalServerError);
    expect((unavailable as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
  });

  it("raises RateLimitError with retry-after for a caller over its budget, as the SDK retries on", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? held : undefined) });
    const limited = new OpenAI({ baseURL: client.baseURL, apiKey: LIMITED, maxRetries: 0 });
    const open = await limited.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    const refused = await limited.chat.completions
      .create({ model: "fake-model", messages: [{ role: "user", content: "again" }] })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
    const error = refused as InstanceType<typeof OpenAI.RateLimitError>;
    expect(error.headers?.get("retry-after")).toBe("1");
    expect(error.error).toMatchObject({ type: "rate_limit_error", code: "resource_exhausted" });
    expect(error.message).toMatch(/caller "limited" has 1 streams open/);
    release();
    for await (const _ of open) {
      // drained, so the caller's stream ends and its slot is free again
    }
  });

  it("raises a failure after the first chunk mid-iteration, never a clean end", async () => {
    // The upstream cuts its connection once the client has the first chunk.
    let firstSeen!: () => void;
    const seen = new Promise<void>((resolve) => (firstSeen = resolve));
    reply = () => ({ tokens: ["partial"], gate: (i) => (i === 1 ? seen : undefined), end: "cut" });
    const stream = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
    const texts: string[] = [];
    const failure = await (async () => {
      for await (const chunk of stream) {
        texts.push(chunk.choices[0]?.delta.content ?? "");
        firstSeen();
      }
    })().catch((e: unknown) => e);
    expect(texts.join("")).toBe("partial");
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as Error).message).toMatch(/upstream connection lost/);
  });

  it("closes the upstream's request when the client aborts mid-stream", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    reply = () => ({ tokens: ["one", " two", " three"], gate: (i) => (i === 1 ? held : undefined) });
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "fake-model", messages: [{ role: "user", content: "hi" }], stream: true },
      { signal: controller.signal },
    );
    const index = upstream.requests.length - 1;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content === "one") break; // leaving the loop aborts the request
    }
    expect(await upstream.ended(index)).toBe("closed");
    release();
  });
});

/** A streamed chunk as JSON, read loosely: the test compares what each side wrote. */
interface Chunk {
  id: string;
  object: string;
  model: string;
  choices: { delta?: Record<string, unknown>; finish_reason?: string | null; [key: string]: unknown }[];
  usage?: Record<string, unknown>;
}

describe("Chat Completions on the wire", () => {
  it("streams what the upstream streamed, field by field, rewriting only the fields docs/openai-api.md names", async () => {
    reply = () => ({ tokens: ["One", " two", " three"], tokenDelayMs: 5 });
    const body = JSON.stringify({
      model: "fake-model",
      messages: [{ role: "user", content: "count" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const events = async (url: string) => {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
        body,
      });
      const text = await response.text();
      return text
        .split("\n\n")
        .filter((e) => e.startsWith("data: "))
        .map((e) => e.slice(6))
        .map((e) => (e === "[DONE]" ? e : (JSON.parse(e) as Chunk)));
    };
    const upstreamEvents = await events(`${upstream.baseURL}/chat/completions`);
    const gatewayEvents = await events(`${client.baseURL}/chat/completions`);
    expect(gatewayEvents.at(-1)).toBe("[DONE]");
    expect(upstreamEvents.at(-1)).toBe("[DONE]");
    const chunks = (list: typeof upstreamEvents) => list.filter((e): e is Chunk => e !== "[DONE]");
    const content = (list: Chunk[]) => list.filter((c) => c.choices[0]?.delta?.content);
    const [up, gw] = [chunks(upstreamEvents), chunks(gatewayEvents)];
    // Every content chunk the upstream sent, in order, with the same choice; the role rides on the
    // first (the upstream's own role-only chunk carries nothing else).
    expect(content(gw).map((c) => c.choices)).toEqual(
      content(up).map((c, i) => [
        { ...c.choices[0], delta: { ...(i === 0 && { role: "assistant" }), ...c.choices[0]?.delta }, logprobs: null },
      ]),
    );
    // The finish reason and the usage are the upstream's.
    const finishOf = (list: Chunk[]) => list.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason;
    expect(finishOf(gw)).toBe(finishOf(up));
    expect(gw.at(-1)?.usage).toMatchObject(up.at(-1)?.usage ?? { missing: "usage" });
    // The gateway's own: one id across the reply, `object`, and `model` (the model asked for).
    expect(new Set(gw.map((c) => c.id)).size).toBe(1);
    expect(gw.every((c) => c.object === "chat.completion.chunk" && c.model === "fake-model")).toBe(true);
  });
});

describe("Responses with the openai SDK", () => {
  it("streams the Responses events with client.responses.stream, and completes with the usage", async () => {
    reply = () => ({
      deltas: [wire.reasoning("Thinking "), wire.reasoning("hard.")],
      tokens: ["Hello", " from", " the", " gateway"],
      usageDetails: { completion_tokens_details: { reasoning_tokens: 2 } },
    });
    const stream = client.responses.stream({
      model: "fake-model",
      instructions: "be brief",
      input: "hi",
      reasoning: { effort: "low" },
    });
    const types: string[] = [];
    let text = "";
    let reasoning = "";
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.reasoning_text.delta") reasoning += event.delta;
    }
    const response = await stream.finalResponse();
    expect(text).toBe("Hello from the gateway");
    expect(reasoning).toBe("Thinking hard.");
    expect(types.slice(0, 2)).toEqual(["response.created", "response.in_progress"]);
    expect(types.at(-1)).toBe("response.completed");
    expect(response.status).toBe("completed");
    expect(response.output_text).toBe("Hello from the gateway");
    expect(response.output.map((item) => item.type)).toEqual(["reasoning", "message"]);
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBe(2);
    expect(response.usage?.total_tokens).toBeGreaterThan(0);
    const sent = upstream.requests.at(-1)?.body;
    expect(sent?.messages).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" },
    ]);
    expect(sent?.reasoning_effort).toBe("low");
  });

  it("streams with create({stream: true}), each event numbered in order", async () => {
    const stream = await client.responses.create({ model: "fake-model", input: "hi", stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const done = events.find((e) => e.type === "response.output_text.done");
    expect(done && "text" in done && done.text).toBe("Hello from the gateway");
    expect(events.at(-1)?.type).toBe("response.completed");
  });

  it("answers without stream with one response object", async () => {
    const response = await client.responses.create({ model: "fake-model", input: "hi", max_output_tokens: 100 });
    // Stored by default, as OpenAI's (test/e2e/openai-stored.test.ts covers what that gives).
    expect(response).toMatchObject({ object: "response", status: "completed", store: true, max_output_tokens: 100 });
    expect(response.id).toMatch(/^resp_/);
    expect(response.output_text).toBe("Hello from the gateway");
    expect(response.usage?.input_tokens).toBeGreaterThan(0);
    expect(upstream.requests.at(-1)?.body.max_tokens ?? upstream.requests.at(-1)?.body.max_completion_tokens).toBe(100);
  });

  it("carries a function call round trip: the model's call, its output back as function_call_output", async () => {
    reply = () => ({
      deltas: [wire.toolCall(0, "call_1", "get_weather"), wire.toolArgs(0, '{"city":'), wire.toolArgs(0, '"Paris"}')],
      tokens: [],
      finishReason: "tool_calls",
    });
    const tools: OpenAI.Responses.FunctionTool[] = [
      {
        type: "function",
        name: "get_weather",
        parameters: { type: "object", properties: { city: { type: "string" } } },
        strict: false,
      },
    ];
    const input: OpenAI.Responses.ResponseInputItem[] = [{ role: "user", content: "weather in Paris?" }];
    const first = await client.responses.create({ model: "fake-model", input, tools });
    const call = first.output.find((item) => item.type === "function_call");
    expect(call).toMatchObject({ call_id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' });

    reply = () => ({ tokens: ["Sunny."] });
    input.push(...(first.output as OpenAI.Responses.ResponseInputItem[]), {
      type: "function_call_output",
      call_id: "call_1",
      output: "sunny, 21 C",
    });
    const second = client.responses.stream({ model: "fake-model", input, tools });
    const response = await second.finalResponse();
    expect(response.output_text).toBe("Sunny.");
    const sent = upstream.requests.at(-1)?.body;
    expect(sent?.messages?.[1]).toMatchObject({
      role: "assistant",
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      ],
    });
    expect(sent?.messages?.[2]).toEqual({ role: "tool", tool_call_id: "call_1", content: "sunny, 21 C" });
    expect(sent?.tools).toEqual([
      {
        type: "function",
        function: { name: "get_weather", parameters: tools[0]!.parameters, strict: false },
      },
    ]);
  });

  it("streams a function call's arguments in pieces", async () => {
    reply = () => ({
      deltas: [wire.toolCall(0, "call_9", "lookup"), wire.toolArgs(0, '{"q":'), wire.toolArgs(0, '"x"}')],
      tokens: [],
      finishReason: "tool_calls",
    });
    const stream = client.responses.stream({
      model: "fake-model",
      input: "look it up",
      tools: [{ type: "function", name: "lookup", parameters: { type: "object" }, strict: false }],
    });
    const pieces: string[] = [];
    stream.on("response.function_call_arguments.delta", (event) => pieces.push(event.delta));
    const response = await stream.finalResponse();
    expect(pieces.join("")).toBe('{"q":"x"}');
    expect(response.output[0]).toMatchObject({ type: "function_call", call_id: "call_9", arguments: '{"q":"x"}' });
  });

  it("sends text.format's JSON schema as the upstream's response_format, and parses the answer", async () => {
    reply = () => ({ tokens: ['{"kind":', '"cat"}'] });
    const response = await client.responses.parse({
      model: "fake-model",
      input: [
        {
          role: "user",
          content: [
            { type: "input_text", text: "what is this?" },
            { type: "input_image", image_url: "https://example.com/cat.png", detail: "low" },
          ],
        },
      ],
      text: {
        format: {
          type: "json_schema",
          name: "answer",
          schema: { type: "object", properties: { kind: { type: "string" } }, required: ["kind"] },
          strict: true,
        },
      },
      temperature: 0.5,
      top_p: 0.9,
    });
    expect(response.output_parsed).toEqual({ kind: "cat" });
    const body = upstream.requests.at(-1)?.body;
    expect(body?.response_format).toMatchObject({ type: "json_schema", json_schema: { name: "answer", strict: true } });
    expect(body?.messages?.[0]?.content).toEqual([
      { type: "text", text: "what is this?" },
      { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
    ]);
    expect(body).toMatchObject({ temperature: 0.5, top_p: 0.9 });
  });

  it("says incomplete when the output was cut at max_output_tokens", async () => {
    reply = () => ({ tokens: ["Par"], finishReason: "length" });
    const response = await client.responses.create({ model: "fake-model", input: "hi", max_output_tokens: 16 });
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details?.reason).toBe("max_output_tokens");
  });

  it("refuses background responses without store, malformed stored ids, and hosted tools, as BadRequestError naming the field", async () => {
    const refused = async (body: Record<string, unknown>) => {
      const error = await client.responses
        .create({ model: "fake-model", input: "hi", ...body } as never)
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.BadRequestError);
      return error as InstanceType<typeof OpenAI.BadRequestError>;
    };
    const stored = await refused({ previous_response_id: "resp_123" });
    expect(stored.param).toBe("previous_response_id");
    expect(stored.message).toMatch(/must be a response's id/);
    expect((await refused({ store: "yes" })).param).toBe("store");
    expect((await refused({ conversation: "conv_1" })).param).toBe("conversation");
    expect((await refused({ background: true, store: false })).param).toBe("background");
    const hosted = await refused({ tools: [{ type: "web_search" }] });
    expect(hosted.param).toBe("tools[0].type");
    expect(hosted.message).toMatch(/"web_search" tools are not supported/);
    // Streamed requests are refused the same way, before the first byte.
    const streamed = await client.responses
      .create({ model: "fake-model", input: "hi", background: true, store: false, stream: true })
      .catch((e: unknown) => e);
    expect(streamed).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it("raises a failure after the first event mid-iteration, never a clean end", async () => {
    let firstSeen!: () => void;
    const seen = new Promise<void>((resolve) => (firstSeen = resolve));
    reply = () => ({ tokens: ["partial"], gate: (i) => (i === 1 ? seen : undefined), end: "cut" });
    const stream = await client.responses.create({ model: "fake-model", input: "hi", stream: true });
    const types: string[] = [];
    const failure = await (async () => {
      for await (const event of stream) {
        types.push(event.type);
        if (event.type === "response.output_text.delta") firstSeen();
      }
    })().catch((e: unknown) => e);
    expect(types).toContain("response.output_text.delta");
    expect(types.at(-1)).toBe("response.failed");
    expect(failure).toBeInstanceOf(OpenAI.APIError);
    expect((failure as Error).message).toMatch(/upstream connection lost/);

    // The stream helper raises it too, rather than resolving with the failed response.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    reply = () => ({ tokens: ["partial"], gate: (i) => (i === 1 ? held : undefined), end: "cut" });
    const helper = client.responses.stream({ model: "fake-model", input: "hi" });
    helper.on("response.output_text.delta", () => release());
    const raised = await helper.finalResponse().catch((e: unknown) => e);
    expect(raised).toBeInstanceOf(OpenAI.APIError);
  });

  it("closes the upstream's request when the client stops reading a streamed response", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    reply = () => ({ tokens: ["one", " two"], gate: (i) => (i === 1 ? held : undefined) });
    const stream = await client.responses.create({ model: "fake-model", input: "hi", stream: true });
    const index = upstream.requests.length - 1;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") break; // leaving the loop aborts the request
    }
    expect(await upstream.ended(index)).toBe("closed");
    release();
  });
});

describe("Models with the openai SDK", () => {
  it("lists the models ListModels names, and retrieves one or answers 404", async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    expect(ids).toEqual(expect.arrayContaining(["fake-model", "other-model"]));
    const one = await client.models.retrieve("other-model");
    expect(one).toMatchObject({ id: "other-model", object: "model" });
    const missing = await client.models.retrieve("no-such-model").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    // A route the gateway does not serve says which ones it does.
    const unserved = await client.post("/embeddings", { body: { model: "m", input: "x" } }).catch((e: unknown) => e);
    expect(unserved).toBeInstanceOf(OpenAI.NotFoundError);
    expect((unserved as Error).message).toMatch(
      /\/v1\/chat\/completions, \/v1\/responses, \/v1\/conversations and \/v1\/models/,
    );
  });
});

describe("malformed bodies", () => {
  const routes = [
    {
      route: "chat/completions",
      items: "messages",
      keys: [
        "model",
        "messages",
        "temperature",
        "tools",
        "tool_choice",
        "stop",
        "n",
        "seed",
        "logit_bias",
        "response_format",
        "stream",
      ],
    },
    {
      route: "responses",
      items: "input",
      keys: [
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "temperature",
        "store",
        "stream",
      ],
    },
  ];
  it.each(routes)(
    "answers 2,000 generated malformed bodies to /v1/$route with 4xx in OpenAI's shape, and a stream beside them finishes",
    async ({ route, items, keys }) => {
      let seed = 7;
      const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
      const values = [null, true, -1, 1.5, "x", [], {}, [1], { a: 1 }, "\u0000", 2 ** 53, "🙂".repeat(3)];
      const bodies = Array.from({ length: 2000 }, (_, i) => {
        const valid = { model: "fake-model", [items]: [{ role: "user", content: "hi" }] } as Record<string, unknown>;
        switch (i % 4) {
          case 0:
            return JSON.stringify(valid).slice(0, Math.floor(random() * 40)); // cut short
          case 1:
            return JSON.stringify({ ...valid, [pick(keys)]: pick(values) });
          case 2:
            return JSON.stringify({
              ...valid,
              [items]: [{ role: pick(["user", "tool", "x", ""]), content: pick(values) }],
            });
          default:
            return JSON.stringify(pick(values));
        }
      });
      // A stream held open across the whole run.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      reply = () => ({ tokens: ["still", " here"], gate: (i) => (i === 1 ? held : undefined) });
      const stream = await client.chat.completions.create({
        model: "fake-model",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      reply = () => ({ tokens: ["ok"] });
      const statuses = new Map<number, number>();
      const url = `${client.baseURL}/${route}`;
      for (let i = 0; i < bodies.length; i += 25) {
        await Promise.all(
          bodies.slice(i, i + 25).map(async (body) => {
            const response = await fetch(url, {
              method: "POST",
              headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
              body,
            });
            const text = await response.text();
            statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
            if (response.status >= 400)
              expect(JSON.parse(text)).toMatchObject({ error: { message: expect.any(String) } });
          }),
        );
      }
      // Some generated bodies are valid requests (a harmless value in an optional field): 200s.
      expect([...statuses.keys()].every((s) => s === 200 || (s >= 400 && s < 500))).toBe(true);
      expect(statuses.get(400)).toBeGreaterThan(1000);
      release();
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      expect(text).toBe("still here");
    },
  );
});
