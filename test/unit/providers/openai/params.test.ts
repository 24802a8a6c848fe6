// The translation of the gateway's upstream request into OpenAI's chat-completions body, field by
// field, without a server: what the upstream will receive (the in-process and end-to-end tests
// check that the SDK sends exactly this).
import { describe, expect, it } from "vitest";
import { toOpenAIParams } from "../../../../src/providers/openai/params.js";
import type { UpstreamRequest } from "../../../../src/upstream/request.js";

const base: UpstreamRequest = { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] };

describe("toOpenAIParams", () => {
  it("gives a text-only request exactly the body it always had, keys in the same order", () => {
    const params = toOpenAIParams({ ...base, temperature: 0.2, topP: 1, maxTokens: 256, stop: ["\n\n"] });
    expect(JSON.stringify(params)).toBe(
      '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"temperature":0.2,"top_p":1,"max_tokens":256,"stop":["\\n\\n"]}',
    );
    expect(toOpenAIParams(base)).toEqual({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
    });
  });

  it("writes tools, tool_choice and parallel_tool_calls as OpenAI does", () => {
    const parameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const params = toOpenAIParams({
      ...base,
      tools: [{ name: "get_weather", description: "Weather in a city", parameters, strict: true }, { name: "now" }],
      toolChoice: { function: "get_weather" },
      parallelToolCalls: false,
    });
    expect(params.tools).toEqual([
      {
        type: "function",
        function: { name: "get_weather", description: "Weather in a city", parameters, strict: true },
      },
      { type: "function", function: { name: "now" } },
    ]);
    expect(params.tool_choice).toEqual({ type: "function", function: { name: "get_weather" } });
    expect(params.parallel_tool_calls).toBe(false);
    for (const mode of ["auto", "none", "required"] as const) {
      expect(toOpenAIParams({ ...base, tools: [{ name: "now" }], toolChoice: mode }).tool_choice).toBe(mode);
    }
  });

  it("writes an agent round trip: the assistant's tool calls and the tool results", () => {
    const params = toOpenAIParams({
      ...base,
      messages: [
        { role: "system", content: "Use tools.", name: "setup" },
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: "",
          toolCalls: [
            { id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
            { id: "call_2", name: "get_weather", arguments: '{"city":"Rome"}' },
          ],
        },
        { role: "tool", content: "18°C", toolCallId: "call_1" },
        { role: "tool", content: "24°C", toolCallId: "call_2" },
        { role: "assistant", content: "Checking.", toolCalls: [{ id: "call_3", name: "now", arguments: "{}" }] },
        { role: "developer", content: "Be brief." },
      ],
    });
    expect(params.messages).toEqual([
      { role: "system", content: "Use tools.", name: "setup" },
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          { id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: "tool", content: "18°C", tool_call_id: "call_1" },
      { role: "tool", content: "24°C", tool_call_id: "call_2" },
      {
        role: "assistant",
        content: "Checking.",
        tool_calls: [{ id: "call_3", type: "function", function: { name: "now", arguments: "{}" } }],
      },
      { role: "developer", content: "Be brief." },
    ]);
  });

  it("writes a message of parts as OpenAI content parts, content first", () => {
    const params = toOpenAIParams({
      ...base,
      messages: [
        {
          role: "user",
          content: "Look:",
          parts: [
            { type: "image_url", url: "https://example.com/cat.png", detail: "low" },
            { type: "text", text: "What is it?" },
            { type: "image_url", url: "data:image/png;base64,iVBORw0KGgo=" },
          ],
        },
        { role: "user", content: "", parts: [{ type: "text", text: "only parts" }] },
      ],
    });
    expect(params.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "Look:" },
          { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
          { type: "text", text: "What is it?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        ],
      },
      { role: "user", content: [{ type: "text", text: "only parts" }] },
    ]);
  });

  it("writes response_format in each of its three kinds", () => {
    const schema = { type: "object", properties: { answer: { type: "string" } } };
    expect(toOpenAIParams({ ...base, responseFormat: { type: "text" } }).response_format).toEqual({ type: "text" });
    expect(toOpenAIParams({ ...base, responseFormat: { type: "json_object" } }).response_format).toEqual({
      type: "json_object",
    });
    expect(
      toOpenAIParams({
        ...base,
        responseFormat: { type: "json_schema", name: "reply", description: "The reply", schema, strict: true },
      }).response_format,
    ).toEqual({ type: "json_schema", json_schema: { name: "reply", description: "The reply", schema, strict: true } });
  });

  it("writes the sampling knobs under OpenAI's names", () => {
    const params = toOpenAIParams({
      ...base,
      reasoningEffort: "high",
      seed: 42,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      logitBias: { "50256": -100 },
      user: "user-1234",
    });
    expect(params).toMatchObject({
      reasoning_effort: "high",
      seed: 42,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      logit_bias: { "50256": -100 },
      user: "user-1234",
    });
  });

  it("merges extra_body into the body, as its own top-level keys", () => {
    const params = toOpenAIParams({
      ...base,
      extraBody: { top_k: 20, min_p: 0.05, chat_template_kwargs: { enable_thinking: false } },
    });
    expect(params).toEqual({
      model: "gpt-4o",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      top_k: 20,
      min_p: 0.05,
      chat_template_kwargs: { enable_thinking: false },
    });
  });
});
