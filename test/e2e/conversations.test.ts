// Stored conversations end to end: the built service (SQLite in a temporary DATA_DIR) behind the
// real Envoy, over HTTP/JSON as curl would call it (POST /conversations, POST /chat with its
// conversation_id, GET, PATCH, DELETE), and ConversationService listed by grpcurl through reflection.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest, type Reply } from "../support/fake-model.js";
import { hold } from "../support/gates.js";
import { grpcurl, startStack, type Stack } from "../support/processes.js";
import { allEvents, post } from "../support/http.js";

let upstream: FakeUpstream;
let stack: Stack;
// The third Chat request's reply waits here: a stream still open on its conversation.
const third = hold();

beforeAll(async () => {
  upstream = await startFakeUpstream({
    reply: (r: RecordedRequest): Reply =>
      r.index === 2
        ? { tokens: ["wait", "ing"], gate: (i) => (i === 1 ? third.promise : undefined) }
        : { tokens: r.index === 0 ? ["Hi Ada."] : ["Your name is Ada."] },
  });
  stack = await startStack({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-e2e", CHAT_MODEL: "fake-model" });
});
afterAll(async () => {
  third.release();
  await stack?.stop();
  await upstream?.close();
});

// The answers' JSON, read loosely: the assertions say what they expect of it.
// biome-ignore lint/suspicious/noExplicitAny: test-side JSON
type Json = Record<string, any>;

const http = async (method: string, path: string, body?: unknown) => {
  const response = await post(
    stack.envoy.httpPort,
    path,
    body === undefined ? "" : JSON.stringify(body),
    { "content-type": "application/json" },
    method,
  );
  const text = await response.body();
  return { status: response.status, json: text ? (JSON.parse(text) as Json) : {} };
};

describe("conversations through Envoy", () => {
  it("POST /conversations, then POST /chat with its id twice: the second upstream request carries the first exchange", async () => {
    const created = await http("POST", "/conversations", {
      title: "e2e",
      system_prompt: "Be brief.",
      metadata: { app: "e2e" },
    });
    expect(created.status).toBe(200);
    const id = created.json.conversation.id as string;
    expect(created.json.conversation).toMatchObject({
      title: "e2e",
      systemPrompt: "Be brief.",
      metadata: { app: "e2e" },
    });

    for (const text of ["I am Ada.", "Who am I?"]) {
      const response = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ conversation_id: id, text }));
      expect(response.status).toBe(200);
      expect((await allEvents(response)).at(-1)).toMatchObject({ finish: { finishReason: "stop" } });
    }
    expect(upstream.requests[1]?.body.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "I am Ada." },
      { role: "assistant", content: "Hi Ada." },
      { role: "user", content: "Who am I?" },
    ]);

    const got = await http("GET", `/conversations/${id}`);
    expect(got.status).toBe(200);
    expect(got.json.turns.map((t: { role: string; content: string }) => `${t.role}: ${t.content}`)).toEqual([
      "user: I am Ada.",
      "assistant: Hi Ada.",
      "user: Who am I?",
      "assistant: Your name is Ada.",
    ]);
    const listed = await http("GET", "/conversations?page_size=10");
    expect(listed.json.conversations.map((c: { id: string }) => c.id)).toContain(id);

    // A second stream while one is open on the conversation is refused.
    const open = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ conversation_id: id, text: "Wait." }));
    const events = open.events[Symbol.asyncIterator]();
    await events.next();
    const busy = await http("POST", "/chat", { conversation_id: id, text: "Now?" });
    expect(busy.json).toMatchObject({ code: 9, message: "conversation busy: another stream on it has not ended" });
    // FAILED_PRECONDITION is 409 (envoy.yaml's Lua on the `http` route; the transcoder alone says 400).
    expect(busy.status).toBe(409);
    // Other refusals keep the transcoder's status: a bad id (INVALID_ARGUMENT) is still 400.
    const bad = await http("POST", "/chat", { conversation_id: "not-a-uuid", text: "Hi" });
    expect([bad.status, bad.json.code]).toEqual([400, 3]);
    third.release();
    await open.body();

    expect((await http("PATCH", `/conversations/${id}`, { title: "renamed" })).json.conversation.title).toBe("renamed");
    expect((await http("DELETE", `/conversations/${id}`)).status).toBe(200);
    const gone = await http("GET", `/conversations/${id}`);
    expect([gone.status, gone.json.message]).toEqual([404, "conversation not found"]);
  });

  it("lists ConversationService through reflection", async () => {
    const { stdout } = await grpcurl(stack.service.port, [], "list");
    expect(stdout.split("\n")).toContain("chat.v1.ConversationService");
  });
});
