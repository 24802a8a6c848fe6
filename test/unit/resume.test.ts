// Resumable streams in one process (the in-memory log): positions on every event, a resume from
// any position gets the rest exactly once, the generation outlives the caller for the grace and
// no longer, an explicit cancel stops the upstream at once, another key gets NOT_FOUND, and an
// ended stream replays within its retention window and is NOT_FOUND after it.
import { afterEach, describe, expect, it } from "vitest";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse, type ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { collect, openStream, startHarness, textOf, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

const TOKENS = Array.from({ length: 12 }, (_, i) => `tok${i} `);

interface Resumed {
  responses: ChatResponse[];
  code: status;
  details: string;
}

function resume(client: ChatServiceClient, streamId: string, after: number, metadata = new Metadata()) {
  return new Promise<Resumed>((resolve) => {
    const call = client.resumeChat({ streamId, after }, metadata);
    const responses: ChatResponse[] = [];
    call.on("data", (r: ChatResponse) => responses.push(r));
    call.on("error", (e: ServiceError) => resolve({ responses, code: e.code, details: e.details }));
    call.on("end", () => resolve({ responses, code: status.OK, details: "" }));
  });
}

function cancel(client: ChatServiceClient, streamId: string, metadata = new Metadata()) {
  return new Promise<{ code: status; details: string }>((resolve) =>
    client.cancelChat({ streamId }, metadata, (error) =>
      resolve(error ? { code: error.code, details: error.details } : { code: status.OK, details: "" }),
    ),
  );
}

describe("resumable streams", () => {
  it("number every event, name the stream on the first, and finish as a plain stream does", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: TOKENS }) } });
    const result = await collect(harness.client, { text: "hi", resumable: true });
    expect(result.code).toBe(status.OK);
    expect(result.text).toBe(TOKENS.join(""));
    const sequences = result.responses.map((r) => r.sequence);
    expect(sequences).toEqual(result.responses.map((_, i) => i + 1));
    expect(result.responses[0]!.streamId).toMatch(/^[0-9a-f-]{36}$/);
    expect(result.responses.slice(1).every((r) => r.streamId === undefined)).toBe(true);
    expect(result.responses.at(-1)!.event?.$case).toBe("finish");
    // A stream that did not ask carries no position at all.
    const plain = await collect(harness.client, { text: "hi" });
    expect(plain.responses.every((r) => r.streamId === undefined && r.sequence === undefined)).toBe(true);
  });

  it("keep generating when the caller leaves, and a resume from any position gets the rest exactly once", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: TOKENS, gate: (i) => (i === 4 ? gate : undefined) }) },
    });
    const first = openStream(harness, { text: "hi", resumable: true });
    await first.received(4);
    const streamId = first.responses[0]!.streamId!;
    const seen = first.responses[1]!.sequence!;
    first.call.cancel();
    await first.ended;
    // Time for the gateway to see the caller leave (a plain stream's upstream is aborted by then).
    await new Promise((resolve) => setTimeout(resolve, 200));
    release();
    // The upstream was not stopped by the caller leaving: it wrote its whole reply.
    expect(await harness.upstream.ended(0)).toBe("finished");
    const rest = await resume(harness.client, streamId, seen);
    expect(rest.code).toBe(status.OK);
    expect(rest.responses.map((r) => r.sequence)).toEqual(rest.responses.map((_, i) => seen + i + 1));
    expect(rest.responses[0]!.streamId).toBe(streamId);
    expect(textOf(first.responses.slice(0, 2)) + textOf(rest.responses)).toBe(TOKENS.join(""));
    // Resumed from the end: nothing more, a clean end.
    const last = rest.responses.at(-1)!.sequence!;
    expect(await resume(harness.client, streamId, last)).toEqual({ responses: [], code: status.OK, details: "" });
  });

  it("take Last-Event-ID over `after`, and refuse one that is no position", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ tokens: TOKENS }) } });
    const done = await collect(harness.client, { text: "hi", resumable: true });
    const streamId = done.responses[0]!.streamId!;
    const metadata = new Metadata();
    metadata.set("last-event-id", "10");
    const rest = await resume(harness.client, streamId, 0, metadata);
    expect(rest.responses.map((r) => r.sequence)).toEqual([11, 12, 13]);
    const bad = new Metadata();
    bad.set("last-event-id", "ten");
    expect(await resume(harness.client, streamId, 0, bad)).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "Last-Event-ID: not a sequence number",
    });
  });

  it("cancel stops the upstream at once, and the attached readers get CANCELLED in-band", async () => {
    harness = await startHarness({
      upstream: {
        reply: () => ({ tokens: TOKENS, gate: (i) => (i === 3 ? new Promise(() => undefined) : undefined) }),
      },
    });
    const first = openStream(harness, { text: "hi", resumable: true });
    await first.received(3);
    const streamId = first.responses[0]!.streamId!;
    expect(await cancel(harness.client, streamId)).toEqual({ code: status.OK, details: "" });
    expect(await harness.upstream.ended(0)).toBe("closed");
    expect(await first.ended).toMatchObject({ code: status.CANCELLED, details: "cancelled by the caller" });
    expect(first.responses.at(-1)).toMatchObject({
      event: { $case: "error", value: { code: status.CANCELLED, status: "CANCELLED" } },
      sequence: 4,
    });
  });

  it("stop the generation when no caller attached within the grace", async () => {
    harness = await startHarness({
      env: { RESUME_GRACE_MS: "300" },
      upstream: {
        reply: () => ({ tokens: TOKENS, gate: (i) => (i === 3 ? new Promise(() => undefined) : undefined) }),
      },
    });
    const first = openStream(harness, { text: "hi", resumable: true });
    await first.received(3);
    const streamId = first.responses[0]!.streamId!;
    first.call.cancel();
    expect(await harness.upstream.ended(0)).toBe("closed");
    const rest = await resume(harness.client, streamId, 3);
    expect(rest).toMatchObject({ code: status.CANCELLED, details: "no caller attached for 0.3s: generation stopped" });
  });

  it("answer another caller key's resume and cancel as an unknown stream's", async () => {
    const keys = "alice sk-alice-0123456789abcdef, bob sk-bob-0123456789abcdef01";
    harness = await startHarness({ env: { CALLER_KEYS: keys }, upstream: { reply: () => ({ tokens: TOKENS }) } });
    const as = (key: string) => {
      const m = new Metadata();
      m.set("authorization", `Bearer ${key}`);
      return m;
    };
    const done = await collect(harness.client, { text: "hi", resumable: true }, as("sk-alice-0123456789abcdef"));
    expect(done.code).toBe(status.OK);
    const streamId = done.responses[0]!.streamId!;
    const unknown = await resume(
      harness.client,
      "00000000-0000-0000-0000-000000000000",
      0,
      as("sk-bob-0123456789abcdef01"),
    );
    const other = await resume(harness.client, streamId, 0, as("sk-bob-0123456789abcdef01"));
    expect(other).toEqual(unknown);
    expect(other).toMatchObject({ code: status.NOT_FOUND, details: "stream not found" });
    expect(await cancel(harness.client, streamId, as("sk-bob-0123456789abcdef01"))).toEqual({
      code: status.NOT_FOUND,
      details: "stream not found",
    });
    const own = await resume(harness.client, streamId, 0, as("sk-alice-0123456789abcdef"));
    expect(textOf(own.responses)).toBe(TOKENS.join(""));
  });

  it("replay an ended stream within the retention window, and NOT_FOUND after it", async () => {
    harness = await startHarness({
      env: { RESUME_RETENTION_MS: "300" },
      upstream: { reply: () => ({ tokens: TOKENS }) },
    });
    const done = await collect(harness.client, { text: "hi", resumable: true });
    const streamId = done.responses[0]!.streamId!;
    const again = await resume(harness.client, streamId, 0);
    expect(again.responses.map((r) => ({ ...r, streamId: undefined }))).toEqual(
      done.responses.map((r) => ({ ...r, streamId: undefined })),
    );
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(await resume(harness.client, streamId, 0)).toMatchObject({
      code: status.NOT_FOUND,
      details: "stream not found",
    });
  });

  it("tell a resume before what is still kept that it was trimmed, never a silent gap", async () => {
    const many = Array.from({ length: 600 }, (_, i) => `t${i} `);
    harness = await startHarness({
      env: { RESUME_MAX_STREAM_BYTES: "65536" },
      upstream: { reply: () => ({ tokens: many }) },
    });
    const done = await collect(harness.client, { text: "hi", resumable: true });
    expect(done.text).toBe(many.join(""));
    const streamId = done.responses[0]!.streamId!;
    const rest = await resume(harness.client, streamId, 0);
    expect(rest.code).toBe(status.OUT_OF_RANGE);
    expect(rest.details).toMatch(/^events after 0 are no longer kept \(the oldest kept is \d+\)/);
    expect(rest.responses).toEqual([]);
  });

  it("hold the generation back for a reader that stops reading, so the bound never overtakes it", async () => {
    // A burst far larger than what is kept (65,536 bytes, ~500 events), to a caller that pauses.
    const burst = Array.from({ length: 3_000 }, (_, i) => `${i}${"x".repeat(60)} `);
    harness = await startHarness({
      env: { RESUME_MAX_STREAM_BYTES: "65536" },
      upstream: { reply: () => ({ tokens: burst }) },
    });
    const stream = openStream(harness, { text: "hi", resumable: true });
    await stream.received(1);
    stream.call.pause();
    await new Promise((resolve) => setTimeout(resolve, 500));
    stream.call.resume();
    expect(await stream.ended).toMatchObject({ code: status.OK });
    expect(textOf(stream.responses)).toBe(burst.join(""));
  });

  it("shutdown waits for a detached generation to finish within the grace, and its events stay readable meanwhile", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: TOKENS, gate: (i) => (i === 4 ? gate : undefined) }) },
    });
    const first = openStream(harness, { text: "hi", resumable: true });
    await first.received(4);
    const streamId = first.responses[0]!.streamId!;
    first.call.cancel();
    await first.ended;
    const shutdown = harness.gateway.shutdown(60_000);
    let over = false;
    void shutdown.then(() => (over = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The caller is gone, but the generation could still finish in the grace period: not cut.
    expect(over).toBe(false);
    const resumed = resume(harness.client, streamId, 4);
    // Attached before the generation can end (once it has, the drain closes the port).
    await new Promise((resolve) => setTimeout(resolve, 200));
    release();
    expect(await shutdown).toBe("drained");
    const rest = await resumed;
    expect({ code: rest.code, details: rest.details }).toEqual({ code: status.OK, details: "" });
    expect(textOf(first.responses.slice(0, 4)) + textOf(rest.responses)).toBe(TOKENS.join(""));
  });

  it("refuse a resumable stream before its first event as a plain one (trailers-only status)", async () => {
    harness = await startHarness({ upstream: { reply: () => ({ status: 429, errorMessage: "slow down" }) } });
    const result = await collect(harness.client, ChatRequest.fromPartial({ text: "hi", resumable: true }));
    const plain = await collect(harness.client, ChatRequest.fromPartial({ text: "hi" }));
    expect(result.responses).toEqual([]);
    expect({ code: result.code, details: result.details }).toEqual({ code: plain.code, details: plain.details });
  });
});
