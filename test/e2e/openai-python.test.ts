// The OpenAI API through the real Envoy and the built service, with the official openai Python SDK
// as the client (test/clients/openai_python.py, in the virtualenv scripts/setup.sh makes): what a
// Python application sees when it changes only its base URL.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../src/dev/envoy.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";

const KEY = "py-key-0123456789abcdef";
const PYTHON = join(ROOT, ".tools", "py-clients", "bin", "python");
let upstream: FakeUpstream;
let stack: Stack;
let reply: () => Reply = () => ({ tokens: ["Hello", " Python"] });

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: () => reply(), models: () => ({ ids: ["fake-model"] }) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    CALLER_KEYS: `python ${KEY}`,
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

async function python(scenario: string, key = KEY): Promise<Record<string, unknown>> {
  const base = `http://127.0.0.1:${stack.envoy.httpPort}/v1`;
  const { stdout } = await promisify(execFile)(PYTHON, [
    join(ROOT, "test", "clients", "openai_python.py"),
    scenario,
    base,
    key,
  ]);
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe("the openai Python SDK", () => {
  it("streams a chat completion, with the role first, the finish reason and the usage", async () => {
    expect(await python("stream")).toEqual({
      text: "Hello Python",
      role: "assistant",
      finish: ["stop"],
      usage: expect.any(Number),
    });
  });

  it("gets one chat.completion without stream, and lists the models", async () => {
    expect(await python("complete")).toEqual({ text: "Hello Python", object: "chat.completion" });
    expect(await python("models")).toEqual({ ids: ["fake-model"] });
  });

  it("raises BadRequestError and AuthenticationError with OpenAI's error body", async () => {
    expect(await python("bad-request")).toMatchObject({
      raised: "BadRequestError",
      status: 400,
      body: { type: "invalid_request_error", param: "messages[0].role" },
    });
    expect(await python("unauthenticated", "not-a-key")).toMatchObject({ raised: "AuthenticationError", status: 401 });
  });

  it("raises a failure after the first chunk while iterating", async () => {
    // The first token goes out 50 ms before the cut: the stream has begun when it breaks.
    reply = () => ({ tokens: ["partial", " more"], tokenDelayMs: 50, end: "cut" });
    expect(await python("mid-stream")).toMatchObject({
      raised: "APIError",
      message: "upstream connection lost mid-stream",
    });
    reply = () => ({ tokens: ["Hello", " Python"] });
  });

  it("streams a response with client.responses.stream, and gets one without stream", async () => {
    expect(await python("responses-stream")).toEqual({
      text: "Hello Python",
      first: ["response.created", "response.in_progress"],
      last: "response.completed",
      numbered: true,
      output_text: "Hello Python",
      status: "completed",
      usage: expect.any(Number),
    });
    expect(await python("responses-create")).toEqual({
      object: "response",
      status: "completed",
      output_text: "Hello Python",
    });
  });

  it("keeps responses and conversations: chains, retrieve, input items, conversations and their items, deletes", async () => {
    expect(await python("stored")).toEqual({
      same: true,
      previous: true,
      inputs: ["Who am I?"],
      conversation: true,
      item: "added",
      items: ["message:user", "message:user", "message:assistant", "message:user"],
      after_delete: 3,
      metadata: [{ topic: "other" }, { topic: "other" }],
      deleted: true,
      gone: 404,
    });
    // The chain as the upstream got it on the second response, and the conversation's on the third.
    const sent = upstream.requests.slice(-2).map((r) => (r.body.messages ?? []).map((m) => m.content));
    expect(sent).toEqual([
      ["I am Ada.", "Hello Python", "Who am I?"],
      ["hello", "more"],
    ]);
  });

  it("resumes a dropped background stream with retrieve(stream=True, starting_after=...), polls one and cancels it once ended", async () => {
    const tokens = Array.from({ length: 12 }, (_, i) => `${i}:«ü» `);
    reply = () => ({ tokens, tokenDelayMs: 20 });
    try {
      expect(await python("responses-background")).toEqual({
        text: tokens.join(""),
        numbered: true,
        last: "response.completed",
        background: true,
        first_status: "in_progress",
        polled: ["completed", tokens.join("")],
        cancel_after_end: "completed",
      });
    } finally {
      reply = () => ({ tokens: ["Hello", " Python"] });
    }
  });

  it("raises BadRequestError for a malformed previous_response_id, and a response's failure mid-stream", async () => {
    expect(await python("responses-refused")).toMatchObject({
      raised: "BadRequestError",
      status: 400,
      body: { type: "invalid_request_error", param: "previous_response_id" },
    });
    reply = () => ({ tokens: ["partial", " more"], tokenDelayMs: 50, end: "cut" });
    expect(await python("responses-mid-stream")).toMatchObject({
      raised: "APIError",
      message: "upstream connection lost mid-stream",
    });
    reply = () => ({ tokens: ["Hello", " Python"] });
  });
});
