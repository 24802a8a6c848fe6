// The Chat Completions translator alone: a body as the SDKs send it → chat.v1's ChatRequest (what
// is passed on, what is refused by name), and the stream's messages → the exact bytes of the
// `chat.completion.chunk` events and of the `chat.completion` object.
import { describe, expect, it } from "vitest";
import { ChatChunkPresenter, ChatCompletionPresenter } from "../../../../src/api/openai/chat-chunks.js";
import { decodeChatCompletion } from "../../../../src/api/openai/chat-request.js";
import type { ChatResponse, HttpBody } from "../../../../src/contract/chat.js";

const decode = (body: unknown) => decodeChatCompletion(Buffer.from(JSON.stringify(body)));

describe("decodeChatCompletion", () => {
  it("reads every field the SDKs send into chat.v1's request", () => {
    const { request, stream, includeUsage, problem } = decode({
      model: "gpt-x",
      messages: [
        { role: "system", content: "be brief" },
        {
          role: "user",
          content: [
            { type: "text", text: "look" },
            { type: "image_url", image_url: { url: "data:,x", detail: "low" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "tool", tool_call_id: "c1", content: "done" },
      ],
      temperature: 0.2,
      top_p: 0.9,
      max_completion_tokens: 50,
      stop: "END",
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" }, strict: true } }],
      tool_choice: { type: "function", function: { name: "f" } },
      parallel_tool_calls: false,
      reasoning_effort: "low",
      response_format: { type: "json_object" },
      seed: 3,
      presence_penalty: 0.1,
      frequency_penalty: 0.2,
      logit_bias: { "42": -5 },
      user: "u1",
      stream: true,
      stream_options: { include_usage: true },
      n: 1,
      top_k: 40,
    });
    expect(problem).toBeUndefined();
    expect({ stream, includeUsage }).toEqual({ stream: true, includeUsage: true });
    expect(request).toMatchObject({
      model: "gpt-x",
      temperature: 0.2,
      topP: 0.9,
      maxTokens: 50,
      stop: ["END"],
      toolChoice: { choice: { $case: "function", value: "f" } },
      parallelToolCalls: false,
      reasoningEffort: "low",
      responseFormat: { type: "json_object" },
      seed: 3n,
      logitBias: { "42": -5 },
      user: "u1",
      // A server-specific option (vLLM's top_k, sent by an SDK's extra_body) goes to the upstream as it is.
      extraBody: { top_k: 40 },
    });
    expect(request.messages[1]?.parts.map((p) => p.type)).toEqual(["text", "image_url"]);
    expect(request.messages[2]?.toolCalls[0]).toEqual({
      id: "c1",
      type: "function",
      function: { name: "f", arguments: "{}" },
    });
    expect(request.messages[3]).toMatchObject({ role: "tool", toolCallId: "c1", content: "done" });
  });

  it("refuses by name what the gateway cannot give back, and says what is malformed", () => {
    expect(decode({ model: "m", messages: [], n: 2 }).problem).toBe("n: one choice per request only (n must be 1)");
    expect(decode({ model: "m", messages: [], logprobs: true }).problem).toMatch(/^logprobs: /);
    expect(decode({ model: "m", messages: [], max_tokens: 1, max_completion_tokens: 2 }).problem).toMatch(
      /^max_completion_tokens: /,
    );
    expect(decode({ model: "m" }).problem).toBe("messages: required: an array of messages");
    expect(decode({ messages: [{ role: "user", content: [{ type: "input_audio" }] }] }).problem).toMatch(
      /^messages\[0\]\.content\[0\]\.type: /,
    );
    expect(decodeChatCompletion(Buffer.from("{not json")).problem).toBe("request body: not valid JSON");
    expect(decode([1, 2]).problem).toBe("request body: must be a JSON object");
  });
});

const text = (body: HttpBody | undefined) => body?.data.toString();
const delta = (t: string): ChatResponse => ({ event: { $case: "delta", value: { text: t } } });
const finish: ChatResponse = {
  event: {
    $case: "finish",
    value: {
      finishReason: "stop",
      historyTrimmedTurns: 0,
      model: "upstream-model",
      usage: { promptTokens: 3, completionTokens: 2, totalTokens: 5, reasoningTokens: 0, cachedPromptTokens: 1 },
    },
  },
};

describe("ChatChunkPresenter", () => {
  it("writes OpenAI's chunks byte for byte: role on the first, finish, usage, [DONE]", () => {
    const p = new ChatChunkPresenter({ model: "m", includeUsage: true, id: "chatcmpl-1", now: () => 1_000_000 });
    const head =
      '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1000,"model":"m","system_fingerprint":null,';
    expect(text(p.present(delta("Hi")))).toBe(
      `data: ${head}"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null,"logprobs":null}]}\n\n`,
    );
    expect(text(p.present(delta("!")))).toBe(
      `data: ${head}"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null,"logprobs":null}]}\n\n`,
    );
    const end = text(p.present(finish)) ?? "";
    const events = end.split("\n\n").filter(Boolean);
    expect(events).toHaveLength(3);
    expect(JSON.parse(events[0]!.slice(6))).toMatchObject({
      model: "upstream-model",
      choices: [{ delta: {}, finish_reason: "stop" }],
    });
    expect(JSON.parse(events[1]!.slice(6))).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5, prompt_tokens_details: { cached_tokens: 1 } },
    });
    expect(events[2]).toBe("data: [DONE]");
  });

  it("sends tool calls with their id and name first, heartbeats as comments, errors as error events", () => {
    const p = new ChatChunkPresenter({ model: "m", includeUsage: false });
    const call = (id: string, name: string, args: string): ChatResponse => ({
      event: { $case: "toolCall", value: { index: 0, id, name, arguments: args } },
    });
    const chunk = (body: HttpBody | undefined) => JSON.parse(text(body)!.slice(6)) as { choices: { delta: unknown }[] };
    expect(chunk(p.present(call("c1", "f", ""))).choices[0]?.delta).toEqual({
      role: "assistant",
      tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "f", arguments: "" } }],
    });
    expect(chunk(p.present(call("", "", '{"a":1}'))).choices[0]?.delta).toEqual({
      tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }],
    });
    expect(text(p.present({ event: { $case: "heartbeat", value: { waitedMs: 15000 } } }))).toMatch(/^: .*\n\n$/);
    expect(
      JSON.parse(
        text(p.present({ event: { $case: "error", value: { code: 14, status: "UNAVAILABLE", message: "x" } } }))!.slice(
          6,
        ),
      ),
    ).toEqual({
      error: { message: "x", type: "server_error", param: null, code: "unavailable" },
    });
  });
});

describe("ChatCompletionPresenter", () => {
  it("writes nothing until the finish, then one chat.completion", () => {
    const p = new ChatCompletionPresenter({ model: "m", id: "chatcmpl-2", now: () => 2_000_000 });
    expect(p.present(delta("Hel"))).toBeUndefined();
    expect(p.present({ event: { $case: "reasoning", value: { text: "hmm" } } })).toBeUndefined();
    expect(p.present(delta("lo"))).toBeUndefined();
    const body = p.present(finish);
    expect(body?.contentType).toBe("application/json");
    expect(JSON.parse(text(body)!)).toEqual({
      id: "chatcmpl-2",
      object: "chat.completion",
      created: 2000,
      model: "upstream-model",
      system_fingerprint: null,
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: "Hello", refusal: null, reasoning_content: "hmm" },
          finish_reason: "stop",
          logprobs: null,
        },
      ],
      usage: {
        prompt_tokens: 3,
        completion_tokens: 2,
        total_tokens: 5,
        completion_tokens_details: { reasoning_tokens: 0 },
        prompt_tokens_details: { cached_tokens: 1 },
      },
    });
  });
});
