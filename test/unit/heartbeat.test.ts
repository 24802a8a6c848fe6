// Quiet is not dead, over gRPC in-process: heartbeats while the upstream says nothing (counted over
// silences the fake upstream holds with gates), never mixed into content, none after the end, none
// while the gateway holds the upstream back for a slow caller; and the two upstream silences, before
// the first token and between chunks, each ending the right stream with its own message whatever
// the heartbeats.
import { afterEach, describe, expect, it } from "vitest";
import { Metadata, status } from "@grpc/grpc-js";
import { wire } from "../support/fake-model.js";
import { collect, heartbeatsOf, openStream, startHarness, textOf, type Harness } from "../support/grpc.js";
import { never } from "../support/gates.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

describe("heartbeats", () => {
  it("go out every interval of silence before the first token and between tokens, then the answer", async () => {
    let stream: ReturnType<typeof openStream> | undefined;
    const beats = (n: number) => stream?.until((r) => heartbeatsOf(r).length >= n);
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "100" },
      // Silent (after the role chunk) until the caller has 3 heartbeats, then a token, then silent
      // again until it has 5.
      upstream: {
        reply: () => ({
          tokens: ["Hello", " there"],
          gate: (i) => (i === 0 ? beats(3) : i === 1 ? beats(5) : undefined),
        }),
      },
    });
    const metadata = new Metadata();
    metadata.set("x-request-id", "beating");
    stream = openStream(harness, { text: "hi" }, metadata);
    expect((await stream.ended).code).toBe(status.OK);

    const kinds = stream.responses.map((r) => r.event?.$case);
    const first = kinds.indexOf("delta");
    const second = kinds.lastIndexOf("delta");
    // At least 3 heartbeats before the first token, at least 2 between the two tokens, none after
    // the second (the upstream sends the rest at once) and nothing after the finish.
    expect(kinds.slice(0, first).every((k) => k === "heartbeat") && first >= 3).toBe(true);
    expect(kinds.slice(first + 1, second).every((k) => k === "heartbeat") && second - first - 1 >= 2).toBe(true);
    expect(kinds.slice(second)).toEqual(["delta", "finish"]);
    expect(textOf(stream.responses)).toBe("Hello there");
    // waited_ms counts from the request, then from the last token: each heartbeat has waited at
    // least one more interval than the one before, counting from where it started.
    const before = heartbeatsOf(stream.responses.slice(0, first));
    const between = heartbeatsOf(stream.responses.slice(first + 1, second));
    for (const list of [before, between])
      list.forEach((waited, i) => expect(waited).toBeGreaterThanOrEqual(100 * (i + 1)));
    // The first heartbeat is the first message: the request id went out with it.
    expect(stream.headers()?.get("x-request-id")).toEqual(["beating"]);
  });

  it("are never merged with content, never put before it, and stop with the stream, however often they are due", async () => {
    // A heartbeat due every millisecond, and a token every 5: heartbeats between nearly all tokens.
    const tokens = Array.from({ length: 200 }, (_, i) => `t${i} `);
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "1" },
      upstream: { reply: () => ({ tokens, tokenDelayMs: 5 }) },
    });
    for (let run = 0; run < 3; run++) {
      const stream = openStream(harness, { text: "hi" });
      expect((await stream.ended).code).toBe(status.OK);
      const content = stream.responses.filter((r) => r.event?.$case !== "heartbeat");
      expect(content.map((r) => (r.event?.$case === "delta" ? r.event.value.text : r.event?.$case))).toEqual([
        ...tokens,
        "finish",
      ]);
      expect(heartbeatsOf(stream.responses).length).toBeGreaterThan(0);
      expect(stream.responses.at(-1)?.event?.$case).toBe("finish");
    }
    // Nothing was written after a stream's end (grpc-js would have failed the write).
    expect(harness.logs.filter((l) => l.msg === "chat handler failed")).toEqual([]);
  });

  it("are not sent while the gateway holds the upstream back for a caller that does not read", async () => {
    const tokens = Array.from({ length: 10_000 }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(194)}`);
    let sentinel: ReturnType<typeof openStream> | undefined;
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "500" },
      upstream: {
        reply: (r) =>
          r.body.messages?.at(-1)?.content === "sentinel"
            ? { tokens: ["done"], gate: () => sentinel?.until((responses) => heartbeatsOf(responses).length >= 4) }
            : { tokens },
      },
    });
    const slow = openStream(harness, { text: "a lot" });
    slow.call.pause();
    await harness.upstream.blocked(0);
    // Four heartbeat intervals pass (the sentinel, silent meanwhile, gets four heartbeats)...
    sentinel = openStream(harness, { text: "sentinel" });
    expect((await sentinel.ended).code).toBe(status.OK);
    // ...during which the paused caller, which has data to read, gets none.
    slow.call.resume();
    expect((await slow.ended).code).toBe(status.OK);
    expect(textOf(slow.responses)).toBe(tokens.join(""));
    // (Before its first token the stream may have waited an interval: only what follows counts.)
    const first = slow.responses.findIndex((r) => r.event?.$case === "delta");
    expect(heartbeatsOf(slow.responses.slice(first))).toEqual([]);
  });

  it("count as activity for nothing upstream-side: a stall between tokens still ends as stalled", async () => {
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "50", UPSTREAM_IDLE_TIMEOUT_MS: "1000" },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const stream = openStream(harness, { text: "hi" });
    // Heartbeats go on during the stall...
    await stream.until((r) => heartbeatsOf(r).length >= 3);
    // ...and the stall still ends it, as a stall.
    const end = await stream.ended;
    expect([end.code, end.details]).toEqual([status.UNAVAILABLE, "upstream stalled: no data for 1.0s"]);
    expect(stream.seen().at(-1)).toEqual({
      error: { code: status.UNAVAILABLE, message: "upstream stalled: no data for 1.0s" },
    });
  });

  it("count as activity for nothing upstream-side: no first token still ends as such, in-band once heartbeats started the response", async () => {
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "50", UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "1000" },
      upstream: {
        reply: () => ({ deltas: [wire.role()], tokens: ["never"], gate: (i) => (i === 1 ? never : undefined) }),
      },
    });
    const result = await collect(harness.client, { text: "hi" });
    const message = "upstream stalled before the first token: no token for 1.0s";
    expect([result.code, result.details]).toEqual([status.UNAVAILABLE, message]);
    const kinds = result.responses.map((r) => r.event?.$case);
    expect(kinds.filter((k) => k === "heartbeat").length).toBeGreaterThanOrEqual(3);
    expect(kinds.filter((k) => k !== "heartbeat")).toEqual(["error"]);
  });

  it("are off with HEARTBEAT_INTERVAL_MS=0", async () => {
    let sentinel: ReturnType<typeof openStream> | undefined;
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "0", UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "0", UPSTREAM_IDLE_TIMEOUT_MS: "300" },
      // The stream is silent until the sentinel has stalled after its first token (300 ms at least).
      upstream: {
        reply: (r) =>
          r.index === 0
            ? { tokens: ["late"], gate: () => sentinel?.ended.then(() => undefined) }
            : { tokens: ["x", "y"], gate: (i) => (i === 1 ? never : undefined) },
      },
    });
    const stream = openStream(harness, { text: "hi" });
    await harness.upstream.received(0);
    sentinel = openStream(harness, { text: "sentinel" });
    expect((await stream.ended).code).toBe(status.OK);
    expect(stream.seen().map((s) => Object.keys(s)[0])).toEqual(["delta", "finish"]);
  });
});

describe("the two upstream silences, each its own limit and message", () => {
  it("ends the stream with no first token as such, and the one stalled after its first token as idle, each at its own limit", async () => {
    harness = await startHarness({
      env: { HEARTBEAT_INTERVAL_MS: "0", UPSTREAM_IDLE_TIMEOUT_MS: "300", UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "1500" },
      upstream: {
        reply: (r) =>
          r.body.messages?.at(-1)?.content === "think"
            ? { deltas: [wire.role()], tokens: ["never"], gate: (i) => (i === 1 ? never : undefined) }
            : { tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) },
      },
    });
    const thinking = openStream(harness, { text: "think" });
    let thinkingEnded = false;
    void thinking.ended.then(() => (thinkingEnded = true));
    await harness.upstream.received(0);
    const stalling = openStream(harness, { text: "stall" });
    const stalled = await stalling.ended;
    expect([stalled.code, stalled.details]).toEqual([status.UNAVAILABLE, "upstream stalled: no data for 0.3s"]);
    // The idle timeout has passed for the one before its first token too, and it is still open.
    expect(thinkingEnded).toBe(false);
    const waited = await thinking.ended;
    expect([waited.code, waited.details, thinking.responses]).toEqual([
      status.UNAVAILABLE,
      "upstream stalled before the first token: no token for 1.5s",
      [],
    ]);
  });
});
