// The terminal client's gRPC transport (src/cli/grpc.ts) against the real gateway in this process,
// through a TCP proxy that drops the connection mid-answer: it re-attaches with ResumeChat from the
// last event it yielded (the text joined is the upstream's, each event once), leaving early cancels
// the generation (CancelChat: the upstream request is closed), an in-band error is final (never
// resumed), and an unreachable gateway ends in UNAVAILABLE after the attempts.
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import type { ChatRequest } from "../../src/contract/web.js";
import { CallFailed, type ChatEvent } from "../../src/cli/call.js";
import { grpcChat } from "../../src/cli/grpc.js";
import { startHarness, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { startDropProxy, type DropProxy } from "../support/drop-proxy.js";
import type { Reply } from "../support/fake-model.js";

const TOKENS = Array.from({ length: 20 }, (_, i) => `${i}:é🌍 `);
const CUT_AFTER = 6;
/** Quick retries: the tests wait for the drop, not for the backoff. */
const QUICK = { initialDelayMs: 10, maxDelayMs: 50 };

let harness: Harness | undefined;
let proxy: DropProxy | undefined;
afterEach(async () => {
  await proxy?.close();
  await harness?.close();
  harness = proxy = undefined;
});

async function start(reply: () => Reply): Promise<{ harness: Harness; proxy: DropProxy }> {
  harness = await startHarness({ upstream: { reply } });
  proxy = await startDropProxy(harness.gateway.port);
  return { harness, proxy };
}

const request = { text: "count" } as ChatRequest;
const textOf = (events: ChatEvent[]) => events.map((e) => (e.$case === "delta" ? e.value.text : "")).join("");

async function run(
  events: AsyncIterable<ChatEvent>,
  each: (seen: ChatEvent[]) => void = () => undefined,
): Promise<{ events: ChatEvent[]; error: unknown }> {
  const seen: ChatEvent[] = [];
  try {
    for await (const event of events) {
      seen.push(event);
      each(seen);
    }
    return { events: seen, error: undefined };
  } catch (error) {
    return { events: seen, error };
  }
}

describe("the CLI's gRPC transport, resuming", () => {
  it("re-attaches with ResumeChat after a dropped connection: the upstream's text, each event once", async () => {
    const gate = hold();
    const { harness, proxy } = await start(() => ({
      tokens: TOKENS,
      gate: (i) => (i === CUT_AFTER ? gate.promise : undefined),
    }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined, QUICK);
    const { events, error } = await run(chat(request, new AbortController().signal), (seen) => {
      if (seen.length === CUT_AFTER) {
        proxy.drop();
        gate.release();
      }
    });
    expect(error).toBeUndefined();
    expect(Buffer.from(textOf(events))).toEqual(Buffer.from(TOKENS.join("")));
    expect(events.at(-1)?.$case).toBe("finish");
    expect(proxy.connections).toBe(2);
    expect(harness.upstream.requests).toHaveLength(1);
  });

  it("leaving the loop early cancels the stream: the upstream request is closed", async () => {
    const { harness, proxy } = await start(() => ({
      tokens: TOKENS,
      gate: (i) => (i === 3 ? hold().promise : undefined),
    }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined, QUICK);
    for await (const _ of chat(request, new AbortController().signal)) break;
    // Without CancelChat the generation would run on for RESUME_GRACE_MS.
    expect(await harness.upstream.ended(0)).toBe("closed");
  });

  it("aborted before the first event: the call is kept until that event names the stream, which is then cancelled", async () => {
    const gate = hold();
    const { harness, proxy } = await start(() => ({
      tokens: TOKENS,
      tokenDelayMs: 20,
      gate: (i) => (i === 0 ? gate.promise : undefined),
    }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined, QUICK);
    const controller = new AbortController();
    const done = run(chat(request, controller.signal));
    await harness.upstream.received(0);
    controller.abort();
    gate.release();
    const { events } = await done;
    expect(events).toEqual([]);
    // Without the cancel the model writes all its tokens (`finished`) for nobody.
    expect(await harness.upstream.ended(0)).toBe("closed");
  });

  it("an in-band error is the stream's end: thrown, never resumed", async () => {
    const { harness, proxy } = await start(() => ({ tokens: ["a", "b"], tokenDelayMs: 50, end: "cut" }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined, QUICK);
    const { events, error } = await run(chat(request, new AbortController().signal));
    expect(events.at(-1)?.$case).toBe("error");
    expect(error).toBeInstanceOf(CallFailed);
    expect(proxy.connections).toBe(1);
    expect(harness.upstream.requests).toHaveLength(1);
  });

  it("gives up after its attempts when the gateway stays out of reach: UNAVAILABLE, saying so", async () => {
    const gate = hold();
    const { proxy } = await start(() => ({
      tokens: TOKENS,
      gate: (i) => (i === CUT_AFTER ? gate.promise : undefined),
    }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined, { ...QUICK, maxAttempts: 2 });
    const { error } = await run(chat(request, new AbortController().signal), (seen) => {
      if (seen.length === CUT_AFTER) {
        proxy.refuse();
        proxy.drop();
      }
    });
    gate.release();
    expect(error).toBeInstanceOf(CallFailed);
    expect((error as CallFailed).code).toBe(status.UNAVAILABLE);
    expect((error as CallFailed).message).toMatch(/; gave up after 2 attempts to resume$/);
  });

  it("without resume, a dropped connection is UNAVAILABLE at once, and the request was plain", async () => {
    const gate = hold();
    const { harness, proxy } = await start(() => ({
      tokens: TOKENS,
      gate: (i) => (i === CUT_AFTER ? gate.promise : undefined),
    }));
    const chat = grpcChat(`127.0.0.1:${proxy.port}`, undefined);
    const { error } = await run(chat(request, new AbortController().signal), (seen) => {
      if (seen.length === CUT_AFTER) proxy.drop();
    });
    expect((error as CallFailed).code).toBe(status.UNAVAILABLE);
    expect(proxy.connections).toBe(1);
    // A plain stream's upstream is closed when its caller goes.
    expect(await harness.upstream.ended(0)).toBe("closed");
    gate.release();
  });
});
