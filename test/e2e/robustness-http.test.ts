// The same failures as robustness-grpc.test.ts, seen by an HTTP client through the real Envoy and the
// built service process: HTTP statuses before the first event, in-band errors after it.
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { allEvents, errorBody, post, type HttpResponse, type SseEvent } from "../support/http.js";
import { hold, never } from "../support/gates.js";

/**
 * A fake upstream whose reply each test sets, behind a service and Envoy started with `env`; with
 * `fallback`, a second fake as the fallback upstream, with a reply of its own.
 */
function useStack(env: Record<string, string>, options: { fallback?: boolean } = {}) {
  const ctx = {} as {
    upstream: FakeUpstream;
    fallback: FakeUpstream | undefined;
    stack: Stack;
    reply: (r: RecordedRequest) => Reply;
    fallbackReply: (r: RecordedRequest) => Reply;
  };
  beforeAll(async () => {
    ctx.reply = () => ({ tokens: ["ok"] });
    ctx.fallbackReply = () => ({ tokens: ["from", " fallback"] });
    ctx.upstream = await startFakeUpstream({ reply: (r) => ctx.reply(r) });
    ctx.fallback = options.fallback ? await startFakeUpstream({ reply: (r) => ctx.fallbackReply(r) }) : undefined;
    ctx.stack = await startStack({
      OPENAI_BASE_URL: ctx.upstream.baseURL,
      OPENAI_API_KEY: "sk-e2e-secret",
      UPSTREAM_MAX_RETRIES: "0",
      ...(ctx.fallback && { FALLBACK_BASE_URL: ctx.fallback.baseURL }),
      ...env,
    });
  });
  afterAll(async () => {
    await ctx.stack?.stop();
    await ctx.upstream?.close();
    await ctx.fallback?.close();
  });
  return ctx;
}

const chat = (ctx: { stack: Stack }, text = "hi") => post(ctx.stack.envoy.httpPort, "/chat", JSON.stringify({ text }));

/** Reads events until `count` deltas have arrived; returns them and the rest of the stream. */
async function readDeltas(response: HttpResponse, count: number) {
  const iterator = response.events[Symbol.asyncIterator]();
  const seen: SseEvent[] = [];
  while (seen.filter((e) => e.delta).length < count) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
  }
  return {
    seen,
    async rest() {
      for (let n = await iterator.next(); !n.done; n = await iterator.next()) seen.push(n.value);
      return seen;
    },
  };
}

describe("through Envoy, default limits", () => {
  const ctx = useStack({ MAX_CONCURRENT_STREAMS: "3" });

  it("closes the upstream request when the HTTP client leaves before the first token", async () => {
    ctx.reply = () => ({ tokens: ["a"], gate: () => never });
    const index = ctx.upstream.requests.length;
    // No response headers come before the first event, so act on the request itself.
    const req = request({
      host: "127.0.0.1",
      port: ctx.stack.envoy.httpPort,
      path: "/chat",
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    req.on("error", () => undefined);
    req.end(JSON.stringify({ text: "hi" }));
    await ctx.upstream.received(index);
    req.destroy();
    expect(await ctx.upstream.ended(index)).toBe("closed");
  });

  it("closes the upstream request when the HTTP client leaves mid-stream", async () => {
    ctx.reply = () => ({ tokens: ["a", "b", "c"], gate: (i) => (i === 2 ? never : undefined) });
    const index = ctx.upstream.requests.length;
    const response = await chat(ctx);
    await readDeltas(response, 2);
    response.destroy();
    expect(await ctx.upstream.ended(index)).toBe("closed");
  });

  it.each([
    ["400", { status: 400, errorMessage: "bad" }, 400],
    ["422", { status: 422 }, 400],
    ["401", { status: 401, errorMessage: "Incorrect API key provided: sk-e2e-secret" }, 500],
    ["403", { status: 403 }, 500],
    ["404", { status: 404 }, 404],
    ["408", { status: 408 }, 504],
    ["429", { status: 429, headers: { "retry-after": "7" } }, 429],
    ["500", { status: 500 }, 503],
    ["503", { status: 503 }, 503],
  ] as [string, Reply, number][])(
    "maps upstream %s before the first token to HTTP $2",
    async (_name, reply, httpStatus) => {
      ctx.reply = () => reply;
      const response = await chat(ctx);
      expect(response.status).toBe(httpStatus);
      const body = await response.body();
      expect(JSON.parse(body)).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
      expect(body).not.toContain("sk-e2e-secret");
      if (httpStatus === 429) expect(response.headers["retry-after"]).toBe("7");
    },
  );

  it.each([
    ["a 429", { error: { message: "Too many requests", type: "RateLimitError", code: 429 } }, true, 429],
    ["a 400", { error: { message: "bad", type: "BadRequestError", code: 400 } }, true, 400],
    [
      "a 401 as @dwmkerr/mock-llm streams it",
      {
        error: {
          message: "Incorrect API key provided: sk-e2e-secret",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      },
      false,
      500,
    ],
  ] as const)(
    "maps an error in the stream before the first token, %s, to its HTTP status",
    async (_name, errorEvent, roleChunk, httpStatus) => {
      ctx.reply = () => ({ tokens: [], end: "error-event", errorEvent, roleChunk });
      const response = await chat(ctx);
      expect(response.status).toBe(httpStatus);
      const body = await response.body();
      expect(JSON.parse(body)).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
      expect(body).not.toContain("sk-e2e-secret");
    },
  );

  it("answers valid JSON that is no chunk (no choices) before the first token with 500, as malformed data", async () => {
    ctx.reply = () => ({ tokens: [], end: "no-choices" });
    const response = await chat(ctx);
    expect(response.status).toBe(500);
    expect(JSON.parse(await response.body())).toEqual(
      errorBody(13, "upstream sent malformed data", "UPSTREAM_MALFORMED", { upstream: "default" }),
    );
  });

  it.each([
    ["a cut connection", "cut", 14, "UNAVAILABLE", "upstream connection lost mid-stream"],
    ["valid JSON that is no chunk", "no-choices", 13, "INTERNAL", "upstream sent malformed data"],
    ["an SSE error event", "error-event", 14, "UNAVAILABLE", "upstream failed mid-stream: the model crashed"],
    ["malformed JSON", "malformed", 13, "INTERNAL", "upstream sent malformed data"],
    ["a close without a finish", "quiet", 14, "UNAVAILABLE", "upstream ended the stream without finishing"],
  ] as const)(
    "ends a stream with %s mid-way with an error event, never a clean end",
    async (_name, end, code, name, message) => {
      const delivered = hold();
      ctx.reply = () => ({ tokens: ["a"], end, gate: (i) => (i === 1 ? delivered.promise : undefined) });
      const response = await chat(ctx);
      expect(response.status).toBe(200);
      const stream = await readDeltas(response, 1);
      delivered.release();
      const events = await stream.rest();
      expect(events).toEqual([{ delta: { text: "a" } }, { error: { code, status: name, message } }]);
    },
  );

  it("answers an oversized body with 413 and malformed JSON with 400", async () => {
    const big = await post(ctx.stack.envoy.httpPort, "/chat", JSON.stringify({ text: "x".repeat(2 * 1024 * 1024) }));
    expect(big.status).toBe(413);
    const malformed = await post(ctx.stack.envoy.httpPort, "/chat", '{"text": "unterminated');
    expect(malformed.status).toBe(400);
  });

  it("answers a stream over the concurrency limit with 429, and the open ones carry on", async () => {
    const gate = hold();
    ctx.reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate.promise : undefined) });
    const open = await Promise.all([chat(ctx), chat(ctx), chat(ctx)]);
    const streams = await Promise.all(open.map((r) => readDeltas(r, 1)));
    const refused = await chat(ctx);
    expect(refused.status).toBe(429);
    gate.release();
    for (const s of streams) {
      const events = await s.rest();
      expect(
        events
          .filter((e) => e.delta)
          .map((e) => e.delta?.text)
          .join(""),
      ).toBe("ab");
      expect(events.at(-1)?.finish).toBeDefined();
    }
  });
});

describe("through Envoy, stalls and long streams", () => {
  const ctx = useStack({
    UPSTREAM_IDLE_TIMEOUT_MS: "300",
    UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "300",
    MAX_STREAM_DURATION_MS: "2000",
  });

  it("reports a stalled upstream in-band after the first token", async () => {
    ctx.reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) });
    const events = await allEvents(await chat(ctx));
    expect(events).toEqual([
      { delta: { text: "a" } },
      { error: { code: 14, status: "UNAVAILABLE", message: "upstream stalled: no data for 0.3s" } },
    ]);
  });

  it("answers a stall before the first token with 503, naming it", async () => {
    ctx.reply = () => ({ tokens: ["a"], gate: () => never });
    const response = await chat(ctx);
    expect(response.status).toBe(503);
    expect(JSON.parse(await response.body())).toMatchObject({
      code: 14,
      message: "upstream stalled before the first token: no token for 0.3s",
    });
  });

  it("ends a stream at the maximum duration with an error event", async () => {
    ctx.reply = () => ({ tokens: Array.from({ length: 1000 }, () => "x"), tokenDelayMs: 50 });
    const events = await allEvents(await chat(ctx));
    expect(events.at(-1)).toEqual({
      error: {
        code: 4,
        status: "DEADLINE_EXCEEDED",
        message: "stream exceeded the gateway's maximum duration of 2.0s",
      },
    });
  });
});

describe("through Envoy, the upstream's timers in order: timeout and retries, fallback, idle watchdog", () => {
  // The first-token timeout as long as the idle timeout: the sentinel's stall before its first
  // token takes at least the idle timeout.
  const ctx = useStack(
    {
      UPSTREAM_TIMEOUT_MS: "300",
      UPSTREAM_MAX_RETRIES: "1",
      UPSTREAM_IDLE_TIMEOUT_MS: "300",
      UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "300",
    },
    { fallback: true },
  );
  const SENTINEL = "sentinel: stall before the first token";
  const stallsIfSentinel =
    (reply: Reply) =>
    (r: RecordedRequest): Reply =>
      r.body.messages?.at(-1)?.content === SENTINEL ? { tokens: ["never"], gate: () => never } : reply;
  const textOf = (events: SseEvent[]) => events.map((e) => e.delta?.text ?? "").join("");

  it("answers from the fallback after the SDK timed out and retried a hung upstream", async () => {
    ctx.reply = () => ({ holdHeaders: never });
    const index = ctx.upstream.requests.length;
    const response = await chat(ctx);
    expect(response.status).toBe(200);
    const events = await allEvents(response);
    expect(textOf(events)).toBe("from fallback");
    expect(events.at(-1)?.finish).toBeDefined();
    expect(ctx.upstream.requests.length - index).toBe(2);
  });

  it("waits out a 429's retry-after longer than the idle timeout, and retries", async () => {
    const index = ctx.upstream.requests.length;
    ctx.reply = (r) => (r.index === index ? { status: 429, headers: { "retry-after": "1" } } : { tokens: ["ok"] });
    const response = await chat(ctx);
    expect(response.status).toBe(200);
    expect(textOf(await allEvents(response))).toBe("ok");
  });

  it("keeps a stream alive through reasoning chunks that last longer than the idle timeout", async () => {
    ctx.reply = () => ({ tokens: ["answer"], fillers: { kind: "reasoning", everyMs: 25, forMs: 600 } });
    const events = await allEvents(await chat(ctx));
    expect(textOf(events)).toBe("answer");
    expect(events.at(-1)?.finish).toBeDefined();
  });

  it("lets an HTTP client read more slowly than the idle timeout: the stream completes", async () => {
    // The service waits on this client only as long as Envoy passes its backpressure on; while Envoy
    // buffers the whole reply instead (HTTP/2 windows of 256 MiB), this shows only that the stream
    // completes, and the in-process test (test/unit/upstream-timers.test.ts) is the one that fails without the pause.
    const tokens = Array.from({ length: 50_000 }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(194)}`);
    ctx.reply = stallsIfSentinel({ tokens });
    ctx.fallbackReply = stallsIfSentinel({ tokens: ["never used"] });
    const index = ctx.upstream.requests.length;
    const response = await chat(ctx, "a lot");
    response.pause();
    await ctx.upstream.blocked(index);
    // Once the sentinel has stalled (on both upstreams), the idle timeout has surely passed.
    expect((await chat(ctx, SENTINEL)).status).toBe(503);
    response.resume();
    const events = await allEvents(response);
    expect(textOf(events)).toBe(tokens.join(""));
    expect(events.at(-1)?.finish).toBeDefined();
  });
});

describe("graceful drain of the service process", () => {
  const ctx = useStack({ SHUTDOWN_GRACE_MS: "30000" });

  it("on SIGTERM refuses new streams, finishes the open ones, and exits 0", async () => {
    const gate = hold();
    ctx.reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate.promise : undefined) });
    const open = await Promise.all([chat(ctx), chat(ctx), chat(ctx)]);
    const streams = await Promise.all(open.map((r) => readDeltas(r, 1)));

    const exited = ctx.stack.service.stop("SIGTERM");
    // Wait for the drain to begin, as its log line says.
    await ctx.stack.service.logLine((l) => l.msg === "draining");
    const refused = await chat(ctx, "late");
    expect(refused.status).toBe(503);

    gate.release();
    for (const s of streams) {
      const events = await s.rest();
      expect(events.map((e) => e.delta?.text ?? Object.keys(e)[0])).toEqual(["a", "b", "finish"]);
    }
    expect(await exited).toBe(0);
  });
});
