// Background responses through the real Envoy and the built service, with the official `openai`
// SDK's own methods as the client: `responses.create({background: true, stream: true})` dropped
// mid-stream and continued with `responses.retrieve(id, {stream: true, starting_after})` (no gap,
// no repeat: the joined text is the fake model's byte for byte, the sequence numbers contiguous);
// a background response polled to completed; `responses.cancel` aborting the upstream request (seen
// at the fake model); another key's retrieve and cancel answered 404; the retention window's 404;
// and the 400s OpenAI answers (background without store, stream on a response that is not background).
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ResponseStreamEvent } from "openai/resources/responses/responses";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { hold } from "../support/gates.js";

const KEY = "bg-key-0123456789abcdefgh";
const OTHER = "bg-other-0123456789abcdef";
/** Multi-byte text on purpose: a cut or a repeat inside a character would show. */
const TOKENS = Array.from({ length: 40 }, (_, i) => `${i}:héllo 🌍 «ünïcode» `);
const HELD_AT = 10;
const RETENTION_MS = 4_000;

let upstream: FakeUpstream;
let stack: Stack;
let client: OpenAI;
let other: OpenAI;
/** A prompt naming a key here is held before the token HELD_AT until the test releases it. */
const gates = new Map<string, { promise: Promise<void>; release: () => void }>();

beforeAll(async () => {
  upstream = await startFakeUpstream({
    reply: (request) => {
      const prompt = JSON.stringify(request.body.messages);
      const gate = [...gates.entries()].find(([key]) => prompt.includes(key))?.[1];
      return { tokens: TOKENS, gate: (i) => (i === HELD_AT ? gate?.promise : undefined) };
    },
  });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    CALLER_KEYS: `alice ${KEY}, bob ${OTHER}`,
    UPSTREAM_MAX_RETRIES: "0",
    RESUME_RETENTION_MS: String(RETENTION_MS),
  });
  const base = `http://127.0.0.1:${stack.envoy.httpPort}/v1`;
  client = new OpenAI({ baseURL: base, apiKey: KEY, maxRetries: 0 });
  other = new OpenAI({ baseURL: base, apiKey: OTHER, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

/** A held prompt: its upstream request stops before token HELD_AT until `release`. */
function held(name: string) {
  const gate = hold();
  gates.set(name, gate);
  return gate;
}

/**
 * The index at the fake model of the request whose prompt names `name`, once it arrived (a
 * background create answers before its upstream request is sent).
 */
async function requestOf(name: string): Promise<number> {
  for (;;) {
    const index = upstream.requests.findIndex((r) => JSON.stringify(r.body.messages).includes(name));
    if (index >= 0) return index;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const textOf = (events: ResponseStreamEvent[]) =>
  events.map((e) => (e.type === "response.output_text.delta" ? e.delta : "")).join("");

async function failure(call: Promise<unknown>) {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpenAI.APIError);
  return error as InstanceType<typeof OpenAI.APIError>;
}

async function until<T>(what: () => Promise<T>, done: (value: T) => boolean, withinMs = 10_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const value = await what();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("background responses", () => {
  it("resumes a dropped stream with retrieve(stream, starting_after): no gap, no repeat, contiguous numbers", async () => {
    const gate = held("bg-resume");
    const stream = await client.responses.create({
      model: "fake-model",
      input: "bg-resume",
      background: true,
      stream: true,
    });
    const seen: ResponseStreamEvent[] = [];
    // Read up to the held token, then drop the connection (the SDK aborts its fetch).
    for await (const event of stream) {
      seen.push(event);
      if (seen.filter((e) => e.type === "response.output_text.delta").length === HELD_AT) break;
    }
    stream.controller.abort();
    const created = seen[0];
    expect(created?.type).toBe("response.created");
    const id = created?.type === "response.created" ? created.response.id : "";
    expect(created?.type === "response.created" && created.response.background).toBe(true);
    // The generation outlives the connection: released now, it runs to its end with nobody attached.
    gate.release();
    expect(await upstream.ended(await requestOf("bg-resume"))).toBe("finished");

    const last = seen.at(-1)!.sequence_number;
    const rest: ResponseStreamEvent[] = [];
    for await (const event of await client.responses.retrieve(id, { stream: true, starting_after: last }))
      rest.push(event);

    const all = [...seen, ...rest];
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(Buffer.from(textOf(all))).toEqual(Buffer.from(TOKENS.join("")));
    const completed = rest.at(-1);
    expect(completed?.type).toBe("response.completed");
    if (completed?.type !== "response.completed") return;
    const message = completed.response.output[0];
    expect(message?.type === "message" && message.content[0]?.type === "output_text" && message.content[0].text).toBe(
      TOKENS.join(""),
    );
    // The item ids are the same in both readings.
    const added = all.find((e) => e.type === "response.output_item.added");
    expect(completed.response.output[0]?.id).toBe(added?.type === "response.output_item.added" && added.item.id);
    // And the stored response is the one the stream ended with.
    const stored = await until(
      () => client.responses.retrieve(id),
      (r) => r.status === "completed",
    );
    expect(stored.output_text).toBe(TOKENS.join(""));

    // A resume from the start replays every event again, the same numbers and text.
    const again: ResponseStreamEvent[] = [];
    for await (const event of await client.responses.retrieve(id, { stream: true })) again.push(event);
    expect(again.map((e) => e.sequence_number)).toEqual(all.map((e) => e.sequence_number));
    expect(JSON.stringify(again.slice(2))).toBe(JSON.stringify(all.slice(2)));
  });

  it("polls a background response from in_progress to completed", async () => {
    const gate = held("bg-poll");
    const created = await client.responses.create({ model: "fake-model", input: "bg-poll", background: true });
    expect(created.status).toBe("in_progress");
    expect(created.background).toBe(true);
    expect((await client.responses.retrieve(created.id)).status).toBe("in_progress");
    gate.release();
    const done = await until(
      () => client.responses.retrieve(created.id),
      (r) => r.status === "completed",
    );
    expect(done.status).toBe("completed");
    expect(Buffer.from(done.output_text)).toEqual(Buffer.from(TOKENS.join("")));
    expect(done.usage?.output_tokens).toBeGreaterThan(0);
  });

  it("cancel stops the upstream at once and answers cancelled; another key's retrieve and cancel are 404", async () => {
    held("bg-cancel"); // never released
    const created = await client.responses.create({ model: "fake-model", input: "bg-cancel", background: true });
    const index = await requestOf("bg-cancel");

    // Another key: not found, as an unknown id (and the generation runs on).
    const message = `No response with id '${created.id}' found.`;
    for (const call of [
      () => other.responses.retrieve(created.id),
      () => other.responses.cancel(created.id),
      () => other.responses.retrieve(created.id, { stream: true, starting_after: 0 }),
    ]) {
      const error = await failure(call());
      expect(error.status).toBe(404);
      expect(error.message).toContain(message);
    }
    expect(upstream.outcomes.get(index)).toBeUndefined();

    const started = Date.now();
    const cancelled = await client.responses.cancel(created.id);
    expect(cancelled.status).toBe("cancelled");
    expect(await upstream.ended(index)).toBe("closed");
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await client.responses.retrieve(created.id)).status).toBe("cancelled");
    // A finished one is answered as it is.
    expect((await client.responses.cancel(created.id)).status).toBe("cancelled");
  });

  it("delete of a running background response stops its upstream, and it stays deleted", async () => {
    held("bg-delete"); // never released
    const created = await client.responses.create({ model: "fake-model", input: "bg-delete", background: true });
    const index = await requestOf("bg-delete");
    await client.responses.delete(created.id);
    expect(await upstream.ended(index)).toBe("closed");
    expect((await failure(client.responses.retrieve(created.id))).status).toBe(404);
  });

  it("refuses background without store, and stream on a response that is not background (400)", async () => {
    const noStore = await failure(
      client.responses.create({ model: "fake-model", input: "x", background: true, store: false }),
    );
    expect(noStore.status).toBe(400);
    expect(noStore.param).toBe("background");

    const plain = await client.responses.create({ model: "fake-model", input: "plain" });
    const streamed = await failure(client.responses.retrieve(plain.id, { stream: true }));
    expect(streamed.status).toBe(400);
    expect(streamed.message).toContain("only background responses");
    // Cancelling a response that is not background: OpenAI's 400.
    expect((await failure(client.responses.cancel(plain.id))).status).toBe(400);
  });

  it("answers 404 saying the retention window passed once the events are no longer kept", async () => {
    const created = await client.responses.create({ model: "fake-model", input: "bg-window", background: true });
    await until(
      () => client.responses.retrieve(created.id),
      (r) => r.status === "completed",
    );
    await new Promise((resolve) => setTimeout(resolve, RETENTION_MS + 500));
    const error = await failure(client.responses.retrieve(created.id, { stream: true, starting_after: 3 }));
    expect(error.status).toBe(404);
    expect(error.message).toContain("retention window passed");
    // The response itself is still kept.
    expect((await client.responses.retrieve(created.id)).status).toBe("completed");
  });
});
