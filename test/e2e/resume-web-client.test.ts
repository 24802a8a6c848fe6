// The browser client (`chat-gateway/web`) resuming by itself, under Node, through the real Envoy and
// service process, with a TCP proxy between the client and Envoy that drops the connection
// mid-answer: the caller's loop sees one stream whose text is the upstream's byte for byte (a gap or
// a repeat shows), leaving the loop or aborting cancels the generation (the upstream's request is
// closed), and an unreachable gateway ends in UNAVAILABLE after the bounded attempts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatError,
  GrpcCode,
  resumeChat,
  streamChat,
  type ChatResponse,
  type ClientOptions,
} from "../../src/web/client.js";
import type { FakeUpstream } from "../support/fake-model.js";
import type { Stack } from "../support/processes.js";
import { startGatedStack, unicodeTokens, type GatedStack } from "../support/gated-stack.js";
import { hold } from "../support/gates.js";
import { startDropProxy, type DropProxy } from "../support/drop-proxy.js";

const TOKENS = unicodeTokens(40);
const CUT_AFTER = 10;

let upstream: FakeUpstream;
let stack: Stack;
let gates: GatedStack["gates"];

let gated: GatedStack | undefined;
beforeAll(async () => {
  gated = await startGatedStack({ tokens: TOKENS, cutAfter: CUT_AFTER, apiKey: "sk-e2e" });
  ({ upstream, stack, gates } = gated);
});
afterAll(() => gated?.stop());

const textOf = (events: ChatResponse[]) =>
  events.map((e) => (e.event?.$case === "delta" ? e.event.value.text : "")).join("");
const upstreamIndex = (key: string) =>
  upstream.requests.findIndex((r) => JSON.stringify(r.body.messages).includes(key));

/** Quick retries: the tests wait for the drop, not for the backoff. */
const QUICK = { initialDelayMs: 20, maxDelayMs: 100 };

async function withProxy<T>(run: (proxy: DropProxy, options: ClientOptions) => Promise<T>): Promise<T> {
  const proxy = await startDropProxy(stack.envoy.httpPort);
  try {
    return await run(proxy, { baseUrl: `http://127.0.0.1:${proxy.port}` });
  } finally {
    await proxy.close();
  }
}

describe("streamChat with resume, through Envoy", () => {
  it("re-attaches after a proxy dropped the connection mid-answer: one stream, the upstream's text byte for byte", async () => {
    await withProxy(async (proxy, base) => {
      const gate = hold();
      gates.set("dropped-once", gate);
      const reconnecting: number[] = [];
      let reconnected = 0;
      const events: ChatResponse[] = [];
      const options: ClientOptions = {
        ...base,
        resume: { ...QUICK, onReconnecting: (n) => reconnecting.push(n), onReconnected: () => reconnected++ },
      };
      for await (const event of streamChat({ text: "dropped-once" }, options)) {
        events.push(event);
        if (events.length === CUT_AFTER) {
          // The first ten events are in; the upstream holds the eleventh until the connection is gone.
          proxy.drop();
          gate.release();
        }
      }
      expect(Buffer.from(textOf(events))).toEqual(Buffer.from(TOKENS.join("")));
      expect(events.at(-1)?.event?.$case).toBe("finish");
      // Positions strictly rising (a merged delta may cover several), the stream's id once, on the first.
      const sequences = events.map((e) => e.sequence!);
      expect(sequences.every((s, i) => i === 0 || s > sequences[i - 1]!)).toBe(true);
      expect(events.filter((e) => e.streamId).map((_, i) => i)).toEqual([0]);
      expect(events[0]!.streamId).toMatch(/^[0-9a-f-]{36}$/);
      // At least one re-attach (under load a first attempt may fail and be retried), reported once back.
      expect(proxy.connections).toBeGreaterThanOrEqual(2);
      expect(reconnecting[0]).toBe(1);
      expect(reconnected).toBe(1);
      // One generation: the upstream was asked once.
      expect(upstream.requests.filter((r) => JSON.stringify(r.body.messages).includes("dropped-once"))).toHaveLength(1);
    });
  });

  it("sends the request resumable only when asked: without `resume` a drop is UNAVAILABLE, as before", async () => {
    await withProxy(async (proxy, options) => {
      const gate = hold();
      gates.set("not-resumable", gate);
      const events: ChatResponse[] = [];
      const error = await (async () => {
        for await (const event of streamChat({ text: "not-resumable" }, options)) {
          events.push(event);
          if (events.length === CUT_AFTER) proxy.drop();
        }
      })().catch((e: unknown) => e);
      gate.release();
      expect(events[0]!.streamId).toBeUndefined();
      expect(error).toBeInstanceOf(ChatError);
      expect((error as ChatError).code).toBe(GrpcCode.UNAVAILABLE);
      expect((error as ChatError).message).toBe("the connection to the gateway was lost mid-stream");
    });
  });

  it("leaving the loop early cancels the stream (DELETE): the upstream's request is closed at once", async () => {
    gates.set("left-early", hold());
    const options = { baseUrl: `http://127.0.0.1:${stack.envoy.httpPort}`, resume: true };
    let seen = 0;
    for await (const _ of streamChat({ text: "left-early" }, options)) if (++seen === 3) break;
    // Without the DELETE the generation would go on for RESUME_GRACE_MS with nobody reading it.
    expect(await upstream.ended(upstreamIndex("left-early"))).toBe("closed");
  });

  it("aborting the signal while the gateway is out of reach stops it waiting, and the upstream is cancelled once it is back", async () => {
    await withProxy(async (proxy, base) => {
      gates.set("aborted-offline", hold());
      const controller = new AbortController();
      const options: ClientOptions = {
        ...base,
        signal: controller.signal,
        resume: { ...QUICK, onReconnecting: () => controller.abort(new Error("stop")) },
      };
      const error = await (async () => {
        let seen = 0;
        for await (const _ of streamChat({ text: "aborted-offline" }, options)) {
          if (++seen === CUT_AFTER) proxy.drop();
        }
      })().catch((e: unknown) => e);
      expect(error).toEqual(new Error("stop"));
      // The DELETE went through the proxy (it accepts again), so the generation stopped.
      expect(await upstream.ended(upstreamIndex("aborted-offline"))).toBe("closed");
    });
  });

  it("gives up after its attempts when the gateway stays out of reach: UNAVAILABLE, saying so", async () => {
    await withProxy(async (proxy, base) => {
      const gate = hold();
      gates.set("unreachable", gate);
      const options: ClientOptions = { ...base, resume: { ...QUICK, maxAttempts: 3 } };
      const events: ChatResponse[] = [];
      const started = Date.now();
      const error = await (async () => {
        for await (const event of streamChat({ text: "unreachable" }, options)) {
          events.push(event);
          if (events.length === CUT_AFTER) {
            proxy.refuse();
            proxy.drop();
          }
        }
      })().catch((e: unknown) => e);
      gate.release();
      expect(error).toBeInstanceOf(ChatError);
      expect((error as ChatError).code).toBe(GrpcCode.UNAVAILABLE);
      expect((error as ChatError).message).toBe(
        "the connection to the gateway was lost mid-stream; gave up after 3 attempts to resume",
      );
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(proxy.connections).toBe(1);
    });
  });
});

describe("resumeChat, through Envoy", () => {
  it("re-attaches by hand from a position: the events after it, then the finish", async () => {
    const gate = hold();
    gates.set("by-hand", gate);
    const options = { baseUrl: `http://127.0.0.1:${stack.envoy.httpPort}` };
    const first: ChatResponse[] = [];
    // resume: false keeps the stream resumable (its id and positions) without resuming by itself.
    for await (const event of streamChat({ text: "by-hand", resumable: true }, { ...options, resume: false })) {
      first.push(event);
      if (first.length === CUT_AFTER) break;
    }
    gate.release();
    const rest: ChatResponse[] = [];
    for await (const event of resumeChat(first[0]!.streamId!, first.at(-1)!.sequence!, options)) rest.push(event);
    expect(rest[0]!.sequence).toBe(CUT_AFTER + 1);
    expect(Buffer.from(textOf(first) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
  });

  it("an unknown stream is NOT_FOUND (HTTP 404), with no retry", async () => {
    const options = { baseUrl: `http://127.0.0.1:${stack.envoy.httpPort}` };
    const error = await (async () => {
      for await (const _ of resumeChat("no-such-stream", 0, options)) break;
    })().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: GrpcCode.NOT_FOUND, httpStatus: 404, message: "stream not found" });
  });
});
