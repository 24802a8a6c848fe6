// The OpenAI API's stored side through the real Envoy and the built service (SQLite in a temporary
// DATA_DIR), with the official `openai` SDK's own methods as the client: stored responses (retrieve,
// input items, delete, `store: false`), `previous_response_id` chains and branches, `conversation`
// on a response, the Conversations API and its items over the same tables as chat.v1's
// conversations, two caller keys' ownership, and bad input refused whole. What the upstream was sent
// is checked at the fake model: the history replayed as Chat Completions messages.
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeUpstream, wire, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";

const KEY = "stored-key-0123456789abcdef";
const OTHER = "other-key-0123456789abcdefg";
let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;
let client: OpenAI;
let other: OpenAI;
let base: string;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    CALLER_KEYS: `alice ${KEY}, bob ${OTHER}`,
    MAX_HISTORY_TURNS: "6",
  });
  base = `http://127.0.0.1:${stack.envoy.httpPort}`;
  client = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0 });
  other = new OpenAI({ baseURL: `${base}/v1`, apiKey: OTHER, maxRetries: 0 });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});
beforeEach(() => {
  reply = () => ({ tokens: ["Hello", " there"] });
});

const lastMessages = () => upstream.requests.at(-1)?.body.messages;

/** The SDK's error for a call that must fail: its status and OpenAI's error body. */
async function failure(call: Promise<unknown>) {
  const error = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OpenAI.APIError);
  const e = error as InstanceType<typeof OpenAI.APIError>;
  return { status: e.status, message: e.message, param: e.param, type: e.type, error: e };
}

interface ChatV1Body {
  conversations: { id: string }[];
  conversation: { id: string };
}

async function chatV1(method: string, path: string, body?: unknown, key = KEY) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, text, json: (text.startsWith("{") ? JSON.parse(text) : {}) as ChatV1Body };
}

describe("stored responses", () => {
  it("keeps a response by default: retrieve gives the object create returned, input items, delete, then 404", async () => {
    const created = await client.responses.create({ model: "fake-model", instructions: "be brief", input: "hi" });
    expect((created as unknown as { store: boolean }).store).toBe(true);
    expect(created.id).toMatch(/^resp_[0-9a-f]{32}$/);
    const got = await client.responses.retrieve(created.id);
    const { output_text: _, ...plain } = created;
    expect(got).toMatchObject(plain);
    expect(got.status).toBe("completed");
    expect(got.output_text).toBe("Hello there");
    expect(got.usage?.total_tokens).toBeGreaterThan(0);

    const items = await client.responses.inputItems.list(created.id);
    expect(items.data).toMatchObject([
      { type: "message", role: "user", content: [{ type: "input_text", text: "hi" }] },
    ]);

    const deleted = await fetch(`${base}/v1/responses/${created.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(await deleted.json()).toEqual({ id: created.id, object: "response", deleted: true });
    await expect(client.responses.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("deletes with the SDK's own method", async () => {
    const created = await client.responses.create({ model: "fake-model", input: "hi" });
    await client.responses.delete(created.id);
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("keeps a streamed response as its response.completed carried it", async () => {
    const stream = client.responses.stream({ model: "fake-model", input: "stream it" });
    const final = await stream.finalResponse();
    const got = await client.responses.retrieve(final.id);
    // The SDK's stream helper adds `parsed` to each text part; the rest is as stored.
    expect(final.output).toMatchObject(got.output);
    expect(got.output_text).toBe("Hello there");
    expect(got.status).toBe("completed");
  });

  it("store: false writes nothing: retrieve and a previous_response_id naming it are 404", async () => {
    const created = await client.responses.create({ model: "fake-model", input: "hi", store: false });
    expect((created as unknown as { store: boolean }).store).toBe(false);
    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const refused = await failure(
      client.responses.create({ model: "fake-model", input: "again", previous_response_id: created.id }),
    );
    expect(refused.status).toBe(404);
    expect(refused.param).toBe("previous_response_id");
  });

  it("previous_response_id: the chain's inputs and outputs, not its instructions, then the new input; branches apart", async () => {
    reply = () => ({ tokens: ["Hi Ada."] });
    const first = await client.responses.create({ model: "fake-model", instructions: "old rules", input: "I am Ada." });
    reply = () => ({ tokens: ["You are Ada."] });
    const second = await client.responses.create({
      model: "fake-model",
      instructions: "new rules",
      input: "Who am I?",
      previous_response_id: first.id,
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(lastMessages()).toEqual([
      { role: "system", content: "new rules" },
      { role: "user", content: "I am Ada." },
      { role: "assistant", content: "Hi Ada." },
      { role: "user", content: "Who am I?" },
    ]);
    // A branch from the first: the second's exchange is not in it.
    await client.responses.create({ model: "fake-model", input: "Branch.", previous_response_id: first.id });
    expect(lastMessages()).toEqual([
      { role: "user", content: "I am Ada." },
      { role: "assistant", content: "Hi Ada." },
      { role: "user", content: "Branch." },
    ]);
    // And the second's chain still has its own.
    await client.responses.create({ model: "fake-model", input: "Third.", previous_response_id: second.id });
    expect(lastMessages()).toEqual([
      { role: "user", content: "I am Ada." },
      { role: "assistant", content: "Hi Ada." },
      { role: "user", content: "Who am I?" },
      { role: "assistant", content: "You are Ada." },
      { role: "user", content: "Third." },
    ]);
  });

  it("previous_response_id carries tool calls and their outputs as the upstream expects them", async () => {
    reply = () => ({
      deltas: [wire.toolCall(0, "call_1", "get_weather"), wire.toolArgs(0, '{"city":"Paris"}')],
      tokens: [],
      finishReason: "tool_calls",
    });
    const tools = [{ type: "function" as const, name: "get_weather", parameters: { type: "object" }, strict: false }];
    const asked = await client.responses.create({ model: "fake-model", input: "Weather?", tools });
    expect(asked.output).toMatchObject([{ type: "function_call", call_id: "call_1", name: "get_weather" }]);
    reply = () => ({ tokens: ["18°C in Paris."] });
    await client.responses.create({
      model: "fake-model",
      tools,
      previous_response_id: asked.id,
      input: [{ type: "function_call_output", call_id: "call_1", output: "18°C" }],
    });
    expect(lastMessages()).toEqual([
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "18°C" },
    ]);
  });

  it("trims a chain beyond MAX_HISTORY_TURNS oldest first, as Chat's history", async () => {
    let previous: string | undefined;
    for (let i = 1; i <= 5; i++) {
      reply = () => ({ tokens: [`r${i}`] });
      const r = await client.responses.create({
        model: "fake-model",
        input: `q${i}`,
        ...(previous !== undefined && { previous_response_id: previous }),
      });
      previous = r.id;
    }
    const contents = (lastMessages() ?? []).map((m) => m.content);
    // Turn 5's request: four earlier exchanges (8 turns), trimmed to the newest 6.
    expect(contents).toEqual(["q2", "r2", "q3", "r3", "q4", "r4", "q5"]);
  });

  it("refuses stream=true on retrieve (only background responses stream), cancel of a stored one, and background without store", async () => {
    const created = await client.responses.create({ model: "fake-model", input: "hi" });
    const streamed = await fetch(`${base}/v1/responses/${created.id}?stream=true`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(streamed.status).toBe(400);
    expect(((await streamed.json()) as { error: { message: string } }).error.message).toMatch(/background/);
    const cancel = await failure(client.responses.cancel(created.id));
    expect(cancel.status).toBe(400);
    expect(cancel.message).toMatch(/background=true can be cancelled/);
    expect((await failure(client.responses.cancel(`resp_${"0".repeat(32)}`))).status).toBe(404);
    // Background responses are served (openai-background.test.ts), but only stored, as OpenAI's.
    const unstored = client.responses.create({ model: "fake-model", input: "x", background: true, store: false });
    expect((await failure(unstored)).param).toBe("background");
  });
});

describe("conversations", () => {
  it("a response on a conversation reads its items, stores its input and output there, and says so", async () => {
    const conversation = await client.conversations.create({
      metadata: { topic: "names" },
      items: [{ type: "message", role: "user", content: "I am Ada." }],
    });
    expect(conversation).toMatchObject({ object: "conversation", metadata: { topic: "names" } });
    expect(conversation.id).toMatch(/^conv_[0-9a-f]{32}$/);
    reply = () => ({ tokens: ["You are Ada."] });
    const response = await client.responses.create({
      model: "fake-model",
      instructions: "be brief",
      input: "Who am I?",
      conversation: conversation.id,
    });
    expect(response.conversation).toEqual({ id: conversation.id });
    expect(lastMessages()).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "I am Ada." },
      { role: "user", content: "Who am I?" },
    ]);
    const items = await client.conversations.items.list(conversation.id, { order: "asc" });
    expect(items.data).toMatchObject([
      { type: "message", role: "user", content: [{ type: "input_text", text: "I am Ada." }] },
      { type: "message", role: "user", content: [{ type: "input_text", text: "Who am I?" }] },
      { type: "message", role: "assistant", content: [{ type: "output_text", text: "You are Ada." }] },
    ]);
    // The object form, and the next response sees the whole conversation.
    await client.responses.create({ model: "fake-model", input: "And?", conversation: { id: conversation.id } });
    expect(lastMessages()?.map((m) => m.content)).toEqual(["I am Ada.", "Who am I?", "You are Ada.", "And?"]);
  });

  it("one stream per conversation: a second response on it while the first streams is refused, then works", async () => {
    const { id } = await client.conversations.create({});
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    reply = () => ({ tokens: ["first", " reply"], gate: (i) => (i === 1 ? held : undefined) });
    const stream = await client.responses.create({ model: "fake-model", input: "one", conversation: id, stream: true });
    const iterator = stream[Symbol.asyncIterator]();
    // The stream has begun (its first event is out): the conversation is held.
    await iterator.next();
    const refused = await failure(client.responses.create({ model: "fake-model", input: "two", conversation: id }));
    expect(refused.status).toBe(400);
    expect(refused.message).toMatch(/conversation busy/);
    expect(
      (
        await failure(
          client.conversations.items.create(id, { items: [{ type: "message", role: "user", content: "x" }] }),
        )
      ).message,
    ).toMatch(/conversation busy/);
    release();
    for (let next = await iterator.next(); !next.done; next = await iterator.next());
    reply = () => ({ tokens: ["ok"] });
    await client.responses.create({ model: "fake-model", input: "two", conversation: id });
    expect(lastMessages()?.map((m) => m.content)).toEqual(["one", "first reply", "two"]);
  });

  it("previous_response_id with conversation is a 400, and nothing is stored", async () => {
    const conversation = await client.conversations.create({});
    const first = await client.responses.create({ model: "fake-model", input: "hi" });
    const refused = await failure(
      client.responses.create({
        model: "fake-model",
        input: "x",
        conversation: conversation.id,
        previous_response_id: first.id,
      }),
    );
    expect(refused.status).toBe(400);
    expect(refused.param).toBe("conversation");
    expect((await client.conversations.items.list(conversation.id)).data).toEqual([]);
  });

  it("shares chat.v1's tables: made here, listed by GET /conversations; made there, retrieved here", async () => {
    const made = await client.conversations.create({ metadata: { a: "1" } });
    const uuid = made.id.slice("conv_".length).replace(/^(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
    const listed = await chatV1("GET", "/conversations?page_size=100");
    expect(listed.json.conversations.map((c) => c.id)).toContain(uuid);
    const there = await chatV1("POST", "/conversations", { title: "from chat.v1", metadata: { app: "page" } });
    const id = `conv_${there.json.conversation.id.replaceAll("-", "")}`;
    expect(await client.conversations.retrieve(id)).toMatchObject({ id, metadata: { app: "page" } });
    // Chat's turns are its items.
    await chatV1("POST", "/chat", { conversation_id: there.json.conversation.id, text: "from Chat" });
    const items = await client.conversations.items.list(id, { order: "asc" });
    expect(items.data.map((i) => i.type)).toEqual(["message", "message"]);
  });

  it("create, retrieve, update, delete with the SDK's methods", async () => {
    const made = await client.conversations.create({ metadata: { k: "v" } });
    expect(await client.conversations.retrieve(made.id)).toEqual(made);
    const updated = await client.conversations.update(made.id, { metadata: { k: "w", n: "2" } });
    expect(updated.metadata).toEqual({ k: "w", n: "2" });
    const deleted = await client.conversations.delete(made.id);
    expect(deleted).toEqual({ id: made.id, object: "conversation.deleted", deleted: true });
    await expect(client.conversations.retrieve(made.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it("items: create, list in pages (limit, order, after), retrieve, delete; an assistant turn's tool calls each an item", async () => {
    const { id } = await client.conversations.create({});
    const added = await client.conversations.items.create(id, {
      items: [
        { type: "message", role: "user", content: "one" },
        { type: "message", role: "assistant", content: "calling" },
        { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
        { type: "function_call", call_id: "c2", name: "g", arguments: "{}" },
        { type: "function_call_output", call_id: "c1", output: "out1" },
      ],
    });
    expect(added.data.map((i) => i.type)).toEqual([
      "message",
      "message",
      "function_call",
      "function_call",
      "function_call_output",
    ]);
    const ids = added.data.map((i) => i.id!);
    expect(new Set(ids).size).toBe(5);

    const page1 = await client.conversations.items.list(id, { limit: 2, order: "asc" });
    expect(page1.data.map((i) => i.id)).toEqual(ids.slice(0, 2));
    expect(page1.has_more).toBe(true);
    const page2 = await client.conversations.items.list(id, { limit: 2, order: "asc", after: ids[1]! });
    expect(page2.data.map((i) => i.id)).toEqual(ids.slice(2, 4));
    const all: string[] = [];
    for await (const item of client.conversations.items.list(id, { limit: 2 })) all.push(item.id!);
    expect(all).toEqual([...ids].reverse());

    expect(await client.conversations.items.retrieve(ids[2]!, { conversation_id: id })).toMatchObject({
      type: "function_call",
      call_id: "c1",
      name: "f",
    });
    // Deleting one call of the turn leaves the other (and its id) as they were.
    await client.conversations.items.delete(ids[2]!, { conversation_id: id });
    const left = await client.conversations.items.list(id, { order: "asc" });
    expect(left.data.map((i) => i.id)).toEqual([ids[0], ids[1], ids[3], ids[4]]);
    await expect(client.conversations.items.retrieve(ids[2]!, { conversation_id: id })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );

    // The stored turns as the upstream is sent them.
    await client.responses.create({ model: "fake-model", input: "next", conversation: id });
    expect(lastMessages()).toEqual([
      { role: "user", content: "one" },
      {
        role: "assistant",
        content: "calling",
        tool_calls: [{ id: "c2", type: "function", function: { name: "g", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: "out1" },
      { role: "user", content: "next" },
    ]);
  });
});

describe("ownership and bad input", () => {
  it("another caller key gets 404 for responses, conversations and items, as for unknown ids", async () => {
    const response = await client.responses.create({ model: "fake-model", input: "mine" });
    const conversation = await client.conversations.create({
      items: [{ type: "message", role: "user", content: "mine" }],
    });
    const [item] = (await client.conversations.items.list(conversation.id)).data;
    const unknown = await failure(other.responses.retrieve(`resp_${"0".repeat(32)}`));
    const attempts = [
      () => other.responses.retrieve(response.id),
      () => other.responses.delete(response.id),
      () => other.responses.inputItems.list(response.id),
      () => other.responses.cancel(response.id),
      () => other.responses.create({ model: "fake-model", input: "x", previous_response_id: response.id }),
      () => other.responses.create({ model: "fake-model", input: "x", conversation: conversation.id }),
      () => other.conversations.retrieve(conversation.id),
      () => other.conversations.update(conversation.id, { metadata: { x: "y" } }),
      () => other.conversations.delete(conversation.id),
      () => other.conversations.items.list(conversation.id),
      () =>
        other.conversations.items.create(conversation.id, { items: [{ type: "message", role: "user", content: "x" }] }),
      () => other.conversations.items.retrieve(item!.id!, { conversation_id: conversation.id }),
      () => other.conversations.items.delete(item!.id!, { conversation_id: conversation.id }),
    ];
    for (const attempt of attempts) {
      const refused = await failure(attempt());
      expect(refused.status).toBe(404);
      expect(refused.type).toBe("not_found_error");
    }
    expect(unknown.status).toBe(404);
    // Untouched for its owner.
    expect((await client.responses.retrieve(response.id)).id).toBe(response.id);
    expect((await client.conversations.items.list(conversation.id)).data).toHaveLength(1);
    expect((await client.conversations.retrieve(conversation.id)).metadata).toEqual({});
  });

  it("malformed ids, oversized metadata and too many items: 400 naming the field, nothing stored", async () => {
    const before = (await chatV1("GET", "/conversations?page_size=100")).json.conversations.length;
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"]));
    const cases: [() => Promise<unknown>, string][] = [
      [() => client.conversations.create({ metadata: tooMany }), "metadata"],
      [() => client.conversations.create({ metadata: { ["k".repeat(65)]: "v" } }), "metadata"],
      [() => client.conversations.create({ metadata: { k: "v".repeat(513) } }), "metadata.k"],
      [
        () =>
          client.conversations.create({
            items: Array.from({ length: 21 }, () => ({
              type: "message" as const,
              role: "user" as const,
              content: "x",
            })),
          }),
        "items",
      ],
      [
        () =>
          client.conversations.create({
            items: [
              { type: "message", role: "user", content: "fine" },
              { type: "message", role: "nobody" as "user", content: "bad" },
            ],
          }),
        "items[1].role",
      ],
      [() => client.conversations.retrieve("conv_nope"), "conversation_id"],
      [() => client.responses.retrieve("resp_nope"), "response_id"],
      [
        () => client.responses.create({ model: "fake-model", input: "x", previous_response_id: "resp_x" }),
        "previous_response_id",
      ],
      [() => client.responses.create({ model: "fake-model", input: "x", conversation: "nope" }), "conversation"],
    ];
    for (const [call, param] of cases) {
      const refused = await failure(call());
      expect(refused.status, param).toBe(400);
      expect(refused.param, param).toBe(param);
    }
    expect((await chatV1("GET", "/conversations?page_size=100")).json.conversations.length).toBe(before);

    const { id } = await client.conversations.create({ items: [{ type: "message", role: "user", content: "one" }] });
    const refused = await failure(
      client.conversations.items.create(id, {
        items: [
          { type: "message", role: "user", content: "two" },
          { type: "function_call_output", call_id: 5 as unknown as string, output: "x" },
        ],
      }),
    );
    expect(refused.param).toBe("items[1].call_id");
    expect((await client.conversations.items.list(id)).data).toHaveLength(1);
    expect((await failure(client.conversations.items.retrieve("msg_x", { conversation_id: id }))).param).toBe(
      "item_id",
    );
    expect((await failure(client.conversations.items.retrieve("msg_99", { conversation_id: id }))).status).toBe(404);
  });
});
