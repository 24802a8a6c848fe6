// The upstream translator (src/upstream/openai-chunks.ts), pure: recorded streams in the wire shapes
// of OpenAI, DeepSeek, vLLM, OpenRouter and Gemini replayed chunk by chunk, and the edge cases
// one at a time. Then the same recordings through the fake upstream a few bytes per write (one of
// them one byte per write, ai-gateway style), the real openai SDK and the gRPC service.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import { ChunkTranslator } from "../../../../src/providers/openai/chunks.js";
import { UpstreamProtocolError } from "../../../../src/upstream/errors.js";
import type { UpstreamEvent } from "../../../../src/upstream/events.js";
import {
  EXPECTED,
  chunksOf,
  fixture,
  joinedOf,
  seenFromEvent,
  seenFromResponse,
  splitSurrogatesStream,
} from "../../../support/events.js";
import { collect, startHarness, type Harness } from "../../../support/grpc.js";

function translate(chunks: readonly unknown[], model = "asked-model"): UpstreamEvent[] {
  const translator = new ChunkTranslator(model);
  const events: UpstreamEvent[] = [];
  for (const chunk of chunks) events.push(...translator.read(chunk as ChatCompletionChunk));
  events.push(...translator.finish());
  return events;
}

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) => ({
  id: "c",
  object: "chat.completion.chunk",
  created: 0,
  model: "m",
  choices: [{ index: 0, delta, finish_reason: finish }],
  ...extra,
});
const done = chunk({}, "stop");

describe("recorded streams, chunk by chunk", () => {
  it.each(Object.keys(EXPECTED))("%s", (name) => {
    expect(translate(chunksOf(fixture(name))).map(seenFromEvent)).toEqual(EXPECTED[name]);
  });
});

describe("edge cases", () => {
  it("gives a text-only stream exactly its text and a usage with zeros for what it does not report", () => {
    const events = translate([
      chunk({ role: "assistant", content: "" }),
      chunk({ content: "a" }),
      chunk({ content: "b" }),
      done,
      {
        ...chunk({}),
        choices: [],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      },
    ]);
    expect(events).toEqual([
      { type: "text", text: "a" },
      { type: "text", text: "b" },
      {
        type: "finish",
        finishReason: "stop",
        model: "m",
        usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3, reasoningTokens: 0, cachedPromptTokens: 0 },
      },
    ]);
  });

  it("makes no tool-call bookkeeping for a reply without tool calls: a translator lives as long as its stream", () => {
    const translator = new ChunkTranslator("m");
    for (const piece of ["a", "b"]) translator.read(chunk({ content: piece }) as ChatCompletionChunk);
    expect(Object.values(translator).filter((value) => value instanceof Map)).toEqual([]);
  });

  it("puts reasoning before content when one chunk carries both, then refusal", () => {
    expect(
      translate([chunk({ content: "answer", reasoning_content: "thought", refusal: "no" }), done]).slice(0, 3),
    ).toEqual([
      { type: "reasoning", text: "thought" },
      { type: "text", text: "answer" },
      { type: "refusal", text: "no" },
    ]);
  });

  it("reads `reasoning` when `reasoning_content` is absent, null or empty, and never both", () => {
    const events = translate([
      chunk({ reasoning: "a" }),
      chunk({ reasoning_content: null, reasoning: "b" }),
      chunk({ reasoning_content: "", reasoning: "c" }),
      chunk({ reasoning_content: "d", reasoning: "d" }),
      done,
    ]);
    expect(events.slice(0, -1)).toEqual(["a", "b", "c", "d"].map((text) => ({ type: "reasoning", text })));
  });

  it("does not echo a call's id and name when a server repeats them on every piece", () => {
    const call = (args: string) =>
      chunk({ tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "f", arguments: args } }] });
    expect(
      translate([call("{"), call("}"), call(""), done])
        .map(seenFromEvent)
        .slice(0, -1),
    ).toEqual([{ toolCall: { id: "call_1", name: "f", arguments: "{" } }, { toolCall: { arguments: "}" } }]);
  });

  it("gives a piece with neither id nor index to the latest call, and one with an unknown index a call of its own", () => {
    const events = translate([
      chunk({ tool_calls: [{ id: "a", function: { name: "f" } }] }),
      chunk({ tool_calls: [{ function: { arguments: "x" } }] }),
      chunk({ tool_calls: [{ index: 7, function: { name: "g", arguments: "y" } }] }),
      chunk({ tool_calls: [{ function: { arguments: "z" } }] }),
      done,
    ]);
    expect(events.map(seenFromEvent).slice(0, -1)).toEqual([
      { toolCall: { id: "a", name: "f" } },
      { toolCall: { arguments: "x" } },
      { toolCall: { index: 1, name: "g", arguments: "y" } },
      { toolCall: { index: 1, arguments: "z" } },
    ]);
  });

  it("goes back to an earlier call when a piece names its id again", () => {
    const events = translate([
      chunk({ tool_calls: [{ index: 0, id: "a", function: { name: "f" } }] }),
      chunk({ tool_calls: [{ index: 0, id: "b", function: { name: "g" } }] }),
      chunk({ tool_calls: [{ id: "a", function: { arguments: "1" } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: "2" } }] }),
      done,
    ]);
    expect(events.map(seenFromEvent).slice(0, -1)).toEqual([
      { toolCall: { id: "a", name: "f" } },
      { toolCall: { index: 1, id: "b", name: "g" } },
      { toolCall: { arguments: "1" } },
      // The index was last named by call "a" (the piece with its id came with no index).
      { toolCall: { index: 1, arguments: "2" } },
    ]);
  });

  it("ignores what is not a tool call, and counts that are not numbers", () => {
    const events = translate([
      chunk({ tool_calls: [null, 5, { index: "0" }] }),
      chunk({ tool_calls: "nope" }),
      {
        ...done,
        usage: { prompt_tokens: "9", completion_tokens: -1, total_tokens: 2.7, completion_tokens_details: null },
      },
    ]);
    // `{index: "0"}` is a call with no id, no name and no arguments: a first event of its own.
    expect(events.map(seenFromEvent)).toEqual([
      { toolCall: {} },
      { finish: { finishReason: "stop", model: "m", usage: { totalTokens: 2 } } },
    ]);
  });

  it("keeps the model asked for when the upstream names none, and the last finish reason given", () => {
    const events = translate(
      [
        { ...chunk({ content: "x" }, "length"), model: "" },
        { ...chunk({}, null), model: "" },
      ],
      "asked",
    );
    expect(events.at(-1)).toMatchObject({ finishReason: "length", model: "asked" });
  });

  it("joins a character cut between two chunks, in text, reasoning, refusal and each tool call's arguments", () => {
    const { sse, meant } = splitSurrogatesStream();
    const events = translate(chunksOf(sse));
    expect(joinedOf(events.map(seenFromEvent))).toEqual(meant);
    // Each event on its own is valid Unicode, so no encoder on the way replaces half a character.
    for (const event of events) expect(JSON.stringify(event)).not.toMatch(/\\ud[89a-f]/);
  });

  it("holds a piece that is only half a character, and flushes what is still held at the end", () => {
    const events = translate([
      chunk({ content: "a\ud83d" }),
      chunk({ content: "\ude00", reasoning_content: "\ud83c" }),
      chunk({ content: "\ud83d" }),
      chunk({ tool_calls: [{ index: 0, id: "c", function: { name: "f", arguments: "\ud83d" } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: "\ude00" } }] }),
      chunk({ reasoning_content: "\udf89" }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: "\ud83d" } }] }),
      done,
    ]);
    expect(events.map(seenFromEvent)).toEqual([
      { delta: "a" },
      { delta: "\ud83d\ude00" },
      // A call's first piece goes out for its id and name even when its arguments are held.
      { toolCall: { id: "c", name: "f" } },
      { toolCall: { arguments: "\ud83d\ude00" } },
      { reasoning: "\ud83c\udf89" },
      // The stream ended on half a character: it goes out as the upstream sent it, and becomes
      // U+FFFD when encoded, as it would have anyway.
      { delta: "\ud83d" },
      { toolCall: { arguments: "\ud83d" } },
      { finish: { finishReason: "stop", model: "m" } },
    ]);
  });

  it("refuses JSON that is no chunk, and a stream that never says why it stopped", () => {
    expect(() => new ChunkTranslator("m").read({ id: "x" } as unknown as ChatCompletionChunk)).toThrow(
      UpstreamProtocolError,
    );
    const translator = new ChunkTranslator("m");
    translator.read(chunk({ content: "x" }) as unknown as ChatCompletionChunk);
    expect(() => translator.finish()).toThrow(new UpstreamProtocolError("unfinished"));
  });
});

describe("recorded streams through the fake upstream, the openai SDK and the gRPC service", () => {
  let harness: Harness;
  let reply = { sse: "", writeBytes: 0 };
  beforeAll(async () => {
    harness = await startHarness({
      upstream: { reply: () => reply },
    });
  });
  afterAll(() => harness?.close());
  const replay = async (name: string, writeBytes: number) => {
    reply = { sse: fixture(name), writeBytes };
    const result = await collect(harness.client, { text: "hi" });
    return [result.code, result.responses.map(seenFromResponse)];
  };

  it.each(Object.keys(EXPECTED))("%s, 61 bytes per write", async (name) => {
    expect(await replay(name, 61)).toEqual([status.OK, EXPECTED[name]]);
  });

  it("a character cut between two chunks reaches the caller whole, in every kind, 5 bytes per write", async () => {
    const { sse, meant } = splitSurrogatesStream();
    reply = { sse, writeBytes: 5 };
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.OK);
    expect(joinedOf(result.responses.map(seenFromResponse))).toEqual(meant);
  });

  it("deepseek-reasoner one byte per write: chunks, JSON and UTF-8 characters split everywhere", async () => {
    expect(await replay("deepseek-reasoner", 1)).toEqual([status.OK, EXPECTED["deepseek-reasoner"]]);
  });
});
