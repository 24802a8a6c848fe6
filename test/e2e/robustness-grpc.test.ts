// What happens when things go wrong, over gRPC in-process: cancellation, deadlines, stalls,
// the error table, retries and fallback, limits, drain.
import { randomBytes } from "node:crypto";
import { constants } from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { credentials, makeGenericClientConstructor, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { service as healthService } from "grpc-health-check";
import { ChatRequest, ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { ErrorInfo } from "../../src/gen/google/rpc/error_details.js";
import { Status } from "../../src/gen/google/rpc/status.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";
import { collect, startHarness, textOf, type Harness } from "../support/grpc.js";
import { hold, never } from "../support/gates.js";
import { grpcurl } from "../support/processes.js";
import { rawClient } from "../support/raw-h2.js";
import { MAX_FRAME_SIZE } from "../../src/server/server.js";

let harness: Harness | undefined;
const extra: FakeUpstream[] = [];
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  for (const u of extra.splice(0)) await u.close();
});

const deltasOf = (responses: ChatResponse[]) => responses.filter((r) => r.event?.$case === "delta");
const lastEvent = (responses: ChatResponse[]) => responses.at(-1)?.event;

/** Starts a stream and resolves once `count` deltas have arrived, with the call to act on. */
function startStream(h: Harness, count: number, request: Partial<ChatRequest> = { text: "hi" }) {
  const call = h.client.chat(ChatRequest.fromPartial(request));
  const responses: ChatResponse[] = [];
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    call.on("error", (e: ServiceError) => resolve(e));
    call.on("end", () => resolve(undefined));
  });
  const reached = new Promise<void>((resolve) => {
    if (count === 0) resolve();
    call.on("data", (r: ChatResponse) => {
      responses.push(r);
      if (deltasOf(responses).length === count) resolve();
    });
  });
  return { call, responses, ended, reached };
}

describe("cancellation", () => {
  it("closes the upstream request when the caller cancels before the first token", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["a", "b"], gate: () => never }) } });
    const { call, ended } = startStream(harness, 0);
    await harness.upstream.received(0);
    call.cancel();
    expect((await ended)?.code).toBe(status.CANCELLED);
    expect(await harness.upstream.ended(0)).toBe("closed");
  });

  it("closes the upstream request when the caller cancels mid-stream", async () => {
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b", "c"], gate: (i) => (i === 2 ? never : undefined) }) },
    });
    const { call, reached, ended } = startStream(harness, 2);
    await reached;
    call.cancel();
    await ended;
    expect(await harness.upstream.ended(0)).toBe("closed");
  });
});

describe("deadlines and stalls", () => {
  it("honours the caller's deadline: DEADLINE_EXCEEDED, upstream closed", async () => {
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const result = await collect(harness.client, { text: "hi" }, new Metadata(), new Date(Date.now() + 500));
    expect(result.code).toBe(status.DEADLINE_EXCEEDED);
    expect(result.text).toBe("a");
    expect(await harness.upstream.ended(0)).toBe("closed");
  });

  it("ends a stream whose upstream stalls mid-stream with an in-band error and UNAVAILABLE", async () => {
    harness = await startHarness({
      env: { UPSTREAM_IDLE_TIMEOUT_MS: "200" },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.UNAVAILABLE);
    expect(result.details).toMatch(/^upstream stalled: no data for 0\.\ds$/);
    expect(result.text).toBe("a");
    expect(lastEvent(result.responses)).toEqual({
      $case: "error",
      value: { code: status.UNAVAILABLE, status: "UNAVAILABLE", message: result.details },
    });
    expect(await harness.upstream.ended(0)).toBe("closed");
  });

  it("answers a stall before the first token with a status and no messages", async () => {
    harness = await startHarness({
      env: { UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "200" },
      upstream: { reply: () => ({ tokens: ["a"], gate: () => never }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.details]).toEqual([
      status.UNAVAILABLE,
      "upstream stalled before the first token: no token for 0.2s",
    ]);
    expect(result.responses).toEqual([]);
  });

  it("ends a stream that outlives the maximum duration", async () => {
    harness = await startHarness({
      env: { MAX_STREAM_DURATION_MS: "300" },
      upstream: { reply: () => ({ tokens: Array.from({ length: 1000 }, () => "x"), tokenDelayMs: 20 }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.DEADLINE_EXCEEDED);
    expect(result.details).toBe("stream exceeded the gateway's maximum duration of 0.3s");
    expect(lastEvent(result.responses)?.$case).toBe("error");
    expect(await harness.upstream.ended(0)).toBe("closed");
  });
});

type Row = [name: string, reply: Reply, code: status, details: RegExp | string];
const beforeFirstToken: Row[] = [
  [
    "400",
    { status: 400, errorMessage: "max_tokens is too large" },
    status.INVALID_ARGUMENT,
    "upstream rejected the request: max_tokens is too large",
  ],
  [
    "422",
    { status: 422, errorMessage: "bad field" },
    status.INVALID_ARGUMENT,
    "upstream rejected the request: bad field",
  ],
  [
    "401",
    { status: 401, errorMessage: "Incorrect API key provided: sk-test-harness-key" },
    status.INTERNAL,
    "upstream refused the gateway's credentials",
  ],
  [
    "403",
    { status: 403, errorMessage: "forbidden for sk-test-harness-key" },
    status.INTERNAL,
    "upstream refused the gateway's credentials",
  ],
  [
    "404",
    { status: 404, errorMessage: "The model `nope` does not exist" },
    status.NOT_FOUND,
    "upstream has no such model or route: The model `nope` does not exist",
  ],
  ["408", { status: 408 }, status.DEADLINE_EXCEEDED, "upstream timed out"],
  [
    "429",
    { status: 429, headers: { "retry-after": "7" } },
    status.RESOURCE_EXHAUSTED,
    "upstream rate limit reached; retry after 7s",
  ],
  ["500", { status: 500 }, status.UNAVAILABLE, "upstream error 500"],
  ["503", { status: 503 }, status.UNAVAILABLE, "upstream error 503"],
  [
    "a 400 quoting the key",
    { status: 400, errorMessage: "key sk-test-harness-key is not valid here" },
    status.INVALID_ARGUMENT,
    "upstream rejected the request: key [redacted] is not valid here",
  ],
];
const afterFirstToken: Row[] = [
  ["a cut connection", { tokens: ["a"], end: "cut" }, status.UNAVAILABLE, "upstream connection lost mid-stream"],
  [
    "an SSE error event",
    { tokens: ["a"], end: "error-event" },
    status.UNAVAILABLE,
    "upstream failed mid-stream: the model crashed",
  ],
  [
    "an SSE error event naming a 429",
    { tokens: ["a"], end: "error-event", errorEvent: { error: { message: "slow down", code: 429 } } },
    status.UNAVAILABLE,
    "upstream failed mid-stream: slow down",
  ],
  ["malformed JSON", { tokens: ["a"], end: "malformed" }, status.INTERNAL, "upstream sent malformed data"],
  [
    "valid JSON that is no chunk (no choices)",
    { tokens: ["a"], end: "no-choices" },
    status.INTERNAL,
    "upstream sent malformed data",
  ],
  [
    "a clean close without a finish",
    { tokens: ["a"], end: "quiet" },
    status.UNAVAILABLE,
    "upstream ended the stream without finishing",
  ],
];

/** Errors streamed as `data: {...}` after a 200, in the dialects of real servers (see src/upstream/stream-error.ts). */
const inStream = (errorEvent: Record<string, unknown>, roleChunk = true): Reply => ({
  tokens: [],
  end: "error-event",
  errorEvent,
  roleChunk,
});
const inStreamBeforeFirstToken: Row[] = [
  [
    "a 401 as @dwmkerr/mock-llm streams it (OpenAI's body, alone)",
    inStream(
      {
        error: {
          message: "Incorrect API key provided: sk-test-harness-key",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      },
      false,
    ),
    status.INTERNAL,
    "upstream refused the gateway's credentials",
  ],
  [
    "a 429 by vLLM's numeric code",
    inStream({ error: { message: "Too many requests", type: "RateLimitError", param: null, code: 429 } }),
    status.RESOURCE_EXHAUSTED,
    "upstream rate limit reached",
  ],
  [
    "a 400 by vLLM's numeric code",
    inStream({ error: { message: "max_tokens is too large", type: "BadRequestError", param: null, code: 400 } }),
    status.INVALID_ARGUMENT,
    "upstream rejected the request: max_tokens is too large",
  ],
  [
    "a 403 by LiteLLM's string code",
    inStream({ error: { message: "blocked", type: "None", param: "None", code: "403" } }),
    status.INTERNAL,
    "upstream refused the gateway's credentials",
  ],
  [
    "a 503 by Google's status",
    inStream({ error: { code: 503, message: "The model is overloaded.", status: "UNAVAILABLE" } }),
    status.UNAVAILABLE,
    "upstream error 503",
  ],
  [
    "an overload by Anthropic's type",
    inStream({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }),
    status.UNAVAILABLE,
    "upstream error 503",
  ],
  [
    "one that names no status",
    inStream({ error: { message: "something odd" } }),
    status.UNAVAILABLE,
    "upstream failed mid-stream: something odd",
  ],
];

describe("the error table", () => {
  it.each(beforeFirstToken)(
    "maps upstream %s before the first token to a bare status",
    async (_name, reply, code, details) => {
      harness = await startHarness({ upstream: { reply: () => reply } });
      const result = await collect(harness.client, { text: "hi" });
      expect(result.code).toBe(code);
      expect(result.details).toEqual(details);
      expect(result.responses).toEqual([]);
      expect(result.details).not.toContain("sk-test-harness-key");
      expect(result.details).not.toContain("127.0.0.1");
    },
  );

  it.each(inStreamBeforeFirstToken)(
    "maps an error in the stream before the first token, %s, like the HTTP status it names",
    async (_name, reply, code, details) => {
      harness = await startHarness({ upstream: { reply: () => reply } });
      const result = await collect(harness.client, { text: "hi" });
      expect([result.code, result.details]).toEqual([code, details]);
      expect(result.responses).toEqual([]);
    },
  );

  it("maps valid JSON that is no chunk (no choices) to malformed data, before the first token too", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: [], end: "no-choices" }) } });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.details, result.responses]).toEqual([
      status.INTERNAL,
      "upstream sent malformed data",
      [],
    ]);
  });

  it("carries the upstream's retry-after in trailing metadata", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ status: 429, headers: { "retry-after": "7" } }) } });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.trailers?.get("retry-after")).toEqual(["7"]);
  });

  it.each(afterFirstToken)(
    "reports %s after the first token in-band and in the status",
    async (_name, reply, code, details) => {
      // The upstream ends only once the caller has the first token, so it surely went out first.
      const delivered = hold();
      harness = await startHarness({
        upstream: { reply: () => ({ ...reply, gate: (i) => (i === 1 ? delivered.promise : undefined) }) },
      });
      const stream = startStream(harness, 1);
      await stream.reached;
      delivered.release();
      const error = await stream.ended;
      expect(error?.code).toBe(code);
      expect(error?.details).toBe(details);
      expect(textOf(stream.responses)).toBe("a");
      expect(lastEvent(stream.responses)).toEqual({
        $case: "error",
        value: { code, status: status[code], message: details },
      });
    },
  );

  it("maps an unreachable upstream to UNAVAILABLE and a slow one to UNAVAILABLE", async () => {
    harness = await startHarness({
      env: { UPSTREAM_TIMEOUT_MS: "200" },
      upstream: { reply: () => ({ headersDelayMs: 5_000 }) },
    });
    const slow = await collect(harness.client, { text: "hi" });
    expect([slow.code, slow.details]).toEqual([status.UNAVAILABLE, "upstream did not answer in time"]);
    await harness.upstream.close();
    const gone = await collect(harness.client, { text: "hi" });
    expect([gone.code, gone.details]).toEqual([status.UNAVAILABLE, "upstream unreachable"]);
  });
});

describe("retries and fallback", () => {
  it("retries a 503 before the first token, then streams", async () => {
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "2" },
      upstream: {
        reply: (r) => (r.index === 0 ? { status: 503, headers: { "retry-after-ms": "10" } } : { tokens: ["ok"] }),
      },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe("ok");
    expect(harness.upstream.requests).toHaveLength(2);
  });

  it("gives up after the configured number of retries", async () => {
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "2" },
      upstream: { reply: () => ({ status: 503, headers: { "retry-after-ms": "10" } }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.UNAVAILABLE);
    expect(harness.upstream.requests).toHaveLength(3);
  });

  it("retries an error in the stream before the first token like the HTTP status it names", async () => {
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "1" },
      upstream: {
        reply: (r) => (r.index === 0 ? inStream({ error: { message: "busy", code: 429 } }) : { tokens: ["ok"] }),
      },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect([result.code, result.text]).toEqual([status.OK, "ok"]);
    expect(harness.upstream.requests).toHaveLength(2);
    expect(harness.logs.find((l) => l.msg === "stream ended")).toMatchObject({ code: "OK", retries: 1 });
  });

  it("counts the SDK's retries and its own against the same UPSTREAM_MAX_RETRIES", async () => {
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "2" },
      upstream: {
        reply: (r) =>
          r.index === 0
            ? { status: 503, headers: { "retry-after-ms": "10" } }
            : r.index <= 2
              ? inStream({ error: { message: "busy", code: 503 } })
              : { tokens: ["too late"] },
      },
    });
    const result = await collect(harness.client, { text: "hi" });
    // The SDK's retry of the HTTP 503, then one of the gateway's for the in-stream 503: two, and no more.
    expect([result.code, result.details]).toEqual([status.UNAVAILABLE, "upstream error 503"]);
    expect(harness.upstream.requests).toHaveLength(3);
  });

  it("sends an in-stream 503 before the first token to the fallback, and neither an in-stream 400 nor malformed data", async () => {
    const fallback = await startFakeUpstream({ reply: () => ({ tokens: ["from", " fallback"] }) });
    extra.push(fallback);
    let next = inStream({ error: { message: "overloaded", code: 503 } });
    harness = await startHarness({ env: { FALLBACK_BASE_URL: fallback.baseURL }, upstream: { reply: () => next } });
    const rescued = await collect(harness.client, { text: "hi" });
    expect([rescued.code, rescued.text]).toEqual([status.OK, "from fallback"]);
    next = inStream({ error: { message: "bad", code: 400 } });
    expect((await collect(harness.client, { text: "hi" })).code).toBe(status.INVALID_ARGUMENT);
    next = { tokens: [], end: "no-choices" };
    expect((await collect(harness.client, { text: "hi" })).code).toBe(status.INTERNAL);
    expect(fallback.requests).toHaveLength(1);
  });

  it("never retries once a token was sent", async () => {
    const delivered = hold();
    harness = await startHarness({
      env: { UPSTREAM_MAX_RETRIES: "2" },
      upstream: {
        reply: () => ({ tokens: ["a"], end: "cut", gate: (i) => (i === 1 ? delivered.promise : undefined) }),
      },
    });
    const stream = startStream(harness, 1);
    await stream.reached;
    delivered.release();
    expect((await stream.ended)?.code).toBe(status.UNAVAILABLE);
    expect(harness.upstream.requests).toHaveLength(1);
  });

  it("falls back to the second upstream and model when the first fails before the first token", async () => {
    const fallback = await startFakeUpstream({ reply: () => ({ tokens: ["from", " fallback"] }) });
    extra.push(fallback);
    harness = await startHarness({
      env: { FALLBACK_BASE_URL: fallback.baseURL, FALLBACK_MODEL: "backup-model" },
      upstream: { reply: () => ({ status: 503 }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe("from fallback");
    expect(fallback.requests[0]?.body.model).toBe("backup-model");
    expect(fallback.requests[0]?.body.messages).toEqual([{ role: "user", content: "hi" }]);
  });

  it.each([
    ["a cut connection", { tokens: [], end: "cut" }],
    ["a clean close without a finish", { tokens: [], end: "quiet" }],
    ["an in-stream error that names no status", inStream({ error: { message: "something odd" } })],
  ] as [string, Reply][])(
    "falls back when the first upstream's stream ends in %s before the first token",
    async (_name, reply) => {
      const fallback = await startFakeUpstream({ reply: () => ({ tokens: ["from", " fallback"] }) });
      extra.push(fallback);
      harness = await startHarness({ env: { FALLBACK_BASE_URL: fallback.baseURL }, upstream: { reply: () => reply } });
      const result = await collect(harness.client, { text: "hi" });
      expect([result.code, result.text]).toEqual([status.OK, "from fallback"]);
    },
  );

  it("does not fall back after the first token, nor for the caller's own bad request", async () => {
    const fallback = await startFakeUpstream({ reply: () => ({ tokens: ["never"] }) });
    extra.push(fallback);
    const delivered = hold();
    let next: Reply = { tokens: ["a"], end: "cut", gate: (i) => (i === 1 ? delivered.promise : undefined) };
    harness = await startHarness({ env: { FALLBACK_BASE_URL: fallback.baseURL }, upstream: { reply: () => next } });
    const cut = startStream(harness, 1);
    await cut.reached;
    delivered.release();
    expect((await cut.ended)?.code).toBe(status.UNAVAILABLE);
    expect(textOf(cut.responses)).toBe("a");
    next = { status: 400 };
    const invalid = await collect(harness.client, { text: "hi" });
    expect(invalid.code).toBe(status.INVALID_ARGUMENT);
    expect(fallback.requests).toHaveLength(0);
  });
});

describe("usage", () => {
  it("reports no usage when the upstream reports none", async () => {
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a"], usage: false, finishReason: "length" }) },
    });
    const result = await collect(harness.client, { text: "hi" });
    expect(lastEvent(result.responses)).toEqual({
      $case: "finish",
      value: { finishReason: "length", model: "fake-model", usage: undefined },
    });
  });

  it("survives an upstream that rejects stream_options, without inventing usage", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["a"], rejectStreamOptions: true }) } });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe("a");
    const last = lastEvent(result.responses);
    expect(last?.$case === "finish" && last.value.usage).toBeUndefined();
  });
});

describe("limits and bad input", () => {
  it.each([
    [
      "too many bytes",
      { MAX_INPUT_BYTES: "100" },
      { text: "x".repeat(101) },
      "text: input is 101 bytes, more than the limit of 100",
    ],
    [
      "too many messages",
      { MAX_MESSAGES: "2" },
      {
        text: "3",
        messages: [
          { role: "user", content: "1" },
          { role: "assistant", content: "2" },
        ],
      },
      "messages: 3 messages, more than the limit of 2",
    ],
    ["top_p out of range", {}, { text: "x", topP: 0 }, "top_p: 0 is outside (0, 1]"],
    ["zero max_tokens", {}, { text: "x", maxTokens: 0 }, undefined],
    [
      "too many stop sequences",
      {},
      { text: "x", stop: ["a", "b", "c", "d", "e"] },
      "stop: 5 sequences, more than the limit of 4",
    ],
    [
      "max_tokens past the limit",
      { MAX_OUTPUT_TOKENS: "1000" },
      { text: "x", maxTokens: 1001 },
      "max_tokens: 1001 is more than the limit of 1000",
    ],
    [
      "the largest uint32 max_tokens",
      {},
      { text: "x", maxTokens: 4294967295 },
      "max_tokens: 4294967295 is more than the limit of 131072",
    ],
  ] as const)("rejects %s with INVALID_ARGUMENT naming the field", async (_name, env, request, details) => {
    harness = await startHarness({ env });
    const result = await collect(harness.client, request as Partial<ChatRequest>);
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    if (details) expect(result.details).toBe(details);
    expect(harness.upstream.requests).toHaveLength(0);
  });

  const LEN = WireType.LengthDelimited;
  const notUtf8 = Buffer.from([0x63, 0x61, 0x66, 0xc3]); // "caf" and half an "é"
  it.each([
    ["text", (w: BinaryWriter) => w.tag(1, LEN).bytes(notUtf8)],
    [
      "messages[1].content",
      (w: BinaryWriter) =>
        w
          .tag(1, LEN)
          .string("hi")
          .tag(2, LEN)
          .fork()
          .tag(1, LEN)
          .string("user")
          .tag(2, LEN)
          .string("fine")
          .join()
          .tag(2, LEN)
          .fork()
          .tag(1, LEN)
          .string("user")
          .tag(2, LEN)
          .bytes(notUtf8)
          .join(),
    ],
    ["model", (w: BinaryWriter) => w.tag(1, LEN).string("hi").tag(3, LEN).bytes(notUtf8)],
    ["stop[1]", (w: BinaryWriter) => w.tag(1, LEN).string("hi").tag(7, LEN).string("ok").tag(7, LEN).bytes(notUtf8)],
  ])("refuses invalid UTF-8 in %s with INVALID_ARGUMENT naming the field", async (field, write) => {
    harness = await startHarness();
    const result = await rawCall(harness, Buffer.from(write(new BinaryWriter()).finish()));
    expect([result.code, result.details]).toEqual([status.INVALID_ARGUMENT, `${field}: not valid UTF-8`]);
    expect(harness.upstream.requests).toHaveLength(0);
  });

  it("accepts U+FFFD sent as valid UTF-8", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    const result = await rawCall(harness, Buffer.from(new BinaryWriter().tag(1, LEN).string("\uFFFD?").finish()));
    expect(result.code).toBe(status.OK);
    expect(harness.upstream.requests[0]?.body.messages).toEqual([{ role: "user", content: "\uFFFD?" }]);
  });

  it("refuses bytes that are not protobuf as any invalid request: INVALID_ARGUMENT, error details, a refusal line; the other streams on its connection carry on", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: (r) => ({ tokens: ["a", "b"], gate: (i) => (i === 1 && r.index === 0 ? gate : undefined) }) },
    });
    const sibling = startStream(harness, 1);
    await sibling.reached;
    // Field 1 (text) says 5 bytes follow; 1 does: grpc-js used to answer INTERNAL "Error deserializing request".
    const result = await rawCall(harness, Buffer.from([0x0a, 0x05, 0x68]));
    const problem = "request: not a valid protobuf chat.v1.ChatRequest (premature EOF)";
    expect([result.code, result.details]).toEqual([status.INVALID_ARGUMENT, problem]);
    const details = Status.decode(result.trailers?.get("grpc-status-details-bin")[0] as Buffer);
    expect(details.details.map((any) => ErrorInfo.decode(any.value).reason)).toEqual(["INVALID_REQUEST"]);
    expect(result.trailers?.get("x-request-id")).toHaveLength(1);
    expect(harness.logs.filter((l) => l.msg === "call refused")).toEqual([
      expect.objectContaining({ code: "INVALID_ARGUMENT", cause: "invalid_request", message: problem }),
    ]);
    release();
    expect(await sibling.ended).toBeUndefined();
    expect(textOf(sibling.responses)).toBe("ab");
    expect(harness.upstream.requests).toHaveLength(1);
  });

  const nested = (levels: number): Record<string, unknown> => {
    let value: unknown = { type: "string" };
    for (let i = 1; i < levels; i++) value = { properties: value };
    return value as Record<string, unknown>;
  };
  const withStruct: [string, (value: Record<string, unknown>) => Partial<ChatRequest>][] = [
    ["extra_body", (value) => ({ text: "hi", extraBody: value })],
    [
      "tools[1].function.parameters",
      (value) => ({
        text: "hi",
        tools: [
          { type: "function", function: { name: "flat", description: "", parameters: { type: "object" } } },
          { type: "function", function: { name: "deep", description: "", parameters: value } },
        ],
      }),
    ],
    [
      "response_format.json_schema.schema",
      (value) => ({
        text: "hi",
        responseFormat: { type: "json_schema", jsonSchema: { name: "deep", description: "", schema: value } },
      }),
    ],
  ];
  it.each(withStruct)("passes JSON nested 64 levels deep in %s to the upstream as it is", async (_field, build) => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    // ts-proto's own limit stopped at 33.
    const result = await collect(harness.client, build(nested(64)));
    expect([result.code, result.details]).toEqual([status.OK, ""]);
    expect(JSON.stringify(harness.upstream.requests[0]?.body)).toContain(JSON.stringify(nested(63)));
  });
  it.each(withStruct)("refuses JSON nested deeper than 64 levels in %s, naming it", async (field, build) => {
    harness = await startHarness();
    for (const levels of [65, 200]) {
      const result = await collect(harness.client, build(nested(levels)));
      expect([result.code, result.details]).toEqual([
        status.INVALID_ARGUMENT,
        `${field}: nested deeper than 64 levels (each object or array is one)`,
      ]);
    }
    // Arrays cost fewer protobuf messages per level than objects: counted the same.
    let list: unknown = 1;
    for (let i = 0; i < 64; i++) list = [list];
    const result = await collect(harness.client, build({ list }));
    expect(result.details).toBe(`${field}: nested deeper than 64 levels (each object or array is one)`);
    expect(harness.upstream.requests).toHaveLength(0);
  });

  it("refuses extra_body nested 100,000 levels deep, built on the wire, without a stack overflow", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    // Value{list_value: ListValue{values: [ ... ]}} from the inside out: 4 bytes a level at most.
    const levels = 100_000;
    const innermost = Buffer.from([0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]); // Value{number_value: 1}
    let length = innermost.length;
    const prefixes: Buffer[] = [];
    for (let i = 0; i < levels; i++) {
      const list = Buffer.concat([Buffer.from([0x0a]), varint(length)]); // ListValue.values
      const value = Buffer.concat([Buffer.from([0x32]), varint(length + list.length)]); // Value.list_value
      prefixes.push(list, value); // reversed below: outermost first
      length += list.length + value.length;
    }
    const body = Buffer.concat(prefixes.reverse().concat(innermost));
    const entry = Buffer.concat([Buffer.from([0x0a, 0x01, 0x61, 0x12]), varint(body.length), body]); // {"a": ...}
    const struct = Buffer.concat([Buffer.from([0x0a]), varint(entry.length), entry]);
    const request = Buffer.concat([
      new BinaryWriter().tag(1, LEN).string("hi").finish(),
      Buffer.from([0x92, 0x01]), // field 18, extra_body
      varint(struct.length),
      struct,
    ]);
    const result = await rawCall(harness, request);
    expect([result.code, result.details]).toEqual([
      status.INVALID_ARGUMENT,
      "extra_body: nested deeper than 64 levels (each object or array is one)",
    ]);
    expect((await collect(harness.client, { text: "still here" })).code).toBe(status.OK);
  });

  it("answers a few hundred mangled requests with OK or INVALID_ARGUMENT only, and lives on", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    const valid = Buffer.from(
      ChatRequest.encode(
        ChatRequest.fromPartial({
          text: "hi",
          messages: [{ role: "user", content: "hello", parts: [{ type: "text", text: "x" }] }],
          tools: [{ type: "function", function: { name: "f", description: "d", parameters: nested(5) } }],
          responseFormat: { type: "json_schema", jsonSchema: { name: "s", description: "", schema: nested(4) } },
          extraBody: { a: [1, "two", { three: null }] },
          stop: ["x"],
          logitBias: { "42": 1 },
        }),
      ).finish(),
    );
    // A fixed seed: the same few hundred cases each run.
    let seed = 20;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const codes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const bytes = Buffer.from(valid);
      const mangled =
        i % 3 === 0
          ? bytes.subarray(0, random(bytes.length)) // cut short
          : i % 3 === 1
            ? (() => {
                for (let j = 0; j < 1 + random(4); j++) bytes[random(bytes.length)] = random(256); // bytes overwritten
                return bytes;
              })()
            : Buffer.concat([bytes, Buffer.from(Array.from({ length: 1 + random(8) }, () => random(256)))]); // junk after
      const result = await rawCall(harness, mangled);
      codes.set(status[result.code], (codes.get(status[result.code]) ?? 0) + 1);
      if (result.code !== status.OK) expect(result.details).toMatch(/^[a-z_[\]0-9.]+: /);
    }
    expect([...codes.keys()].filter((code) => code !== "OK" && code !== "INVALID_ARGUMENT")).toEqual([]);
    expect(codes.get("INVALID_ARGUMENT")).toBeGreaterThan(100);
    expect((await collect(harness.client, { text: "still here" })).code).toBe(status.OK);
  });

  it("refuses the one call whose metadata is over 64 KiB; the other streams on its connection carry on", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: (r) => ({ tokens: ["a", "b"], gate: (i) => (i === 1 && r.index === 0 ? gate : undefined) }) },
    });
    const sibling = startStream(harness, 1);
    await sibling.reached;
    // 96 KiB in three values that do not compress, each well under HPACK's own per-header limit.
    const metadata = new Metadata();
    for (let i = 0; i < 3; i++) metadata.set(`x-big-${i}`, randomBytes(24 * 1024).toString("base64"));
    const big = await collect(harness.client, { text: "hi" }, metadata);
    expect(big.code).toBe(status.RESOURCE_EXHAUSTED);
    release();
    expect(await sibling.ended).toBeUndefined();
    expect(textOf(sibling.responses)).toBe("ab");
    expect(harness.upstream.requests).toHaveLength(1);
  });

  it("advertises the metadata limit, so clients that honour it (grpcurl) never send more and keep their connection", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    // Over 64 KiB even HPACK-encoded: sent anyway, it would end the connection (COMPRESSION_ERROR).
    const header = randomBytes(75 * 1024).toString("base64");
    const result = await grpcurl(
      harness.gateway.port,
      ["-H", `x-big: ${header}`, "-d", '{"text":"hi"}'],
      "chat.v1.ChatService/Chat",
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("header list size to send violates the maximum size (65536 bytes) set by server");
    expect(result.stderr).not.toContain("goaway");
  });

  /** 1 MiB of metadata: 256 headers of 4 KiB, or one of 1 MiB; values that do not compress. */
  const MIB_OF_METADATA: Record<string, [string, string][]> = {
    "in many headers": Array.from({ length: 256 }, (_, i) => [`x-big-${i}`, randomBytes(3 * 1024).toString("base64")]),
    "in one header": [["x-big", randomBytes(768 * 1024).toString("base64")]],
  };

  /** Ten streams open on one connection, each held after its first token until `release`. */
  async function withTenSiblings() {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate : undefined) }) },
    });
    return { harness, release };
  }

  it("refuses the one call with 1 MiB of metadata in frames of the advertised size; its 10 siblings carry on", async () => {
    const { harness: h, release } = await withTenSiblings();
    const client = await rawClient(h.gateway.port);
    try {
      // A client that frames a header block by the server's SETTINGS_MAX_FRAME_SIZE (grpclib, over
      // Python's h2): with 16 KiB frames, 1 MiB takes 64 CONTINUATION frames, and nghttp2 ends the
      // whole connection after 8.
      expect(client.maxFrameSize).toBe(MAX_FRAME_SIZE);
      const siblings = Array.from({ length: 10 }, () => client.chat("hi"));
      await Promise.all(siblings.map((s) => s.answered));
      const big = client.chat("hi", MIB_OF_METADATA["in many headers"]);
      expect(await big.ended).toBe(`reset ${constants.NGHTTP2_ENHANCE_YOUR_CALM}`);
      release();
      const seen = await Promise.all(siblings.map(async (s) => [await s.ended, textOf(s.responses)]));
      expect(seen).toEqual(Array.from({ length: 10 }, () => ["end", "ab"]));
      expect(h.upstream.requests).toHaveLength(10);
    } finally {
      client.close();
    }
  });

  it("cannot save the siblings of 1 MiB of metadata in one header: HPACK's 64 KiB per field ends the connection", async () => {
    const { harness: h, release } = await withTenSiblings();
    const client = await rawClient(h.gateway.port);
    try {
      const siblings = Array.from({ length: 10 }, () => client.chat("hi"));
      await Promise.all(siblings.map((s) => s.answered));
      const big = client.chat("hi", MIB_OF_METADATA["in one header"]);
      const goaway = `goaway ${constants.NGHTTP2_COMPRESSION_ERROR}`;
      expect(await big.ended).toBe(goaway);
      release();
      expect(await Promise.all(siblings.map((s) => s.ended))).toEqual(Array.from({ length: 10 }, () => goaway));
    } finally {
      client.close();
    }
  });

  // grpc-js (like Node and curl, on nghttp2) cuts every header block into 16 KiB frames whatever the
  // server advertises, and does not check the advertised header list size: nghttp2 on the server
  // then ends the connection at the 9th frame of a block (~144 KiB HPACK-encoded), or at a field
  // over 64 KiB, before any setting of the server is consulted. What is true, asserted so a Node
  // that changes it shows: see docs/streaming.md#metadata-size. Envoy in front refuses the call
  // alone for many headers (test/e2e/envoy-grpc.test.ts).
  it.each(Object.keys(MIB_OF_METADATA))(
    "cannot save the siblings of a grpc-js call with 1 MiB of metadata %s on the service's port",
    async (shape) => {
      const { harness: h, release } = await withTenSiblings();
      const siblings = Array.from({ length: 10 }, () => startStream(h, 1));
      await Promise.all(siblings.map((s) => s.reached));
      const metadata = new Metadata();
      for (const [name, value] of MIB_OF_METADATA[shape]!) metadata.set(name, value);
      await collect(h.client, { text: "hi" }, metadata);
      release();
      const codes = await Promise.all(siblings.map(async (s) => (await s.ended)?.code));
      expect(codes).toEqual(Array.from({ length: 10 }, () => status.INTERNAL));
    },
  );

  it("refuses streams over the concurrency limit with RESOURCE_EXHAUSTED, and the open one carries on", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      env: { MAX_CONCURRENT_STREAMS: "1" },
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate : undefined) }) },
    });
    const first = startStream(harness, 1);
    await first.reached;
    const second = await collect(harness.client, { text: "hi" });
    expect(second.code).toBe(status.RESOURCE_EXHAUSTED);
    const bad = await collect(harness.client, {});
    expect(bad.code).toBe(status.RESOURCE_EXHAUSTED);
    release();
    expect(await first.ended).toBeUndefined();
    expect(textOf(first.responses)).toBe("ab");
  });
});

describe("graceful drain", () => {
  it("refuses new streams, reports NOT_SERVING, and lets open streams finish", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate : undefined) }) },
    });
    const open = [startStream(harness, 1), startStream(harness, 1), startStream(harness, 1)];
    await Promise.all(open.map((s) => s.reached));

    const stopped = harness.gateway.shutdown(60_000);
    const refused = await collect(harness.client, { text: "late" });
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(refused.details).toBe("gateway is shutting down; retry");
    expect(await healthOf(harness, "chat.v1.ChatService")).toBe("NOT_SERVING");

    release();
    for (const s of open) {
      expect(await s.ended).toBeUndefined();
      expect(textOf(s.responses)).toBe("ab");
    }
    await stopped;
  });

  it("ends streams still open after the grace period with an in-band error", async () => {
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) }) },
    });
    const open = startStream(harness, 1);
    await open.reached;
    await harness.gateway.shutdown(100);
    expect((await open.ended)?.code).toBe(status.UNAVAILABLE);
    expect(lastEvent(open.responses)).toEqual({
      $case: "error",
      value: { code: status.UNAVAILABLE, status: "UNAVAILABLE", message: "gateway is shutting down; retry" },
    });
    expect(await harness.upstream.ended(0)).toBe("closed");
  });
});

/** Calls Chat with request bytes as given, bypassing the client's own encoding. */
function rawCall(h: Harness, bytes: Buffer): Promise<{ code: status; details: string; trailers?: Metadata }> {
  return new Promise((resolve) => {
    const call = h.client.makeServerStreamRequest(
      "/chat.v1.ChatService/Chat",
      (b: Buffer) => b,
      (b: Buffer) => ChatResponse.decode(b),
      bytes,
    );
    call.on("data", () => undefined);
    call.on("error", (e: ServiceError) => resolve({ code: e.code, details: e.details, trailers: e.metadata }));
    call.on("end", () => resolve({ code: status.OK, details: "" }));
  });
}

function varint(n: number): Buffer {
  return Buffer.from(new BinaryWriter().uint32(n).finish());
}

function healthOf(h: Harness, service: string): Promise<string> {
  const Health = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");
  const client = new Health(`127.0.0.1:${h.gateway.port}`, credentials.createInsecure());
  return new Promise((resolve, reject) =>
    (client as unknown as { check: (req: object, cb: (e: Error | null, r: { status: string }) => void) => void }).check(
      { service },
      (e, r) => {
        client.close();
        if (e) reject(e);
        else resolve(r.status);
      },
    ),
  );
}
