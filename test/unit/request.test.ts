// The request side of tools, images, structured output and the sampling knobs, over gRPC
// in-process: what the upstream received, as the JSON body the openai SDK sent. And ListModels.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import type { ChatServiceClient, ListModelsResponse } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { collect, startHarness, type Harness, type PartialRequest } from "../support/grpc.js";
import { hold } from "../support/gates.js";

let harness: Harness | undefined;
const extra: FakeUpstream[] = [];
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  for (const u of extra.splice(0)) await u.close();
});

const WEATHER_SCHEMA = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
};

describe("what the upstream receives", () => {
  // One gateway for the requests that need no settings of their own: each checks the last body.
  let shared: Harness;
  beforeAll(async () => {
    shared = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
  });
  afterAll(() => shared.close());
  const lastBody = () => shared.upstream.requests.at(-1)?.body;

  it("a text-only request: exactly the body it always got", async () => {
    expect((await collect(shared.client, { text: "hello" })).code).toBe(status.OK);
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [{ role: "user", content: "hello" }],
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("a tool round trip: the tools first, then the assistant's calls and the tool results, in OpenAI's format", async () => {
    const tools = [
      {
        type: "function",
        function: { name: "get_weather", description: "Current weather", parameters: WEATHER_SCHEMA, strict: true },
      },
    ];
    const first = await collect(shared.client, {
      messages: [{ role: "system", content: "Use the tools." }],
      text: "Weather in Paris and Rome?",
      tools,
      toolChoice: { choice: { $case: "mode", value: "required" } },
      parallelToolCalls: true,
    });
    expect(first.code).toBe(status.OK);
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [
        { role: "system", content: "Use the tools." },
        { role: "user", content: "Weather in Paris and Rome?" },
      ],
      stream: true,
      stream_options: { include_usage: true },
      tools: [
        {
          type: "function",
          function: { name: "get_weather", description: "Current weather", parameters: WEATHER_SCHEMA, strict: true },
        },
      ],
      tool_choice: "required",
      parallel_tool_calls: true,
    });

    const second = await collect(shared.client, {
      messages: [
        { role: "system", content: "Use the tools." },
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          toolCalls: [
            { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
            { id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: "tool", toolCallId: "call_1", content: '{"celsius":18}' },
        { role: "tool", toolCallId: "call_2", content: '{"celsius":24}' },
      ],
      tools,
      toolChoice: { choice: { $case: "function", value: "get_weather" } },
    });
    expect(second.code).toBe(status.OK);
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [
        { role: "system", content: "Use the tools." },
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
            { id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: "tool", content: '{"celsius":18}', tool_call_id: "call_1" },
        { role: "tool", content: '{"celsius":24}', tool_call_id: "call_2" },
      ],
      stream: true,
      stream_options: { include_usage: true },
      tools: [
        {
          type: "function",
          function: { name: "get_weather", description: "Current weather", parameters: WEATHER_SCHEMA, strict: true },
        },
      ],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
  });

  it("images as OpenAI content parts, and response_format, the knobs and extra_body as top-level keys", async () => {
    const png =
      "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    const result = await collect(shared.client, {
      messages: [
        {
          role: "user",
          content: "Compare:",
          parts: [
            { type: "image_url", imageUrl: { url: "https://example.com/a.jpg", detail: "low" } },
            { type: "image_url", imageUrl: { url: png } },
            { type: "text", text: "Which is bigger?" },
          ],
        },
      ],
      responseFormat: { type: "json_schema", jsonSchema: { name: "answer", schema: { type: "object" }, strict: true } },
      reasoningEffort: "minimal",
      seed: 1234,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      logitBias: { "50256": -100 },
      user: "end-user-7",
      extraBody: { top_k: 20, min_p: 0.05, chat_template_kwargs: { enable_thinking: false } },
    });
    expect(result.code).toBe(status.OK);
    expect(lastBody()).toEqual({
      model: "fake-model",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Compare:" },
            { type: "image_url", image_url: { url: "https://example.com/a.jpg", detail: "low" } },
            { type: "image_url", image_url: { url: png } },
            { type: "text", text: "Which is bigger?" },
          ],
        },
      ],
      stream: true,
      stream_options: { include_usage: true },
      response_format: {
        type: "json_schema",
        json_schema: { name: "answer", schema: { type: "object" }, strict: true },
      },
      reasoning_effort: "minimal",
      seed: 1234,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      logit_bias: { "50256": -100 },
      user: "end-user-7",
      top_k: 20,
      min_p: 0.05,
      chat_template_kwargs: { enable_thinking: false },
    });
  });

  it.each<[string, PartialRequest, string]>([
    [
      "a malformed data URL",
      {
        messages: [
          {
            role: "user",
            parts: [
              { type: "text", text: "a" },
              { type: "image_url", imageUrl: { url: "data:image/png;base64,@@@@" } },
            ],
          },
        ],
      },
      "messages[0].parts[1].image_url.url: the data is not valid base64",
    ],
    [
      "extra_body setting the model",
      { text: "hi", extraBody: { model: "other" } },
      "extra_body.model: may not be set: the gateway sets model, messages, stream, stream_options, n itself",
    ],
    [
      "a tool result without its call id",
      { messages: [{ role: "tool", content: "18" }], text: "hi" },
      "messages[0].tool_call_id: a tool message needs the id of the call it answers",
    ],
    [
      "a bad tool name",
      { text: "hi", tools: [{ type: "function", function: { name: "get weather" } }] },
      'tools[0].function.name: "get weather" is not 1 to 64 letters, digits, underscores or dashes',
    ],
  ])("refuses %s with INVALID_ARGUMENT before calling the upstream", async (_name, request, details) => {
    const before = shared.upstream.requests.length;
    const result = await collect(shared.client, request);
    expect({ code: result.code, details: result.details, responses: result.responses }).toEqual({
      code: status.INVALID_ARGUMENT,
      details,
      responses: [],
    });
    expect(shared.upstream.requests).toHaveLength(before);
  });

  it("counts a data URL's decoded image toward MAX_INPUT_BYTES and MAX_IMAGE_BYTES", async () => {
    harness = await startHarness({ env: { MAX_INPUT_BYTES: "1000", MAX_IMAGE_BYTES: "2000" } });
    const url = (bytes: number) => `data:image/jpeg;base64,${Buffer.alloc(bytes, 7).toString("base64")}`;
    const ask = (bytes: number) =>
      collect(harness!.client, {
        messages: [{ role: "user", parts: [{ type: "image_url", imageUrl: { url: url(bytes) } }] }],
      });
    expect((await ask(1000)).code).toBe(status.OK);
    expect((await ask(1001)).details).toBe(
      "messages[0].parts[0].image_url.url: input is 1001 bytes, more than the limit of 1000",
    );
    expect((await ask(2001)).details).toBe(
      "messages[0].parts[0].image_url.url: the image is 2001 bytes, more than the limit of 2000",
    );
    expect(harness.upstream.requests).toHaveLength(1);
  });
});

function listModels(
  client: ChatServiceClient,
  metadata = new Metadata(),
): Promise<{ error: ServiceError | null; response: ListModelsResponse | undefined }> {
  return new Promise((resolve) => client.listModels({}, metadata, (error, response) => resolve({ error, response })));
}

describe("ListModels", () => {
  async function withUpstreams(env: Record<string, string> = {}) {
    const deepseek = await startFakeUpstream({
      models: () => ({ ids: ["deepseek-chat", "deepseek-reasoner", "deepseek-coder"], ownedBy: "deepseek" }),
    });
    const local = await startFakeUpstream({ models: () => ({ status: 503 }) });
    extra.push(deepseek, local);
    harness = await startHarness({
      env: {
        OPENAI_API_KEY: "sk-default-secret-key",
        UPSTREAM_DEEPSEEK_BASE_URL: deepseek.baseURL,
        UPSTREAM_DEEPSEEK_MODELS: "deepseek-chat,deepseek-reasoner",
        UPSTREAM_LOCAL_BASE_URL: local.baseURL,
        UPSTREAM_LOCAL_MODELS: "llama3.2,qwen*",
        FALLBACK_BASE_URL: local.baseURL,
        FALLBACK_MODEL: "qwen2.5",
        ...env,
      },
      upstream: { models: () => ({ ids: ["gpt-4o", "fake-model", "deepseek-chat"], ownedBy: "openai" }) },
    });
    return { deepseek, local };
  }

  it("lists each upstream's models with the upstream a Chat for them goes to, the configured names, and the upstream that failed", async () => {
    await withUpstreams();
    const { error, response } = await listModels(harness!.client);
    expect(error).toBeNull();
    expect(response).toEqual({
      models: [
        { id: "fake-model", upstream: "default", ownedBy: "openai", configured: true },
        { id: "gpt-4o", upstream: "default", ownedBy: "openai", configured: false },
        // deepseek-coder is listed by deepseek but would be routed to default: left out.
        { id: "deepseek-chat", upstream: "deepseek", ownedBy: "deepseek", configured: true },
        { id: "deepseek-reasoner", upstream: "deepseek", ownedBy: "deepseek", configured: true },
        { id: "llama3.2", upstream: "local", ownedBy: "", configured: true },
        { id: "qwen2.5", upstream: "local", ownedBy: "", configured: true },
      ],
      unavailable: [{ upstream: "local", message: "upstream error 503" }],
    });
  });

  it("asks each upstream once while its list is fresh, and again with MODELS_CACHE_MS=0", async () => {
    const { deepseek, local } = await withUpstreams();
    await Promise.all([listModels(harness!.client), listModels(harness!.client)]);
    await listModels(harness!.client);
    expect([harness!.upstream.listings.length, deepseek.listings.length, local.listings.length]).toEqual([1, 1, 1]);
    await harness!.close();
    harness = undefined;
    for (const u of extra.splice(0)) await u.close();

    const again = await withUpstreams({ MODELS_CACHE_MS: "0" });
    await listModels(harness!.client);
    await listModels(harness!.client);
    expect([harness!.upstream.listings.length, again.deepseek.listings.length]).toEqual([2, 2]);
  });

  it("names an upstream that times out, refuses the key or answers garbage, without its key or URL", async () => {
    const { promise: never } = hold();
    const slow = await startFakeUpstream({ models: () => ({ gate: never }) });
    const refusing = await startFakeUpstream({
      models: () => ({ status: 401, errorMessage: "Incorrect API key provided: sk-named-secret-key" }),
    });
    extra.push(slow, refusing);
    harness = await startHarness({
      env: {
        // Long enough for the answering upstreams on a loaded machine; the slow one never answers.
        MODELS_TIMEOUT_MS: "1500",
        UPSTREAM_SLOW_BASE_URL: slow.baseURL,
        UPSTREAM_SLOW_MODELS: "slow-model",
        UPSTREAM_REFUSING_BASE_URL: refusing.baseURL,
        UPSTREAM_REFUSING_API_KEY: "sk-named-secret-key",
        UPSTREAM_REFUSING_MODELS: "refusing-model",
      },
      // The default upstream answers with something that is not a model list.
      upstream: { models: () => ({ body: "<html>Welcome to nginx!</html>" }) },
    });
    const { error, response } = await listModels(harness.client);
    expect(error).toBeNull();
    expect(response?.unavailable).toEqual([
      { upstream: "default", message: "upstream sent malformed data" },
      { upstream: "slow", message: "upstream did not answer in time" },
      { upstream: "refusing", message: "upstream refused the gateway's credentials" },
    ]);
    expect(response?.models.map((m) => m.id)).toEqual(["fake-model", "slow-model", "refusing-model"]);
    expect(JSON.stringify(response)).not.toMatch(/secret|127\.0\.0\.1/);
  });

  it("needs a caller key when caller keys are configured, as Chat does", async () => {
    harness = await startHarness({ env: { CALLER_KEYS: "ops ops-key-0123456789abcdef" } });
    const refused = await listModels(harness.client);
    expect(refused.error?.code).toBe(status.UNAUTHENTICATED);
    expect(harness.upstream.listings).toHaveLength(0);
    const metadata = new Metadata();
    metadata.set("authorization", "Bearer ops-key-0123456789abcdef");
    const allowed = await listModels(harness.client, metadata);
    expect(allowed.error).toBeNull();
    expect(allowed.response?.models.map((m) => m.id)).toEqual(["demo", "fake-model"]);
  });
});
