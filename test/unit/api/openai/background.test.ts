// Background responses' presentation (src/api/openai/background.ts): the Responses events of a
// logged stream, byte for byte against a golden file; a resume from any `starting_after` writes
// exactly the first reading's events after it (same numbers, same item ids, same objects), also when
// presented from the stored row alone; the response a generation ends with, built from its events
// with nobody reading; and a slow reader of such a stream gets every event unmerged (replay.ts),
// which would otherwise renumber them.
import { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { ChatResponse, HttpBody } from "../../../../src/contract/chat.js";
import { followerOf, idsFor, optionsOfRow, streamIdOf } from "../../../../src/api/openai/background.js";
import {
  ResponseEventPresenter,
  ResponseObjectPresenter,
  type ResponseOptions,
} from "../../../../src/api/openai/responses-events.js";
import type { ResponseEcho } from "../../../../src/api/openai/responses-request.js";
import { replay } from "../../../../src/chat/replay.js";
import type { AnyCall } from "../../../../src/chat/outbox.js";
import { createMemoryLog } from "../../../../src/resume/memory-log.js";

const ID = "resp_0123456789abcdef0123456789abcdef";
const ECHO: ResponseEcho = {
  instructions: "be brief",
  max_output_tokens: 100,
  metadata: { topic: "weather" },
  parallel_tool_calls: true,
  reasoning: { effort: "low", summary: null },
  temperature: 0.5,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [{ type: "function", name: "lookup", parameters: {}, strict: false, description: null }],
  top_p: null,
  user: "u1",
};
const options = (after?: number): ResponseOptions => ({
  id: ID,
  model: "m",
  echo: ECHO,
  newId: idsFor(ID),
  storage: { store: true, previousResponseId: "resp_ffffffffffffffffffffffffffffffff" },
  background: { createdAt: 1_700_000_000 },
  now: () => 1_700_000_005_000,
  ...(after !== undefined && { after }),
});

const delta = (t: string): ChatResponse => ({ event: { $case: "delta", value: { text: t } } });
const reasoning = (t: string): ChatResponse => ({ event: { $case: "reasoning", value: { text: t } } });
const call = (index: number, id: string, name: string, args: string): ChatResponse => ({
  event: { $case: "toolCall", value: { index, id, name, arguments: args } },
});
const finish: ChatResponse = {
  event: {
    $case: "finish",
    value: {
      finishReason: "stop",
      historyTrimmedTurns: 0,
      model: "upstream-model",
      usage: { promptTokens: 3, completionTokens: 7, totalTokens: 10, reasoningTokens: 4, cachedPromptTokens: 1 },
    },
  },
};
/** A stream as its log keeps it: reasoning, text in pieces, a tool call (with no id of its own), the finish. */
const LOGGED = [
  reasoning("Think"),
  reasoning("ing."),
  delta("Hél"),
  delta("lo 🌍"),
  call(0, "", "lookup", '{"q":'),
  call(0, "", "", '"x"}'),
  finish,
];

const text = (body: HttpBody | undefined) => body?.data.toString() ?? "";
const present = (p: ResponseEventPresenter, messages: ChatResponse[]) =>
  messages.map((m) => text(p.present(m))).join("");
const events = (body: string) =>
  body
    .split("\n\n")
    .filter((e) => e.startsWith("event: "))
    .map((e) => JSON.parse(e.slice(e.indexOf("\ndata: ") + 7)) as Record<string, unknown> & { type: string });

describe("a background response's events", () => {
  it("are the golden file's, byte for byte, numbered from 0 with ids derived from the response id", async () => {
    const body = present(new ResponseEventPresenter(options()), LOGGED);
    await expect(body).toMatchFileSnapshot("../../../fixtures/responses/background-stream.sse");
    const parsed = events(body);
    expect(parsed.map((e) => e.sequence_number)).toEqual(parsed.map((_, i) => i));
    expect(parsed[0]).toMatchObject({ type: "response.created", response: { status: "queued", background: true } });
    expect(parsed[1]).toMatchObject({ type: "response.in_progress", response: { status: "in_progress" } });
  });

  it("resumed after any N: exactly the first reading's events after N, also when presented from the stored row", () => {
    const full = events(present(new ResponseEventPresenter(options()), LOGGED));
    // The row as the create stored it (what a resume on another replica has to go on).
    const row = JSON.parse(JSON.stringify(new ResponseObjectPresenter(options()).initial())) as Record<string, unknown>;
    for (let n = -1; n < full.length; n++) {
      const resumed = events(present(new ResponseEventPresenter(options(n)), LOGGED));
      expect(resumed).toEqual(full.slice(n + 1));
      const fromRow = events(present(new ResponseEventPresenter(optionsOfRow(row, n)), LOGGED));
      expect(fromRow).toEqual(full.slice(n + 1));
    }
  });

  it("the response it ends with is built from its events with nobody reading; cancelled is `cancelled`", () => {
    const follower = followerOf(options());
    follower.follow({ type: "reasoning", text: "Thinking." });
    follower.follow({ type: "text", text: "Hello" });
    follower.follow({
      type: "finish",
      finishReason: "stop",
      model: "upstream-model",
      usage: { promptTokens: 3, completionTokens: 7, totalTokens: 10, reasoningTokens: 4, cachedPromptTokens: 1 },
    });
    const final = follower.presenter.final(status.OK, "");
    expect(final).toMatchObject({ id: ID, status: "completed", background: true, created_at: 1_700_000_000 });
    expect(JSON.stringify(final)).toContain('"text":"Hello"');

    const stopped = followerOf(options());
    stopped.follow({ type: "text", text: "Hel" });
    expect(stopped.presenter.final(status.CANCELLED, "cancelled")).toMatchObject({ status: "cancelled", error: null });
    expect(stopped.presenter.final(status.UNAVAILABLE, "upstream down")).toMatchObject({ status: "failed" });
  });

  it("has a stream id that is the response id's digits as a UUID", () => {
    expect(streamIdOf(ID)).toBe("01234567-89ab-cdef-0123-456789abcdef");
  });
});

/** A call whose transport is full after each write for 5 ms: a slow reader, events pile up meanwhile. */
class SlowCall extends EventEmitter {
  readonly written: HttpBody[] = [];
  writableNeedDrain = false;
  cancelled = false;
  sendMetadata() {}
  write(body: HttpBody) {
    this.written.push(body);
    this.writableNeedDrain = true;
    setTimeout(() => {
      this.writableNeedDrain = false;
      this.emit("drain");
    }, 5);
    return false;
  }
  end() {
    this.emit("finished");
  }
}

describe("a slow reader of a background response", () => {
  it("gets every event unmerged, so its numbers are a resume's", async () => {
    const log = createMemoryLog({ retentionMs: 60_000, maxStreamBytes: 1 << 20, maxTotalBytes: 1 << 24 });
    const writer = await log.create("alice", () => undefined, streamIdOf(ID));
    const pieces = Array.from({ length: 30 }, (_, i) => `${i} `);
    const call = new SlowCall();
    const done = new Promise((resolve) => call.on("finished", resolve));
    const reading = replay(call as unknown as AnyCall, log.reader(writer.streamId), {
      streamId: writer.streamId,
      after: 0,
      requestId: "r",
      heartbeatMs: 0,
      presenter: new ResponseEventPresenter(options()),
    });
    // Events arrive while the reader waits for its transport: a merging reader would join them.
    for (const piece of pieces) {
      writer.append(delta(piece));
      await new Promise((resolve) => setImmediate(resolve));
    }
    writer.end(finish);
    await reading;
    await done;
    const got = events(call.written.map(text).join(""));
    const expected = events(present(new ResponseEventPresenter(options()), [...pieces.map(delta), finish]));
    expect(got).toEqual(expected);
    await log.close();
  });
});
