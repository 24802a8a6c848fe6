// The request side of tools, images, structured output and the knobs, end to end: JSON written as
// an OpenAI user writes it, through the real Envoy to the built service, and what the fake
// upstream received; the same through grpcurl; and ListModels over HTTP and grpcurl with one
// upstream down.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { grpcurl, startStack, type Stack } from "../support/processes.js";
import { allEvents, errorBody, post } from "../support/http.js";

let upstream: FakeUpstream;
let stack: Stack;

beforeAll(async () => {
  upstream = await startFakeUpstream({
    reply: () => ({ tokens: ["ok"] }),
    models: () => ({ ids: ["gpt-4o", "fake-model"], ownedBy: "openai" }),
  });
  // An upstream that is down: nothing listens on its port any more.
  const gone = await startFakeUpstream();
  await gone.close();
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e-default-key",
    CHAT_MODEL: "fake-model",
    UPSTREAM_LOCAL_BASE_URL: gone.baseURL,
    UPSTREAM_LOCAL_API_KEY: "sk-e2e-local-key",
    UPSTREAM_LOCAL_MODELS: "llama3.2",
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

const chat = (body: unknown) => post(stack.envoy.httpPort, "/chat", JSON.stringify(body));
const lastBody = () => upstream.requests.at(-1)?.body;
const json = (body: unknown) => JSON.stringify(body);

const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
      additionalProperties: false,
    },
    strict: true,
  },
};

describe("HTTP through Envoy, with the request written as an OpenAI user writes it", () => {
  it("carries a whole tool round trip to the upstream in its own format", async () => {
    const first = await chat({
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [WEATHER],
      tool_choice: { mode: "required" },
      parallel_tool_calls: false,
    });
    expect(first.status).toBe(200);
    expect((await allEvents(first)).at(-1)?.finish?.finishReason).toBe("stop");
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [{ role: "user", content: "Weather in Paris?" }],
      stream: true,
      stream_options: { include_usage: true },
      tools: [WEATHER],
      tool_choice: "required",
      parallel_tool_calls: false,
    });

    // The assistant's turn as OpenAI returned it (content null beside the calls), then the result.
    const assistant = {
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_abc", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      ],
    };
    const second = await chat({
      messages: [
        { role: "user", content: "Weather in Paris?" },
        assistant,
        { role: "tool", tool_call_id: "call_abc", content: '{"celsius":18}' },
      ],
      tools: [WEATHER],
      tool_choice: { function: "get_weather" },
    });
    expect(second.status).toBe(200);
    await second.body();
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [
        { role: "user", content: "Weather in Paris?" },
        assistant,
        { role: "tool", content: '{"celsius":18}', tool_call_id: "call_abc" },
      ],
      stream: true,
      stream_options: { include_usage: true },
      tools: [WEATHER],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
  });

  it("carries images, response_format, the knobs and extra_body", async () => {
    const png =
      "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    const schema = { type: "object", properties: { colour: { type: "string" } }, required: ["colour"] };
    const response = await chat({
      model: "gpt-4o",
      messages: [
        { role: "developer", content: "Answer in JSON." },
        {
          role: "user",
          parts: [
            { type: "text", text: "What colour is this?" },
            { type: "image_url", image_url: { url: png, detail: "low" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
          ],
        },
      ],
      response_format: { type: "json_schema", json_schema: { name: "colour", schema, strict: true } },
      reasoning_effort: "low",
      seed: 42,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      logit_bias: { "50256": -100 },
      user: "user-42",
      extra_body: { top_k: 20, chat_template_kwargs: { enable_thinking: false } },
    });
    expect(response.status).toBe(200);
    await response.body();
    expect(lastBody()).toEqual({
      model: "gpt-4o",
      messages: [
        { role: "developer", content: "Answer in JSON." },
        {
          role: "user",
          content: [
            { type: "text", text: "What colour is this?" },
            { type: "image_url", image_url: { url: png, detail: "low" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
          ],
        },
      ],
      stream: true,
      stream_options: { include_usage: true },
      response_format: { type: "json_schema", json_schema: { name: "colour", schema, strict: true } },
      reasoning_effort: "low",
      seed: 42,
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
      logit_bias: { "50256": -100 },
      user: "user-42",
      top_k: 20,
      chat_template_kwargs: { enable_thinking: false },
    });
  });

  it.each([
    [
      "a malformed data URL",
      {
        messages: [
          {
            role: "user",
            parts: [
              { type: "text", text: "see" },
              { type: "image_url", image_url: { url: "data:image/png,iVBORw0KGgo=" } },
            ],
          },
        ],
      },
      "messages[0].parts[1].image_url.url: a data: URL must be base64-encoded (data:image/png;base64,...)",
    ],
    [
      "extra_body setting n",
      { text: "hi", extra_body: { n: 3 } },
      "extra_body.n: may not be set: the gateway sets model, messages, stream, stream_options, n itself",
    ],
    [
      "an assistant tool call without an id",
      {
        messages: [{ role: "assistant", tool_calls: [{ type: "function", function: { name: "f", arguments: "{}" } }] }],
      },
      "messages[0].tool_calls[0].id: must not be empty (the id the model gave the call)",
    ],
    [
      "a seed JSON cannot carry",
      { text: "hi", seed: "1152921504606846976" },
      "seed: 1152921504606846976 is outside [-9007199254740991, 9007199254740991], the integers JSON carries exactly",
    ],
  ])("answers %s with 400 and a JSON error naming the field, before the upstream", async (_name, body, message) => {
    const before = upstream.requests.length;
    const response = await chat(body);
    expect(response.status).toBe(400);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(await response.body())).toEqual(errorBody(status.INVALID_ARGUMENT, message, "INVALID_REQUEST"));
    expect(upstream.requests).toHaveLength(before);
  });
});

describe("JSON nested deep in the Struct fields, through Envoy", () => {
  /** A JSON schema of objects `depth` deep, each in the `properties` of the one above: 2 × depth + 1 levels. */
  const schema = (depth: number): Record<string, unknown> =>
    depth === 0 ? { type: "string" } : { type: "object", properties: { child: schema(depth - 1) } };
  const tool = (parameters: Record<string, unknown>) => ({
    type: "function",
    function: { name: "deep", description: "", parameters },
  });
  /** `levels` objects, one in the other (the JSON of the reproduction). */
  const objects = (levels: number) => `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;

  it.each([
    ["a tool schema 16 objects deep (33 levels)", { text: "hi", tools: [tool(schema(16))] }],
    ["a tool schema 31 objects deep (63 levels)", { text: "hi", tools: [tool(schema(31))] }],
    [
      "a response schema 31 objects deep",
      { text: "hi", response_format: { type: "json_schema", json_schema: { name: "deep", schema: schema(31) } } },
    ],
    ["extra_body 64 levels deep", { text: "hi", extra_body: JSON.parse(objects(64)) }],
  ])("passes %s to the upstream as it is", async (_name, body) => {
    const response = await chat(body);
    expect(response.status).toBe(200);
    expect((await allEvents(response)).at(-1)?.finish?.finishReason).toBe("stop");
    const sent = lastBody() as Record<string, unknown>;
    if ("tools" in body) {
      expect((sent.tools as { function: { parameters: unknown } }[])[0]?.function.parameters).toEqual(
        body.tools[0]?.function.parameters,
      );
    }
    if ("response_format" in body) expect(sent.response_format).toEqual(body.response_format);
    if ("extra_body" in body) expect(sent.a).toEqual(body.extra_body.a);
  });

  it.each([
    [
      "tools[0].function.parameters",
      (levels: number) => `{"text":"hi","tools":[${json(tool({ x: "X" }))}]}`.replace('"X"', objects(levels - 1)),
    ],
    ["extra_body", (levels: number) => `{"text":"hi","extra_body":${objects(levels)}}`],
  ])("refuses %s nested deeper than 64 levels with 400 naming it, up to Envoy's own limit", async (field, body) => {
    const before = upstream.requests.length;
    // 65 levels, and the most Envoy's JSON parser takes in this field (100 levels in the whole body).
    for (const levels of [65, field === "extra_body" ? 99 : 96]) {
      const response = await post(stack.envoy.httpPort, "/chat", body(levels));
      expect(response.status).toBe(400);
      expect(JSON.parse(await response.body())).toEqual(
        errorBody(
          status.INVALID_ARGUMENT,
          `${field}: nested deeper than 64 levels (each object or array is one)`,
          "INVALID_REQUEST",
        ),
      );
    }
    // Deeper still, Envoy refuses the body itself (docs/errors.md, Envoy's own replies).
    const response = await post(stack.envoy.httpPort, "/chat", body(100));
    expect(response.status).toBe(400);
    expect(JSON.parse(await response.body())).toEqual({
      code: 3,
      message:
        "the request is not a valid JSON ChatRequest: malformed JSON, a field of the wrong type, or invalid UTF-8",
    });
    expect(upstream.requests).toHaveLength(before);
  });
});

describe("grpcurl with server reflection", () => {
  it("sends tools and a tool result, which the upstream receives in its format", async () => {
    const request = {
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "18°C" },
      ],
      tools: [WEATHER],
    };
    const { code, stderr } = await grpcurl(
      stack.service.port,
      ["-d", JSON.stringify(request)],
      "chat.v1.ChatService/Chat",
    );
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(lastBody()?.messages).toEqual([
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: "tool", content: "18°C", tool_call_id: "call_1" },
    ]);
    expect(lastBody()?.tools).toEqual([WEATHER]);
  });

  it("shows a bad request's field", async () => {
    const { stderr, code } = await grpcurl(
      stack.service.port,
      ["-d", JSON.stringify({ text: "hi", reasoning_effort: "max" })],
      "chat.v1.ChatService/Chat",
    );
    expect(code).not.toBe(0);
    expect(stderr).toContain("Code: InvalidArgument");
    expect(stderr).toContain('reasoning_effort: "max" is not one of none, minimal, low, medium, high, xhigh');
  });
});

describe("ListModels with one upstream down", () => {
  const expected = {
    models: [
      { id: "fake-model", upstream: "default", ownedBy: "openai", configured: true },
      { id: "gpt-4o", upstream: "default", ownedBy: "openai" },
      { id: "llama3.2", upstream: "local", configured: true },
    ],
    unavailable: [{ upstream: "local", message: "upstream unreachable" }],
  };

  it("answers GET /models through Envoy with one JSON object, not a stream", async () => {
    const response = await post(stack.envoy.httpPort, "/models", "", {}, "GET");
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toBe("application/json");
    const body = await response.body();
    expect(JSON.parse(body)).toEqual(expected);
    expect(body).not.toMatch(/sk-e2e|127\.0\.0\.1/);
  });

  it("lets a browser call it (CORS preflight for GET)", async () => {
    const response = await post(
      stack.envoy.httpPort,
      "/models",
      "",
      {
        origin: "http://app.example",
        "access-control-request-method": "GET",
      },
      "OPTIONS",
    );
    expect(response.status).toBe(200);
    expect(response.headers["access-control-allow-origin"]).toBe("http://app.example");
    expect(response.headers["access-control-allow-methods"]).toContain("GET");
  });

  it("answers grpcurl, with no proto files", async () => {
    const { stdout, stderr, code } = await grpcurl(stack.service.port, [], "chat.v1.ChatService/ListModels");
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    expect(JSON.parse(stdout)).toEqual(expected);
    const described = await grpcurl(stack.service.port, [], "describe", "chat.v1.ChatService");
    expect(described.stdout).toContain(
      "rpc ListModels ( .chat.v1.ListModelsRequest ) returns ( .chat.v1.ListModelsResponse );",
    );
  });
});
