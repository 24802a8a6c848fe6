// What the terminal client writes for each kind of event, on a terminal (styled) and into a pipe
// (plain): the renderer alone, fed events as the gateway streams them.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { ChatEvent } from "../../src/cli/call.js";
import { CallFailed } from "../../src/cli/call.js";
import { jsonRenderer, textRenderer } from "../../src/cli/render.js";

class Captured extends Writable {
  text = "";
  constructor(readonly isTTY: boolean) {
    super();
  }
  getColorDepth() {
    return 8;
  }
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}

const reasoning = (text: string): ChatEvent => ({ $case: "reasoning", value: { text } });
const delta = (text: string): ChatEvent => ({ $case: "delta", value: { text } });
const tool = (index: number, args: string, id = "", name = ""): ChatEvent => ({
  $case: "toolCall",
  value: { index, id, name, arguments: args },
});
const finish: ChatEvent = {
  $case: "finish",
  value: {
    finishReason: "tool_calls",
    historyTrimmedTurns: 0,
    model: "deepseek-reasoner",
    usage: { promptTokens: 12, completionTokens: 40, totalTokens: 52, reasoningTokens: 30, cachedPromptTokens: 8 },
  },
};
// A reasoning model that thinks, answers, then calls two tools whose fragments interleave.
const events: ChatEvent[] = [
  reasoning("The user wants"),
  reasoning(" the weather."),
  delta("Let me check."),
  tool(0, '{"city":', "call_a", "get_weather"),
  tool(1, "", "call_b", "get_time"),
  tool(0, '"Paris"}'),
  tool(1, '{"tz":"CET"}'),
  finish,
];

function render(tty: boolean, all: ChatEvent[]) {
  const [out, err] = [new Captured(tty), new Captured(tty)];
  const renderer = textRenderer(out, err);
  for (const event of all) renderer.event(event);
  renderer.close();
  return { out: out.text, err: err.text };
}

const env = { NO_COLOR: process.env.NO_COLOR, FORCE_COLOR: process.env.FORCE_COLOR };
function withoutColorOverrides<T>(body: () => T): T {
  delete process.env.NO_COLOR;
  delete process.env.FORCE_COLOR;
  try {
    return body();
  } finally {
    for (const [k, v] of Object.entries(env)) if (v !== undefined) process.env[k] = v;
  }
}

describe("the terminal client's text output", () => {
  it("on a terminal: reasoning dimmed, tool calls named and streamed, usage dimmed at the end, all on stderr", () => {
    const { out, err } = withoutColorOverrides(() => render(true, events));
    expect(out).toBe("Let me check.\n");
    expect(err).toBe(
      "\x1b[2mThe user wants\x1b[22m\x1b[2m the weather.\x1b[22m\n" +
        '\x1b[36m[tool call 0]\x1b[39m get_weather \x1b[2m(call_a)\x1b[22m {"city":\n' +
        "\x1b[36m[tool call 1]\x1b[39m get_time \x1b[2m(call_b)\x1b[22m \n" +
        '\x1b[36m[tool call 0]\x1b[39m "Paris"}\n' +
        '\x1b[36m[tool call 1]\x1b[39m {"tz":"CET"}\n' +
        "\x1b[2mtool_calls · deepseek-reasoner · 12 prompt + 40 completion = 52 tokens (30 reasoning, 8 cached)\x1b[22m\n",
    );
  });

  it("into a pipe: the same text, unstyled", () => {
    const { out, err } = withoutColorOverrides(() => render(false, events));
    expect(out).toBe("Let me check.\n");
    expect(err).toBe(
      "The user wants the weather.\n" +
        '[tool call 0] get_weather (call_a) {"city":\n' +
        "[tool call 1] get_time (call_b) \n" +
        '[tool call 0] "Paris"}\n' +
        '[tool call 1] {"tz":"CET"}\n' +
        "tool_calls · deepseek-reasoner · 12 prompt + 40 completion = 52 tokens (30 reasoning, 8 cached)\n",
    );
  });

  it("keeps a call's fragments on one line while no other call interleaves", () => {
    const { err } = render(false, [tool(0, '{"a"', "call_1", "f"), tool(0, ":1"), tool(0, "}"), delta("done")]);
    expect(err).toBe('[tool call 0] f (call_1) {"a":1}\n');
  });

  it("ends the answer's line before a failure, and names the status", () => {
    const [out, err] = [new Captured(false), new Captured(false)];
    const renderer = textRenderer(out, err);
    renderer.event(delta("half"));
    renderer.event({
      $case: "error",
      value: { code: 14, status: "UNAVAILABLE", message: "upstream connection lost mid-stream" },
    });
    renderer.failed(new CallFailed(14, "upstream connection lost mid-stream"));
    expect(out.text).toBe("half\n");
    expect(err.text).toBe("error: UNAVAILABLE: upstream connection lost mid-stream\n");
  });

  it("shows no heartbeat, and a refusal as the answer", () => {
    const { out, err } = render(false, [
      { $case: "heartbeat", value: { waitedMs: 15000 } },
      { $case: "refusal", value: { text: "I can't help with that." } },
    ]);
    expect(out).toBe("I can't help with that.\n");
    expect(err).toBe("");
  });
});

describe("the terminal client's --json output", () => {
  it("writes every event, reasoning and tool calls included, as one JSON line", () => {
    const [out, err] = [new Captured(false), new Captured(false)];
    const renderer = jsonRenderer(out, err);
    for (const event of [
      reasoning("hm"),
      tool(0, "{}", "call_a", "f"),
      { $case: "heartbeat", value: { waitedMs: 15000 } } as ChatEvent,
    ])
      renderer.event(event);
    expect(
      out.text
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as unknown),
    ).toEqual([
      { reasoning: { text: "hm" } },
      // proto3 JSON leaves out zero values (index 0), as Envoy's data lines do.
      { toolCall: { id: "call_a", name: "f", arguments: "{}" } },
      { heartbeat: { waitedMs: 15000 } },
    ]);
    expect(err.text).toBe("");
  });
});
