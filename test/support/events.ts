// Recorded streams in the wire shapes real servers send (test/fixtures/sse/*.sse), and what the
// gateway must make of each, written once in chat.v1's JSON names so the translator's unit test and
// the end-to-end replays compare against the same expectation.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { ChatResponse } from "../../src/gen/chat/v1/chat.js";
import type { UpstreamEvent } from "../../src/upstream/events.js";

const DIR = fileURLToPath(new URL("../fixtures/sse/", import.meta.url));

export function fixture(name: string): string {
  return readFileSync(join(DIR, `${name}.sse`), "utf8");
}

/** The JSON chunks of a recorded body, up to `[DONE]`. */
export function chunksOf(body: string): ChatCompletionChunk[] {
  const chunks: ChatCompletionChunk[] = [];
  for (const event of body.split("\n\n")) {
    const data = event
      .split("\n")
      .filter((l) => l.startsWith("data: "))
      .map((l) => l.slice(6))
      .join("\n");
    if (!data) continue;
    if (data === "[DONE]") break;
    chunks.push(JSON.parse(data) as ChatCompletionChunk);
  }
  return chunks;
}

/** An event as a client reads it, in chat.v1's JSON names (proto defaults left out, as Envoy prints them). */
export type Seen =
  | { delta: string }
  | { reasoning: string }
  | { refusal: string }
  | { toolCall: { index?: number; id?: string; name?: string; arguments?: string } }
  | { heartbeat: true }
  | { finish: { finishReason: string; model: string; usage?: Record<string, number> } }
  | { error: { code: number; message: string } };

const dropDefaults = <T extends Record<string, unknown>>(value: T): Partial<T> =>
  Object.fromEntries(Object.entries(value).filter(([, v]) => v !== "" && v !== 0 && v !== undefined)) as Partial<T>;

export function seenFromEvent(event: UpstreamEvent): Seen {
  switch (event.type) {
    case "text":
      return { delta: event.text };
    case "reasoning":
      return { reasoning: event.text };
    case "refusal":
      return { refusal: event.text };
    case "tool_call":
      return {
        toolCall: dropDefaults({ index: event.index, id: event.id, name: event.name, arguments: event.arguments }),
      };
    case "finish":
      return {
        finish: {
          finishReason: event.finishReason,
          model: event.model,
          ...(event.usage && { usage: dropDefaults({ ...event.usage }) as Record<string, number> }),
        },
      };
  }
}

export function seenFromResponse(response: ChatResponse): Seen {
  const event = response.event;
  switch (event?.$case) {
    case "delta":
      return { delta: event.value.text };
    case "reasoning":
      return { reasoning: event.value.text };
    case "refusal":
      return { refusal: event.value.text };
    case "toolCall":
      return { toolCall: dropDefaults({ ...event.value }) };
    case "heartbeat":
      return { heartbeat: true };
    case "finish":
      return {
        finish: {
          finishReason: event.value.finishReason,
          model: event.value.model,
          ...(event.value.usage && { usage: dropDefaults({ ...event.value.usage }) as Record<string, number> }),
        },
      };
    case "error":
      return { error: { code: event.value.code, message: event.value.message } };
    default:
      throw new Error(`no event in ${JSON.stringify(response)}`);
  }
}

/** An SSE event through Envoy (`data: {...}`), in the same form. */
export function seenFromJson(event: Record<string, unknown>): Seen {
  const [key, value] = Object.entries(event)[0] as [string, Record<string, unknown>];
  switch (key) {
    case "delta":
    case "reasoning":
    case "refusal":
      return { [key]: (value.text as string | undefined) ?? "" } as Seen;
    case "heartbeat":
      return { heartbeat: true };
    case "toolCall":
    case "finish":
      return { [key]: value } as Seen;
    case "error":
      return { error: { code: value.code as number, message: value.message as string } };
    default:
      throw new Error(`unknown event ${key}`);
  }
}

/** What the gateway makes of each recorded stream. */
export const EXPECTED: Record<string, Seen[]> = {
  // OpenAI, two calls one after the other; `usage: null` on every chunk, then usage with details.
  "openai-parallel-tool-calls": [
    { toolCall: { id: "call_9XQ3mXyq6bNqV3cPd4zK1a2B", name: "get_weather" } },
    { toolCall: { arguments: '{"ci' } },
    { toolCall: { arguments: 'ty": "P' } },
    { toolCall: { arguments: 'aris"}' } },
    { toolCall: { index: 1, id: "call_mP0c8Zr2KtWq7LsB1vHn4eYd", name: "get_weather" } },
    { toolCall: { index: 1, arguments: '{"ci' } },
    { toolCall: { index: 1, arguments: 'ty": "T' } },
    { toolCall: { index: 1, arguments: 'okyo"}' } },
    {
      finish: {
        finishReason: "tool_calls",
        model: "gpt-4o-2024-08-06",
        usage: { promptTokens: 82, completionTokens: 51, totalTokens: 133, cachedPromptTokens: 64 },
      },
    },
  ],
  // DeepSeek-R1: reasoning_content, then content; usage in the finish chunk.
  "deepseek-reasoner": [
    { reasoning: "Okay" },
    { reasoning: ", the user" },
    { reasoning: " says hello. Ünïcödé, 你好 👋" },
    { delta: "Hello" },
    { delta: "! How can I help?" },
    {
      finish: {
        finishReason: "stop",
        model: "deepseek-reasoner",
        usage: { promptTokens: 13, completionTokens: 24, totalTokens: 37, reasoningTokens: 16 },
      },
    },
  ],
  // vLLM filling both `reasoning_content` and `reasoning` with the same text: forwarded once.
  "vllm-reasoning-both-fields": [
    { reasoning: "Two plus two" },
    { reasoning: " is four." },
    { delta: "4" },
    {
      finish: {
        finishReason: "stop",
        model: "Qwen/Qwen3-8B",
        usage: { promptTokens: 17, completionTokens: 12, totalTokens: 29 },
      },
    },
  ],
  // OpenRouter: `reasoning`, a role on every chunk, usage after the finish chunk.
  "openrouter-reasoning": [
    { reasoning: "Hmm" },
    { reasoning: ", short answer." },
    { delta: "Yes." },
    {
      finish: {
        finishReason: "stop",
        model: "qwen/qwq-32b",
        usage: { promptTokens: 20, completionTokens: 9, totalTokens: 29, reasoningTokens: 6 },
      },
    },
  ],
  // Gemini: two whole calls in one chunk, no `index`.
  "gemini-tool-calls-no-index": [
    { toolCall: { id: "function-call-15830263919431377541", name: "get_weather", arguments: '{"city":"Paris"}' } },
    {
      toolCall: {
        index: 1,
        id: "function-call-15830263919431377542",
        name: "get_weather",
        arguments: '{"city":"Tokyo"}',
      },
    },
    {
      finish: {
        finishReason: "tool_calls",
        model: "gemini-2.0-flash",
        usage: { promptTokens: 40, completionTokens: 16, totalTokens: 56 },
      },
    },
  ],
  // DeepSeek reusing index 0 for a second call id.
  "deepseek-reused-index": [
    { toolCall: { id: "call_0_4f9a1c2e-7d3b-4e8a-9c1f-2b3a4d5e6f70", name: "get_weather" } },
    { toolCall: { arguments: '{"city": "Paris"}' } },
    { toolCall: { index: 1, id: "call_1_8e7d6c5b-4a39-4281-b7f6-e5d4c3b2a190", name: "get_time" } },
    { toolCall: { index: 1, arguments: '{"tz": "Asia/Tokyo"}' } },
    {
      finish: {
        finishReason: "tool_calls",
        model: "deepseek-chat",
        usage: { promptTokens: 120, completionTokens: 40, totalTokens: 160, cachedPromptTokens: 64 },
      },
    },
  ],
  // Two calls started in one chunk, their arguments interleaved.
  "interleaved-tool-calls": [
    { toolCall: { id: "call_a", name: "get_weather" } },
    { toolCall: { index: 1, id: "call_b", name: "get_time" } },
    { toolCall: { index: 1, arguments: '{"tz":' } },
    { toolCall: { arguments: '{"city":' } },
    { toolCall: { index: 1, arguments: '"UTC"}' } },
    { toolCall: { arguments: '"Oslo"}' } },
    {
      finish: {
        finishReason: "tool_calls",
        model: "parallel-model",
        usage: { promptTokens: 50, completionTokens: 30, totalTokens: 80 },
      },
    },
  ],
  // Structured outputs: the model refuses.
  "openai-refusal": [
    { refusal: "I'm sorry," },
    { refusal: " I can't help with that." },
    {
      finish: {
        finishReason: "stop",
        model: "gpt-4o-2024-08-06",
        usage: { promptTokens: 30, completionTokens: 12, totalTokens: 42 },
      },
    },
  ],
};

/** What an agent loop does with a reply's tool_call events: the assistant turn's `tool_calls`, in OpenAI's shape. */
export function toolCallsOf(
  seen: readonly Seen[],
): { id: string; type: "function"; function: { name: string; arguments: string } }[] {
  const calls: { id: string; type: "function"; function: { name: string; arguments: string } }[] = [];
  for (const event of seen) {
    if (!("toolCall" in event)) continue;
    const { index = 0, id = "", name = "", arguments: args = "" } = event.toolCall;
    const call = (calls[index] ??= { id, type: "function", function: { name, arguments: "" } });
    call.function.arguments += args;
  }
  return calls;
}

/** Runs of one kind collapsed: the order of kinds a stream went through (tool calls told apart by index). */
export function kindsOf(seen: readonly Seen[]): string[] {
  const kinds: string[] = [];
  for (const event of seen) {
    const key = Object.keys(event)[0] ?? "";
    const kind = "toolCall" in event ? `toolCall${event.toolCall.index ?? 0}` : key;
    if (kinds.at(-1) !== kind) kinds.push(kind);
  }
  return kinds;
}

/**
 * What a reply means once its pieces are joined, by kind: text, reasoning, refusal, and each tool
 * call's arguments (by index), as a client appending the events it reads would hold them.
 */
export function joinedOf(seen: readonly Seen[]): Record<string, string> {
  const joined: Record<string, string> = {};
  const add = (kind: string, piece: string) => {
    joined[kind] = (joined[kind] ?? "") + piece;
  };
  for (const event of seen) {
    if ("delta" in event) add("text", event.delta);
    else if ("reasoning" in event) add("reasoning", event.reasoning);
    else if ("refusal" in event) add("refusal", event.refusal);
    else if ("toolCall" in event) add(`toolCall${event.toolCall.index ?? 0}`, event.toolCall.arguments ?? "");
  }
  return joined;
}

/**
 * A reply of every kind with characters outside the BMP (surrogate pairs in JavaScript), streamed as
 * `@dwmkerr/mock-llm` does with `chunkSize: 7`: each kind's text cut every 7 UTF-16 code units, so
 * pairs are cut between chunks, and each half sent JSON-escaped on its own (`"\ud83d"`, `"\ude00"`),
 * as JSON.stringify writes a lone surrogate. `meant` is what the upstream meant, joined by kind.
 */
export function splitSurrogatesStream(): { sse: string; meant: Record<string, string> } {
  const meant = {
    reasoning: "Think 😀 of 🎉🎉 it",
    text: "Hello 👋 world 🌍🌍!",
    refusal: "Declin🙅",
    toolCall0: '{"mood":"😀😀😀"}',
    toolCall1: '{"t":"🗼"}',
  };
  const cut = (text: string) => text.match(/[\s\S]{1,7}/g) ?? [];
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    `data: ${JSON.stringify({
      id: "chatcmpl-mock",
      object: "chat.completion.chunk",
      created: 0,
      model: "mock-llm",
      choices: [{ index: 0, delta, finish_reason: finish }],
    })}\n\n`;
  const call = (index: number, id: string, args: string) => [
    chunk({ tool_calls: [{ index, id, type: "function", function: { name: "f", arguments: "" } }] }),
    ...cut(args).map((piece) => chunk({ tool_calls: [{ index, function: { arguments: piece } }] })),
  ];
  const sse = [
    chunk({ role: "assistant", content: "" }),
    ...cut(meant.reasoning).map((piece) => chunk({ reasoning_content: piece })),
    ...cut(meant.text).map((piece) => chunk({ content: piece })),
    ...cut(meant.refusal).map((piece) => chunk({ refusal: piece })),
    // Two calls whose pieces interleave: each call's halves are held apart.
    ...call(0, "call_a", meant.toolCall0).flatMap((piece, i) => [piece, call(1, "call_b", meant.toolCall1)[i] ?? ""]),
    chunk({}, "stop"),
    "data: [DONE]\n\n",
  ].join("");
  return { sse, meant };
}
