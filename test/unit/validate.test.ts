// Validation of the request's fields beyond text: every problem names its field and says why, and a
// valid request becomes the upstream request field for field. No server: the in-process and
// end-to-end tests check that these problems reach callers as INVALID_ARGUMENT / 400.
import { describe, expect, it } from "vitest";
import { ChatRequest } from "../../src/gen/chat/v1/chat.js";
import { toUpstreamRequest, type RequestLimits } from "../../src/chat/validate.js";
import { bodyKeys } from "../../src/providers/openai/params.js";

type RequestInput = Parameters<typeof ChatRequest.fromPartial>[0];

const LIMITS: RequestLimits = {
  maxInputBytes: 262_144,
  maxMessages: 256,
  maxOutputTokens: 131_072,
  maxTools: 128,
  maxImageBytes: 20 * 1024 * 1024,
};
const validate = (request: RequestInput, limits: Partial<RequestLimits> = {}) =>
  toUpstreamRequest(ChatRequest.fromPartial(request), "default-model", { ...LIMITS, ...limits }, bodyKeys);
const problemOf = (request: RequestInput, limits: Partial<RequestLimits> = {}) => {
  const result = validate(request, limits);
  return result.ok ? undefined : result.problem;
};

const PNG_1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const image = (url: string, detail = "") => ({ type: "image_url", imageUrl: { url, detail } });
const weather = { type: "function", function: { name: "get_weather", parameters: { type: "object" } } };
const toolCall = (id: string, name = "get_weather", args = "{}") => ({
  id,
  type: "function",
  function: { name, arguments: args },
});

describe("a valid request with every new field", () => {
  it("becomes the upstream request", () => {
    const result = validate({
      messages: [
        {
          role: "user",
          content: "What is this?",
          parts: [image(`data:image/png;base64,${PNG_1x1}`, "high"), { type: "text", text: "and the weather?" }],
        },
        { role: "assistant", toolCalls: [toolCall("call_1", "get_weather", '{"city":"Paris"}')] },
        { role: "tool", toolCallId: "call_1", content: "18°C" },
      ],
      tools: [
        {
          type: "function",
          function: { name: "get_weather", description: "Weather", parameters: { type: "object" }, strict: true },
        },
      ],
      toolChoice: { choice: { $case: "mode", value: "auto" } },
      parallelToolCalls: true,
      reasoningEffort: "low",
      responseFormat: { type: "json_schema", jsonSchema: { name: "reply", schema: { type: "object" }, strict: true } },
      seed: 7,
      presencePenalty: -2,
      frequencyPenalty: 2,
      logitBias: { "0": 100, "50256": -100 },
      user: "end-user-1",
      extraBody: { top_k: 20 },
    });
    expect(result).toEqual({
      ok: true,
      request: {
        model: "default-model",
        messages: [
          {
            role: "user",
            content: "What is this?",
            parts: [
              { type: "image_url", url: `data:image/png;base64,${PNG_1x1}`, detail: "high" },
              { type: "text", text: "and the weather?" },
            ],
          },
          {
            role: "assistant",
            content: "",
            toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }],
          },
          { role: "tool", content: "18°C", toolCallId: "call_1" },
        ],
        tools: [{ name: "get_weather", description: "Weather", parameters: { type: "object" }, strict: true }],
        toolChoice: "auto",
        parallelToolCalls: true,
        reasoningEffort: "low",
        responseFormat: { type: "json_schema", name: "reply", schema: { type: "object" }, strict: true },
        seed: 7,
        presencePenalty: -2,
        frequencyPenalty: 2,
        logitBias: { "0": 100, "50256": -100 },
        user: "end-user-1",
        extraBody: { top_k: 20 },
      },
    });
  });

  it('leaves every new field out when it is unset, and takes an empty type as "function"', () => {
    expect(validate({ text: "hi" })).toEqual({
      ok: true,
      request: { model: "default-model", messages: [{ role: "user", content: "hi" }] },
    });
    const result = validate({
      messages: [{ role: "assistant", toolCalls: [{ id: "c", function: { name: "f", arguments: "{}" } }] }],
      text: "go on",
      tools: [{ function: { name: "f" } }],
      toolChoice: { choice: { $case: "function", value: "f" } },
    });
    expect(result.ok && result.request.tools).toEqual([{ name: "f" }]);
    expect(result.ok && result.request.toolChoice).toEqual({ function: "f" });
  });

  it("accepts a conversation whose only content is an image, or an assistant's tool calls", () => {
    expect(validate({ messages: [{ role: "user", parts: [image("https://example.com/a.png")] }] }).ok).toBe(true);
    expect(validate({ messages: [{ role: "assistant", toolCalls: [toolCall("c")] }] }).ok).toBe(true);
  });
});

describe("roles and the fields they need", () => {
  it.each<[string, RequestInput, string]>([
    [
      "an unknown role",
      { messages: [{ role: "wizard", content: "hi" }] },
      'messages[0].role: "wizard" is not one of system, developer, user, assistant, tool',
    ],
    [
      "a tool message without its call id",
      { text: "x", messages: [{ role: "tool", content: "18°C" }] },
      "messages[0].tool_call_id: a tool message needs the id of the call it answers",
    ],
    [
      "a tool message without content",
      { text: "x", messages: [{ role: "tool", toolCallId: "call_1" }] },
      "messages[0].content: a tool message needs the tool's result",
    ],
    [
      "a tool message with a name",
      { text: "x", messages: [{ role: "tool", toolCallId: "c", content: "r", name: "f" }] },
      "messages[0].name: a tool message has no name (its tool_call_id says which call it answers)",
    ],
    [
      "a tool call id on a user message",
      { messages: [{ role: "user", content: "hi", toolCallId: "c" }] },
      "messages[0].tool_call_id: only tool messages answer a tool call",
    ],
    [
      "tool calls on a user message",
      { messages: [{ role: "user", content: "hi", toolCalls: [toolCall("c")] }] },
      "messages[0].tool_calls: only assistant messages carry tool calls",
    ],
    [
      "parts on a system message",
      { text: "x", messages: [{ role: "system", parts: [{ type: "text", text: "a" }] }] },
      "messages[0].parts: only user messages have parts",
    ],
    [
      "a name with spaces",
      { messages: [{ role: "user", content: "hi", name: "Ada Lovelace" }] },
      'messages[0].name: "Ada Lovelace" is not a name (at most 64 characters, no spaces or <|\\/>)',
    ],
  ])("refuses %s", (_name, request, problem) => {
    expect(problemOf(request)).toBe(problem);
  });
});

describe("an assistant's tool calls", () => {
  const assistant = (calls: unknown[]) =>
    ({ text: "next", messages: [{ role: "assistant", toolCalls: calls }] }) as RequestInput;
  it.each<[string, unknown[], string]>([
    [
      "no id",
      [{ type: "function", function: { name: "f", arguments: "{}" } }],
      "messages[0].tool_calls[0].id: must not be empty (the id the model gave the call)",
    ],
    [
      "an id used twice",
      [toolCall("c"), toolCall("c")],
      'messages[0].tool_calls[1].id: "c" is the id of an earlier call in this message',
    ],
    [
      "an id of 257 characters",
      [toolCall("c".repeat(257))],
      "messages[0].tool_calls[0].id: longer than 256 characters",
    ],
    [
      "another type",
      [{ id: "c", type: "custom", function: { name: "f" } }],
      'messages[0].tool_calls[0].type: "custom" is not "function" (the only kind)',
    ],
    [
      "no function",
      [{ id: "c", type: "function" }],
      'messages[0].tool_calls[0].function: missing: a tool call needs {"name", "arguments"}',
    ],
    [
      "a function without a name",
      [{ id: "c", function: { arguments: "{}" } }],
      "messages[0].tool_calls[0].function.name: must not be empty",
    ],
    [
      "a bad function name",
      [toolCall("c", "get weather")],
      'messages[0].tool_calls[0].function.name: "get weather" is not 1 to 64 letters, digits, underscores or dashes',
    ],
    [
      "129 of them",
      Array.from({ length: 129 }, (_, i) => toolCall(`c${i}`)),
      "messages[0].tool_calls: 129 tool calls, more than the limit of 128",
    ],
  ])("refuses %s", (_name, calls, problem) => {
    expect(problemOf(assistant(calls))).toBe(problem);
  });
});

describe("parts and images", () => {
  const parts = (...p: unknown[]) =>
    ({
      messages: [
        { role: "system", content: "s" },
        { role: "user", parts: p },
      ],
    }) as RequestInput;
  const text = { type: "text", text: "look" };
  it.each<[string, unknown, string]>([
    ["an unknown type", { type: "audio" }, 'messages[1].parts[1].type: "audio" is not one of text, image_url'],
    ["an empty text part", { type: "text" }, "messages[1].parts[1].text: must not be empty"],
    [
      "a text part with an image",
      { type: "text", text: "a", imageUrl: { url: "https://example.com/a.png" } },
      'messages[1].parts[1].image_url: only on a part of type "image_url"',
    ],
    [
      "an image part with text",
      { type: "image_url", text: "a", imageUrl: { url: "https://example.com/a.png" } },
      'messages[1].parts[1].text: only on a part of type "text"',
    ],
    [
      "an image part without image_url",
      { type: "image_url" },
      'messages[1].parts[1].image_url: missing: an image_url part needs {"url": ...}',
    ],
    ["an empty URL", image(""), "messages[1].parts[1].image_url.url: must not be empty"],
    [
      "an http: URL",
      image("http://169.254.169.254/latest"),
      "messages[1].parts[1].image_url.url: http: URLs are not accepted: send an https: URL or a data:image/...;base64, URL",
    ],
    [
      "not a URL",
      image("cat.png"),
      "messages[1].parts[1].image_url.url: not a URL: send an https: URL or a data:image/...;base64, URL",
    ],
    [
      "a data URL without a comma",
      image("data:image/png;base64"),
      "messages[1].parts[1].image_url.url: a data: URL needs a comma before its data (data:image/png;base64,...)",
    ],
    [
      "a data URL that is not an image",
      image("data:text/plain;base64,aGk="),
      'messages[1].parts[1].image_url.url: "text/plain" is not an image media type (image/png, image/jpeg, image/webp, image/gif, ...)',
    ],
    [
      "a data URL without a media type",
      image("data:;base64,aGk="),
      'messages[1].parts[1].image_url.url: "" is not an image media type (image/png, image/jpeg, image/webp, image/gif, ...)',
    ],
    [
      "a data URL not in base64",
      image("data:image/svg+xml,<svg/>"),
      "messages[1].parts[1].image_url.url: a data: URL must be base64-encoded (data:image/png;base64,...)",
    ],
    [
      "bad base64",
      image("data:image/png;base64,iVBOR w0K"),
      "messages[1].parts[1].image_url.url: the data is not valid base64",
    ],
    [
      "base64 of a wrong length",
      image("data:image/png;base64,iVBORw0"),
      "messages[1].parts[1].image_url.url: the data is not valid base64",
    ],
    [
      "padding inside base64",
      image("data:image/png;base64,iV==Rw0K"),
      "messages[1].parts[1].image_url.url: the data is not valid base64",
    ],
    ["no image data", image("data:image/png;base64,"), "messages[1].parts[1].image_url.url: the image data is empty"],
    [
      "an unknown detail",
      image("https://example.com/a.png", "ultra"),
      'messages[1].parts[1].image_url.detail: "ultra" is not one of auto, low, high',
    ],
  ])("refuses %s, naming the part", (_name, part, problem) => {
    expect(problemOf(parts(text, part))).toBe(problem);
  });

  it("refuses more than 64 parts in one message", () => {
    expect(problemOf(parts(...Array.from({ length: 65 }, () => text)))).toBe(
      "messages[1].parts: 65 parts, more than the limit of 64",
    );
  });

  it("refuses an image over MAX_IMAGE_BYTES, counting decoded bytes", () => {
    const url = `data:image/png;base64,${PNG_1x1}`; // 70 bytes decoded
    expect(problemOf(parts(image(url)), { maxImageBytes: 70 })).toBeUndefined();
    expect(problemOf(parts(image(url)), { maxImageBytes: 69 })).toBe(
      "messages[1].parts[0].image_url.url: the image is 70 bytes, more than the limit of 69",
    );
  });

  it("counts an image's decoded bytes toward MAX_INPUT_BYTES, and names the part that went over", () => {
    const url = `data:image/png;base64,${PNG_1x1}`;
    // "s" (1 byte) + 70 image bytes + "look" (4 bytes) = 75.
    expect(problemOf(parts(image(url), text), { maxInputBytes: 75 })).toBeUndefined();
    expect(problemOf(parts(image(url), text), { maxInputBytes: 74 })).toBe(
      "messages[1].parts[1].text: input is 75 bytes, more than the limit of 74",
    );
    expect(problemOf(parts(image(url), text), { maxInputBytes: 70 })).toBe(
      "messages[1].parts[0].image_url.url: input is 75 bytes, more than the limit of 70",
    );
  });
});

describe("tools and tool_choice", () => {
  it.each<[string, RequestInput, string]>([
    [
      "another type",
      { tools: [{ type: "retrieval", function: { name: "f" } }] },
      'tools[0].type: "retrieval" is not "function" (the only kind)',
    ],
    [
      "no function",
      { tools: [{ type: "function" }] },
      'tools[0].function: missing: a tool needs {"name", "description", "parameters"}',
    ],
    [
      "no name",
      { tools: [{ type: "function", function: { description: "d" } }] },
      "tools[0].function.name: must not be empty",
    ],
    [
      "a name with a dot",
      { tools: [{ function: { name: "weather.get" } }] },
      'tools[0].function.name: "weather.get" is not 1 to 64 letters, digits, underscores or dashes',
    ],
    [
      "a name of 65 characters",
      { tools: [{ function: { name: "f".repeat(65) } }] },
      `tools[0].function.name: "${"f".repeat(64)}..." is not 1 to 64 letters, digits, underscores or dashes`,
    ],
    [
      "a name used twice",
      { tools: [weather, { function: { name: "now" } }, weather] },
      'tools[2].function.name: "get_weather" is already the name of tools[0]',
    ],
    [
      "tool_choice without tools",
      { toolChoice: { choice: { $case: "mode", value: "auto" } } },
      "tool_choice: only with tools",
    ],
    ["parallel_tool_calls without tools", { parallelToolCalls: false }, "parallel_tool_calls: only with tools"],
    [
      "an empty tool_choice",
      { tools: [weather], toolChoice: {} },
      'tool_choice: set "mode" (auto, none, required) or "function" (a tool\'s name)',
    ],
    [
      "an unknown mode",
      { tools: [weather], toolChoice: { choice: { $case: "mode", value: "any" } } },
      'tool_choice.mode: "any" is not one of auto, none, required',
    ],
    [
      "a function that is not a tool",
      { tools: [weather], toolChoice: { choice: { $case: "function", value: "get_time" } } },
      'tool_choice.function: "get_time" is not the name of one of the tools',
    ],
  ])("refuses %s", (_name, request, problem) => {
    expect(problemOf({ text: "hi", ...request })).toBe(problem);
  });

  it("refuses more than MAX_TOOLS tools", () => {
    const tools = Array.from({ length: 3 }, (_, i) => ({ function: { name: `f${i}` } }));
    expect(problemOf({ text: "hi", tools }, { maxTools: 3 })).toBeUndefined();
    expect(problemOf({ text: "hi", tools }, { maxTools: 2 })).toBe("tools: 3 tools, more than the limit of 2");
  });

  it("counts tool definitions, their JSON schema included, toward MAX_INPUT_BYTES", () => {
    const parameters = { type: "object", description: "x".repeat(100) };
    const size = Buffer.byteLength("hi") + Buffer.byteLength("f") + Buffer.byteLength(JSON.stringify(parameters));
    expect(
      problemOf({ text: "hi", tools: [{ function: { name: "f", parameters } }] }, { maxInputBytes: size }),
    ).toBeUndefined();
    expect(
      problemOf({ text: "hi", tools: [{ function: { name: "f", parameters } }] }, { maxInputBytes: size - 1 }),
    ).toBe(`tools[0].function: input is ${size} bytes, more than the limit of ${size - 1}`);
  });
});

describe("response_format, reasoning_effort and the sampling knobs", () => {
  it.each<[string, RequestInput, string]>([
    [
      "an unknown response_format type",
      { responseFormat: { type: "xml" } },
      'response_format.type: "xml" is not one of text, json_object, json_schema',
    ],
    [
      "an empty response_format",
      { responseFormat: {} },
      'response_format.type: "" is not one of text, json_object, json_schema',
    ],
    [
      "json_schema without its schema",
      { responseFormat: { type: "json_schema" } },
      'response_format.json_schema: missing: type "json_schema" needs {"name", "schema"}',
    ],
    [
      "json_schema without a name",
      { responseFormat: { type: "json_schema", jsonSchema: { schema: {} } } },
      "response_format.json_schema.name: must not be empty",
    ],
    [
      "a json_schema with type json_object",
      { responseFormat: { type: "json_object", jsonSchema: { name: "r" } } },
      'response_format.json_schema: only with type "json_schema"',
    ],
    [
      "an unknown reasoning_effort",
      { reasoningEffort: "extreme" },
      'reasoning_effort: "extreme" is not one of none, minimal, low, medium, high, xhigh',
    ],
    ["presence_penalty above 2", { presencePenalty: 2.5 }, "presence_penalty: 2.5 is outside [-2, 2]"],
    ["frequency_penalty below -2", { frequencyPenalty: -3 }, "frequency_penalty: -3 is outside [-2, 2]"],
    ["a NaN penalty", { frequencyPenalty: Number.NaN }, "frequency_penalty: NaN is outside [-2, 2]"],
    [
      "a logit_bias key that is not a token id",
      { logitBias: { hello: 5 } },
      'logit_bias: key "hello" is not a token id (a non-negative integer)',
    ],
    [
      "a negative token id",
      { logitBias: { "-1": 5 } },
      'logit_bias: key "-1" is not a token id (a non-negative integer)',
    ],
    ["a logit_bias value over 100", { logitBias: { "42": 101 } }, "logit_bias.42: 101 is outside [-100, 100]"],
    ["a user of 257 characters", { user: "u".repeat(257) }, "user: longer than 256 characters"],
    [
      "a seed beyond 2^53",
      { seed: 2n ** 60n },
      "seed: 1152921504606846976 is outside [-9007199254740991, 9007199254740991], the integers JSON carries exactly",
    ],
  ])("refuses %s", (_name, request, problem) => {
    expect(problemOf({ text: "hi", ...request })).toBe(problem);
  });

  it("refuses more than 300 logit_bias entries", () => {
    const bias = Object.fromEntries(Array.from({ length: 301 }, (_, i) => [String(i), 1]));
    expect(problemOf({ text: "hi", logitBias: bias })).toBe("logit_bias: 301 entries, more than the limit of 300");
  });

  it("counts a JSON schema toward MAX_INPUT_BYTES", () => {
    const schema = { type: "object", description: "y".repeat(200) };
    expect(
      problemOf(
        { text: "hi", responseFormat: { type: "json_schema", jsonSchema: { name: "r", schema } } },
        { maxInputBytes: 200 },
      ),
    ).toMatch(/^response_format\.json_schema: input is \d+ bytes, more than the limit of 200$/);
  });
});

describe("extra_body", () => {
  it.each(["model", "messages", "stream", "stream_options", "n"])("may not set %s", (key) => {
    expect(problemOf({ text: "hi", extraBody: { top_k: 1, [key]: 2 } })).toBe(
      `extra_body.${key}: may not be set: the gateway sets model, messages, stream, stream_options, n itself`,
    );
  });

  it("may not repeat what the request's own fields set", () => {
    expect(problemOf({ text: "hi", temperature: 0.5, extraBody: { temperature: 0.7 } })).toBe(
      'extra_body.temperature: the request sets "temperature" with its own field already; set it once',
    );
    expect(problemOf({ text: "hi", seed: 1, extraBody: { seed: 2 } })).toBe(
      'extra_body.seed: the request sets "seed" with its own field already; set it once',
    );
    // Fields the request leaves unset are the upstream's to take from extra_body.
    expect(problemOf({ text: "hi", extraBody: { temperature: 0.7, top_k: 20 } })).toBeUndefined();
  });

  it("counts toward MAX_INPUT_BYTES", () => {
    expect(problemOf({ text: "hi", extraBody: { note: "z".repeat(100) } }, { maxInputBytes: 100 })).toMatch(
      /^extra_body: input is \d+ bytes, more than the limit of 100$/,
    );
  });
});
