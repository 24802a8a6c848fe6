// The open streams alone: admission (the concurrency limit, no new stream while draining), each
// stream's stop signal (the caller's cancel, the maximum duration), and the drain's grace period.
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { OpenStreams } from "../../src/chat/streams.js";
import type { Call } from "../../src/chat/outbox.js";
import type { StreamStopped } from "../../src/upstream/errors.js";

function call(deadline = Infinity): Call {
  return Object.assign(new EventEmitter(), { getDeadline: () => deadline }) as unknown as Call;
}

const reasonOf = (signal: AbortSignal) => (signal.reason as StreamStopped).why;

describe("OpenStreams", () => {
  it("refuses past the concurrency limit, and admits again once a stream closed", () => {
    const streams = new OpenStreams({ maxConcurrentStreams: 1, maxStreamDurationMs: 0 });
    const first = streams.start(call(), performance.now());
    expect(streams.refusal()?.why).toBe("concurrency");
    first.close();
    expect(streams.refusal()).toBeUndefined();
  });

  it("stops a stream whose caller cancelled, or whose deadline passed", () => {
    const streams = new OpenStreams({ maxConcurrentStreams: 10, maxStreamDurationMs: 0 });
    const cancelled = call();
    const a = streams.start(cancelled, performance.now());
    cancelled.emit("cancelled");
    expect(reasonOf(a.signal)).toBe("cancelled");
    const late = call(Date.now() - 1);
    const b = streams.start(late, performance.now());
    late.emit("cancelled");
    expect(reasonOf(b.signal)).toBe("deadline");
  });

  it("stops a stream at the maximum duration", async () => {
    const streams = new OpenStreams({ maxConcurrentStreams: 10, maxStreamDurationMs: 20 });
    const s = streams.start(call(), performance.now());
    await new Promise((resolve) => s.signal.addEventListener("abort", resolve));
    expect(reasonOf(s.signal)).toBe("max-duration");
  });

  it("drains: refuses new streams, lets open ones finish within the grace, stops the rest after it", async () => {
    const streams = new OpenStreams({ maxConcurrentStreams: 10, maxStreamDurationMs: 0 });
    const finishing = streams.start(call(), performance.now());
    const lingering = streams.start(call(), performance.now());
    const drained = streams.drain(50);
    expect(streams.refusal()?.why).toBe("draining");
    finishing.close();
    expect(finishing.signal.aborted).toBe(false);
    await new Promise((resolve) => lingering.signal.addEventListener("abort", resolve));
    expect(reasonOf(lingering.signal)).toBe("shutdown");
    lingering.close();
    await drained;
    expect(streams.active).toBe(0);
  });
});
