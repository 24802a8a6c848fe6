// The Responses translator alone: a body as the SDKs send it → chat.v1's ChatRequest (what is
// passed on, what is refused by name), and the stream's messages → the Responses events, judged by
// the openai SDK's own stream parser (`client.responses.stream()`, which checks every event's order, item ids,
// indexes and sequence against the response it accumulates) and byte for byte where it matters.
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import type { ChatResponse, HttpBody } from "../../../../src/contract/chat.js";
import { ResponseEventPresenter, ResponseObjectPresenter } from "../../../../src/api/openai/responses-events.js";
import { decodeResponseRequest, type ResponseEcho } from "../../../../src/api/openai/responses-request.js";

const decode = (body: unknown) => decodeResponseRequest(Buffer.from(JSON.stringify(body)));

describe("decodeResponseRequest", () => {
  it("reads the input items, instructions, tools and options into chat.v1's request", () => {
    const { request, stream, echo, problem } = decode({
      model: "gpt-x",
      instructions: "be brief",
      input: [
        { role: "user", content: "weather?" },
        {
          type: "message",
          role: "user",
          content: [
            { type: "input_text", text: "and this?" },
            { type: "input_image", image_url: "data:,x", detail: "low" },
          ],
        },
        { type: "reasoning", id: "rs_1", summary: [], content: [{ type: "reasoning_text", text: "hmm" }] },
        {
          type: "message",
          id: "msg_1",
          role: "assistant",
          status: "completed",
          content: [{ type: "output_text", text: "Checking.", annotations: [] }],
        },
        { type: "function_call", id: "fc_1", call_id: "c1", name: "weather", arguments: '{"city":"Paris"}' },
        { type: "function_call", call_id: "c2", name: "weather", arguments: '{"city":"Rome"}' },
        { type: "function_call_output", call_id: "c1", output: "sunny" },
        { type: "function_call_output", call_id: "c2", output: [{ type: "input_text", text: "rain" }] },
      ],
      tools: [{ type: "function", name: "weather", parameters: { type: "object" }, strict: true }],
      tool_choice: { type: "function", name: "weather" },
      parallel_tool_calls: false,
      reasoning: { effort: "low", summary: "auto" },
      text: { format: { type: "json_schema", name: "answer", schema: { type: "object" }, strict: true } },
      max_output_tokens: 50,
      temperature: 0.2,
      top_p: 0.9,
      user: "u1",
      metadata: { k: "v" },
      store: false,
      stream: true,
      top_k: 40,
    });
    expect(problem).toBeUndefined();
    expect(stream).toBe(true);
    expect(request).toMatchObject({
      model: "gpt-x",
      temperature: 0.2,
      topP: 0.9,
      maxTokens: 50,
      toolChoice: { choice: { $case: "function", value: "weather" } },
      parallelToolCalls: false,
      reasoningEffort: "low",
      responseFormat: { type: "json_schema", jsonSchema: { name: "answer", schema: { type: "object" }, strict: true } },
      user: "u1",
      extraBody: { top_k: 40 },
    });
    expect(request.tools).toEqual([
      {
        type: "function",
        function: { name: "weather", description: "", parameters: { type: "object" }, strict: true },
      },
    ]);
    const messages = request.messages.map((m) => ({
      role: m.role,
      content: m.content,
      parts: m.parts.map((p) => p.type),
      calls: m.toolCalls.map((c) => c.id),
      answers: m.toolCallId,
    }));
    expect(messages).toEqual([
      { role: "system", content: "be brief", parts: [], calls: [], answers: "" },
      { role: "user", content: "weather?", parts: [], calls: [], answers: "" },
      { role: "user", content: "", parts: ["text", "image_url"], calls: [], answers: "" },
      // The reasoning item is left out; the assistant's text and both calls are one turn.
      { role: "assistant", content: "Checking.", parts: [], calls: ["c1", "c2"], answers: "" },
      { role: "tool", content: "sunny", parts: [], calls: [], answers: "c1" },
      { role: "tool", content: "rain", parts: [], calls: [], answers: "c2" },
    ]);
    expect(request.messages[2]?.parts[1]?.imageUrl).toEqual({ url: "data:,x", detail: "low" });
    expect(echo).toMatchObject({
      instructions: "be brief",
      max_output_tokens: 50,
      parallel_tool_calls: false,
      reasoning: { effort: "low", summary: "auto" },
      tool_choice: { type: "function", name: "weather" },
      tools: [{ type: "function", name: "weather", description: null, parameters: { type: "object" }, strict: true }],
      text: { format: { type: "json_schema", name: "answer", strict: true } },
      metadata: { k: "v" },
      user: "u1",
    });
  });

  it("takes a string input as one user message, and sends text formats as Chat's", () => {
    const { request, stream } = decode({ model: "m", input: "hi", text: { format: { type: "json_object" } } });
    expect(stream).toBe(false);
    expect(request.messages.map((m) => [m.role, m.content])).toEqual([["user", "hi"]]);
    expect(request.responseFormat).toEqual({ type: "json_object", jsonSchema: undefined });
    expect(decode({ model: "m", input: "hi", text: { format: { type: "text" } } }).request.responseFormat).toBe(
      undefined,
    );
  });

  it("reads store (true unless false), previous_response_id and conversation (a string or {id}), or names the field", () => {
    const at = (extra: Record<string, unknown>) => decode({ model: "m", input: "hi", ...extra });
    const resp = `resp_${"ab".repeat(16)}`;
    const conv = `conv_${"0123456789abcdef".repeat(2)}`;
    const uuid = "01234567-89ab-cdef-0123-456789abcdef";
    expect(at({}).store).toBe(true);
    expect(at({ store: false }).store).toBe(false);
    expect(at({ store: true }).store).toBe(true);
    expect(at({ store: "yes" }).problem).toBe("store: must be a boolean");
    expect(at({ previous_response_id: resp }).previousResponseId).toBe(resp);
    expect(at({ previous_response_id: "resp_1" }).problem).toMatch(/^previous_response_id: must be a response's id/);
    expect(at({ conversation: conv }).conversation).toEqual({ id: conv, uuid });
    expect(at({ conversation: { id: conv } }).conversation).toEqual({ id: conv, uuid });
    expect(at({ conversation: "conv_1" }).problem).toMatch(/^conversation: must be a conversation's id/);
    expect(at({ conversation: {} }).problem).toBe("conversation.id: required");
    expect(at({ conversation: conv, previous_response_id: resp }).problem).toMatch(
      /^conversation: cannot be used with previous_response_id/,
    );
    // The instructions are the first message, marked so they are never stored as input.
    expect(at({ instructions: "be brief" }).hasInstructions).toBe(true);
    expect(at({}).hasInstructions).toBe(false);
  });

  it("refuses by name what needs stored responses, hosted tools, and what it could not give back", () => {
    const refused = (extra: Record<string, unknown>) => decode({ model: "m", input: "hi", ...extra }).problem;
    expect(refused({ store: false })).toBeUndefined();
    // Background needs store, as OpenAI's (store is true unless false).
    expect(refused({ background: true })).toBeUndefined();
    expect(refused({ background: true, store: false })).toMatch(/^background: requires store/);
    expect(refused({ background: "yes" })).toMatch(/^background: must be a boolean/);
    expect(refused({ background: false })).toBeUndefined();
    expect(refused({ include: ["reasoning.encrypted_content"] })).toMatch(/^include: /);
    expect(refused({ include: [] })).toBeUndefined();
    expect(refused({ truncation: "auto" })).toMatch(/^truncation: /);
    expect(refused({ tools: [{ type: "web_search" }] })).toBe(
      'tools[0].type: "web_search" tools are not supported (function tools are)',
    );
    expect(refused({ input: [{ type: "item_reference", id: "msg_1" }] })).toMatch(
      /^input\[0\]\.type: "item_reference"/,
    );
    expect(refused({ input: [{ role: "user", content: [{ type: "input_file", file_id: "f" }] }] })).toMatch(
      /^input\[0\]\.content\[0\]\.type: "input_file" is not supported/,
    );
    expect(refused({ input: [{ role: "system", content: [{ type: "input_image", image_url: "x" }] }] })).toBe(
      "input[0].content[0]: only user messages carry images",
    );
    expect(refused({ input: [{ type: "function_call_output", output: "x" }] })).toBe("input[0].call_id: required");
    expect(refused({ input: 3 })).toBe("input: required: a string or an array of input items");
    expect(refused({ text: { format: { type: "json_schema", schema: {} } } })).toBe("text.format.name: required");
    expect(decodeResponseRequest(Buffer.from("{not json")).problem).toBe("request body: not valid JSON");
  });
});

const ECHO: ResponseEcho = {
  instructions: null,
  max_output_tokens: null,
  metadata: {},
  parallel_tool_calls: true,
  reasoning: { effort: null, summary: null },
  temperature: null,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_p: null,
};
const options = () => {
  let n = 0;
  return { model: "m", echo: ECHO, now: () => 1_000_000, newId: (prefix: string) => `${prefix}_${n++}` };
};
const text = (body: HttpBody | undefined) => body?.data.toString() ?? "";
const delta = (t: string): ChatResponse => ({ event: { $case: "delta", value: { text: t } } });
const reasoning = (t: string): ChatResponse => ({ event: { $case: "reasoning", value: { text: t } } });
const call = (index: number, id: string, name: string, args: string): ChatResponse => ({
  event: { $case: "toolCall", value: { index, id, name, arguments: args } },
});
const finish = (finishReason = "stop"): ChatResponse => ({
  event: {
    $case: "finish",
    value: {
      finishReason,
      historyTrimmedTurns: 0,
      model: "upstream-model",
      usage: { promptTokens: 3, completionTokens: 7, totalTokens: 10, reasoningTokens: 4, cachedPromptTokens: 1 },
    },
  },
});
const failure: ChatResponse = {
  event: { $case: "error", value: { code: 14, status: "UNAVAILABLE", message: "upstream connection lost" } },
};

/** The presenter's bytes for `messages`, as one SSE body. */
function stream(messages: ChatResponse[]): string {
  const p = new ResponseEventPresenter(options());
  return messages.map((m) => text(p.present(m))).join("");
}
/** The events' data, parsed. */
const events = (body: string) =>
  body
    .split("\n\n")
    .filter((e) => e.startsWith("event: "))
    .map((e) => JSON.parse(e.slice(e.indexOf("\ndata: ") + 7)) as Record<string, unknown> & { type: string });

/**
 * What the openai SDK makes of the body as a server's answer to `client.responses.stream()`: the
 * events its parser accepted and the final response, or what it raised. No network: the client's
 * fetch returns the body.
 */
async function parse(body: string) {
  const client = new OpenAI({
    apiKey: "k",
    baseURL: "http://127.0.0.1:9/v1",
    maxRetries: 0,
    fetch: async () => new Response(body, { headers: { "content-type": "text/event-stream" } }),
  });
  const runner = client.responses.stream({ model: "m", input: "hi" });
  const seen: string[] = [];
  runner.on("event", (e) => seen.push(e.type));
  const final = await runner.finalResponse().catch((e: unknown) => e);
  return { seen, final };
}

describe("ResponseEventPresenter", () => {
  it("writes the Responses event sequence for reasoning then text, which the SDK's parser accepts", async () => {
    const body = stream([reasoning("Think"), reasoning("ing."), delta("Hel"), delta("lo"), finish()]);
    const parsed = events(body);
    expect(parsed.map((e) => e.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(parsed.map((e) => e.sequence_number)).toEqual(parsed.map((_, i) => i));
    // Byte for byte where a client reads the text from.
    expect(body).toContain(
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","item_id":"msg_2","output_index":1,"content_index":0,"delta":"Hel","logprobs":[],"sequence_number":11}\n\n',
    );
    const completed = parsed.at(-1)!.response as Record<string, unknown>;
    expect(completed).toMatchObject({
      id: "resp_0",
      object: "response",
      created_at: 1000,
      status: "completed",
      model: "upstream-model",
      store: false,
      output: [
        {
          id: "rs_1",
          type: "reasoning",
          status: "completed",
          content: [{ type: "reasoning_text", text: "Thinking." }],
        },
        {
          id: "msg_2",
          type: "message",
          role: "assistant",
          status: "completed",
          content: [{ type: "output_text", text: "Hello", annotations: [] }],
        },
      ],
      usage: {
        input_tokens: 3,
        input_tokens_details: { cached_tokens: 1 },
        output_tokens: 7,
        output_tokens_details: { reasoning_tokens: 4 },
        total_tokens: 10,
      },
    });
    const { seen, final } = await parse(body);
    expect(seen).toEqual(parsed.map((e) => e.type));
    expect(final).toMatchObject({ status: "completed", output_text: "Hello" });
  });

  it("streams function calls (parallel ones too) with their arguments in pieces", async () => {
    const body = stream([
      delta("Let me check."),
      call(0, "call_a", "weather", ""),
      call(0, "", "", '{"city":'),
      call(1, "call_b", "weather", '{"city":"Rome"}'),
      call(0, "", "", '"Paris"}'),
      finish("tool_calls"),
    ]);
    const parsed = events(body);
    const deltas = parsed.filter((e) => e.type === "response.function_call_arguments.delta");
    expect(deltas.map((e) => [e.item_id, e.output_index, e.delta])).toEqual([
      ["fc_2", 1, '{"city":'],
      ["fc_3", 2, '{"city":"Rome"}'],
      ["fc_2", 1, '"Paris"}'],
    ]);
    const { final } = await parse(body);
    expect(final).toMatchObject({
      status: "completed",
      output: [
        { type: "message", content: [{ text: "Let me check." }] },
        { type: "function_call", id: "fc_2", call_id: "call_a", name: "weather", arguments: '{"city":"Paris"}' },
        { type: "function_call", id: "fc_3", call_id: "call_b", name: "weather", arguments: '{"city":"Rome"}' },
      ],
    });
  });

  it("ends a cut output as response.incomplete, and a refusal as the message's refusal part", async () => {
    const body = stream([delta("Par"), { event: { $case: "refusal", value: { text: "No." } } }, finish("length")]);
    const last = events(body).at(-1)!;
    expect(last.type).toBe("response.incomplete");
    expect(last.response).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
      output: [
        {
          status: "incomplete",
          content: [
            { type: "output_text", text: "Par" },
            { type: "refusal", refusal: "No." },
          ],
        },
      ],
    });
    const { final } = await parse(body);
    expect(final).toMatchObject({ status: "incomplete", output_text: "Par" });
  });

  it("sends heartbeats as comments, and a failure as response.failed then an error event the SDK raises", async () => {
    const p = new ResponseEventPresenter(options());
    const beat = text(p.present({ event: { $case: "heartbeat", value: { waitedMs: 15000 } } }));
    expect(beat).toBe(": waiting for the model (15000 ms)\n\n");
    const body = beat + text(p.present(delta("partial"))) + text(p.present(failure));
    const parsed = events(body);
    expect(parsed.slice(-2).map((e) => e.type)).toEqual(["response.failed", "error"]);
    expect(parsed.at(-2)?.response).toMatchObject({
      status: "failed",
      error: { code: "server_error", message: "upstream connection lost" },
      output: [{ type: "message", status: "in_progress", content: [{ text: "partial" }] }],
    });
    expect(parsed.at(-1)).toMatchObject({
      code: "unavailable",
      message: "upstream connection lost",
      error: { type: "server_error", code: "unavailable", message: "upstream connection lost" },
    });
    const { final } = await parse(body);
    expect(final).toBeInstanceOf(Error);
    expect((final as Error).message).toMatch(/upstream connection lost/);
  });
});

describe("ResponseObjectPresenter", () => {
  it("writes nothing until the finish, then one response object", () => {
    const p = new ResponseObjectPresenter(options());
    expect(p.present(reasoning("hmm"))).toBeUndefined();
    expect(p.present(delta("Hi"))).toBeUndefined();
    expect(p.present(call(0, "c1", "f", "{}"))).toBeUndefined();
    const body = p.present(finish("tool_calls"));
    expect(body?.contentType).toBe("application/json");
    expect(JSON.parse(text(body))).toMatchObject({
      id: "resp_0",
      object: "response",
      status: "completed",
      error: null,
      incomplete_details: null,
      model: "upstream-model",
      output: [
        { id: "rs_1", type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "hmm" }] },
        { id: "msg_2", type: "message", content: [{ type: "output_text", text: "Hi", annotations: [], logprobs: [] }] },
        { id: "fc_3", type: "function_call", call_id: "c1", name: "f", arguments: "{}", status: "completed" },
      ],
      usage: { input_tokens: 3, output_tokens: 7, total_tokens: 10 },
    });
  });
});
