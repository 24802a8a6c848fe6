// The outbox alone, on a stand-in for the grpc-js call: what a caller that keeps up gets (every
// event as its own message, at once), what one that is behind gets (held events merged by kind,
// in order, at the next 'drain'), when the producer is told to wait, and where heartbeats go.
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { MAX_MERGED_CHARS, Outbox, type Call } from "../../src/chat/outbox.js";
import type { ChatResponse } from "../../src/contract/chat.js";

/** The parts of a grpc-js server stream the outbox uses; `behind` is what write() would report. */
class FakeCall extends EventEmitter {
  writableNeedDrain = false;
  cancelled = false;
  written: ChatResponse[] = [];
  metadataSent = 0;
  sendMetadata(): void {
    this.metadataSent++;
  }
  write(message: ChatResponse, done: () => void): boolean {
    this.written.push(structuredClone(message));
    done();
    return !this.writableNeedDrain;
  }
  /** The transport caught up. */
  catchUp(): void {
    this.writableNeedDrain = false;
    this.emit("drain");
  }
}

function outbox(sent?: (m: ChatResponse) => void) {
  const call = new FakeCall();
  return { call, box: new Outbox(call as unknown as Call, "req-1", sent) };
}

const kinds = (messages: ChatResponse[]) => messages.map((m) => `${m.event?.$case}:${JSON.stringify(m.event?.value)}`);

describe("Outbox", () => {
  it("writes each event at once, one message each, while the caller keeps up; headers with the first", () => {
    const { call, box } = outbox();
    expect(box.push({ type: "text", text: "a" })).toBe(false);
    expect(box.push({ type: "text", text: "b" })).toBe(false);
    expect(call.written.map((m) => m.event?.$case)).toEqual(["delta", "delta"]);
    expect(call.metadataSent).toBe(1);
    expect(box.started).toBe(true);
  });

  it("holds what arrives while the caller is behind, merged by kind and in order, and sends it at 'drain'", () => {
    const { call, box } = outbox();
    call.writableNeedDrain = true;
    box.push({ type: "reasoning", text: "r1" });
    box.push({ type: "reasoning", text: "r2" });
    box.push({ type: "text", text: "t1" });
    box.push({ type: "text", text: "t2" });
    box.push({ type: "tool_call", index: 0, id: "c1", name: "f", arguments: "{" });
    box.push({ type: "tool_call", index: 0, id: "", name: "", arguments: "}" });
    box.push({ type: "tool_call", index: 1, id: "c2", name: "g", arguments: "" });
    expect(call.written).toEqual([]);
    call.catchUp();
    expect(kinds(call.written)).toEqual([
      'reasoning:{"text":"r1r2"}',
      'delta:{"text":"t1t2"}',
      'toolCall:{"index":0,"id":"c1","name":"f","arguments":"{}"}',
      'toolCall:{"index":1,"id":"c2","name":"g","arguments":""}',
    ]);
  });

  it("tells the producer to wait once MAX_MERGED_CHARS are held, and not before", () => {
    const { call, box } = outbox();
    call.writableNeedDrain = true;
    expect(box.push({ type: "text", text: "x".repeat(MAX_MERGED_CHARS - 1) })).toBe(false);
    expect(box.push({ type: "text", text: "x" })).toBe(true);
  });

  it("puts the finish after everything held", () => {
    const { call, box } = outbox();
    call.writableNeedDrain = true;
    box.push({ type: "text", text: "held" });
    box.finish({ type: "finish", finishReason: "stop", model: "m", usage: undefined });
    expect(call.written.map((m) => m.event?.$case)).toEqual(["delta", "finish"]);
  });

  it("sends an error event only once something went out (before that the status alone says it)", () => {
    const failure = { code: 14, details: "upstream unreachable", cause: "upstream_unreachable" };
    const quiet = outbox();
    quiet.box.fail(failure);
    expect(quiet.call.written).toEqual([]);
    const started = outbox();
    started.box.push({ type: "text", text: "a" });
    started.box.fail(failure);
    expect(kinds(started.call.written)[1]).toBe(
      'error:{"code":14,"status":"UNAVAILABLE","message":"upstream unreachable"}',
    );
  });

  it("sends a heartbeat only when nothing waits to be sent", () => {
    const { call, box } = outbox();
    box.heartbeat(1500.4);
    expect(kinds(call.written)).toEqual(['heartbeat:{"waitedMs":1500}']);
    call.writableNeedDrain = true;
    box.push({ type: "text", text: "held" });
    box.heartbeat(3000);
    expect(call.written).toHaveLength(1);
  });

  it("shows each written message to its observer, and keeps the peak of what was waiting", () => {
    const seen: string[] = [];
    const { call, box } = outbox((m) => seen.push(m.event?.$case ?? ""));
    call.writableNeedDrain = true;
    box.push({ type: "text", text: "abc" });
    box.push({ type: "text", text: "de" });
    call.catchUp();
    expect(seen).toEqual(["delta"]);
    expect(box.peakBuffered).toBe(5);
  });
});
