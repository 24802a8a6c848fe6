// Stored conversations over gRPC, in process with a temporary SQLite file: ConversationService's
// calls, and Chat with `conversation_id` (history sent before the new turn, turns stored, the reply
// stored when it ends, incomplete when cut, one stream at a time, trimming, ownership).
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  ConversationServiceClient,
  type CreateConversationRequest,
  type CreateConversationResponse,
  type GetConversationResponse,
  type ListConversationsResponse,
  type UpdateConversationResponse,
} from "../../src/gen/chat/v1/chat.js";
import { collect, openStream, startHarness, type Harness } from "../support/grpc.js";
import { type RecordedRequest, type Reply, wire } from "../support/fake-model.js";
import { hold, never } from "../support/gates.js";

let harness: Harness | undefined;
let conversations: ConversationServiceClient;
afterEach(async () => {
  conversations?.close();
  await harness?.close();
  harness = undefined;
});

async function start(options: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  harness = await startHarness(options);
  conversations = new ConversationServiceClient(`127.0.0.1:${harness.gateway.port}`, credentials.createInsecure());
  return harness;
}

type UnaryMethod = (
  request: object,
  metadata: Metadata,
  callback: (error: ServiceError | null, response: unknown) => void,
) => unknown;

/** A unary call of ConversationService as a promise: its response, or the ServiceError. */
function unary<Res>(method: keyof Responses, request: object, metadata = new Metadata()): Promise<Res> {
  const call = conversations[method] as unknown as UnaryMethod;
  return new Promise((resolve, reject) =>
    call.call(conversations, request, metadata, (error, response) =>
      error ? reject(error) : resolve(response as Res),
    ),
  );
}

interface Responses {
  createConversation: CreateConversationResponse;
  getConversation: GetConversationResponse;
  listConversations: ListConversationsResponse;
  updateConversation: UpdateConversationResponse;
  deleteConversation: object;
}

const create = (request: Partial<CreateConversationRequest> = {}, metadata?: Metadata) =>
  unary<CreateConversationResponse>(
    "createConversation",
    { title: "", systemPrompt: "", metadata: undefined, ...request },
    metadata,
  ).then((r) => r.conversation?.id ?? "");
const get = (id: string, metadata?: Metadata) =>
  unary<Responses["getConversation"]>("getConversation", { id }, metadata);
const roles = (got: GetConversationResponse) => got.turns.map((t) => t.role);
const sentMessages = (h: Harness, index: number) =>
  (h.upstream.requests[index]?.body.messages ?? []).map((m) => {
    const { role, content, tool_calls, tool_call_id } = m as Record<string, unknown>;
    return {
      role,
      content,
      ...(tool_calls !== undefined && { tool_calls }),
      ...(tool_call_id !== undefined && { tool_call_id }),
    };
  });

describe("stored conversations", () => {
  it("round trip: the second request carries the first exchange, and the conversation has every turn", async () => {
    const h = await start({
      upstream: { reply: (r: RecordedRequest): Reply => ({ tokens: r.index === 0 ? ["Hi ", "Ada."] : ["42."] }) },
    });
    const id = await create({ title: "first", systemPrompt: "Be brief." });
    const first = await collect(h.client, { conversationId: id, text: "I am Ada." });
    expect(first.code).toBe(status.OK);
    expect(first.text).toBe("Hi Ada.");
    const second = await collect(h.client, { conversationId: id, text: "What is 6×7?" });
    expect(second.code).toBe(status.OK);

    expect(sentMessages(h, 1)).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "I am Ada." },
      { role: "assistant", content: "Hi Ada." },
      { role: "user", content: "What is 6×7?" },
    ]);
    const got = await get(id);
    expect(got.conversation).toMatchObject({ id, title: "first", systemPrompt: "Be brief." });
    expect(got.turns.map((t) => [t.seq, t.role, t.content])).toEqual([
      [1, "user", "I am Ada."],
      [2, "assistant", "Hi Ada."],
      [3, "user", "What is 6×7?"],
      [4, "assistant", "42."],
    ]);
    expect(got.turns[3]).toMatchObject({ model: "fake-model", finishReason: "stop", incompleteReason: "" });
  });

  it("stores tool calls and tool results, and sends them back as the upstream expects them; reasoning is stored, not resent", async () => {
    const h = await start({
      upstream: {
        reply: (r: RecordedRequest): Reply =>
          r.index === 0
            ? {
                deltas: [
                  wire.reasoning("Need the weather."),
                  wire.toolCall(0, "call_paris", "get_weather", '{"city":'),
                  wire.toolArgs(0, '"Paris"}'),
                ],
                tokens: [],
                finishReason: "tool_calls",
              }
            : { tokens: ["18°C."] },
      },
    });
    const id = await create();
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
    await collect(h.client, { conversationId: id, text: "Weather in Paris?", tools });
    const second = await collect(h.client, {
      conversationId: id,
      messages: [{ role: "tool", toolCallId: "call_paris", content: "18°C" }],
      tools,
    });
    expect(second.code).toBe(status.OK);

    expect(sentMessages(h, 1)).toEqual([
      { role: "user", content: "Weather in Paris?" },
      {
        role: "assistant",
        // OpenAI's own shape for a turn that is only tool calls.
        content: null,
        tool_calls: [
          { id: "call_paris", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
        ],
      },
      { role: "tool", content: "18°C", tool_call_id: "call_paris" },
    ]);
    const got = await get(id);
    expect(roles(got)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(got.turns[1]).toMatchObject({
      reasoning: "Need the weather.",
      finishReason: "tool_calls",
      toolCalls: [{ id: "call_paris", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }],
    });
  });

  it("a cancelled reply is stored with what was streamed, marked incomplete; a second stream meanwhile is refused as busy", async () => {
    const h = await start({
      upstream: {
        reply: (): Reply => ({ tokens: ["Once upon", " a time"], gate: (i) => (i === 1 ? never : undefined) }),
      },
    });
    const id = await create();
    const stream = openStream(h, { conversationId: id, text: "A story?" });
    await stream.until((r) => r.some((m) => m.event?.$case === "delta"));

    const busy = await collect(h.client, { conversationId: id, text: "Hello?" });
    expect(busy.code).toBe(status.FAILED_PRECONDITION);
    expect(busy.details).toBe("conversation busy: another stream on it has not ended");
    expect(h.upstream.requests).toHaveLength(1);

    stream.call.cancel();
    expect((await stream.ended).code).toBe(status.CANCELLED);
    // The reply is written when the gateway has seen the cancel: wait for it, then read it.
    await vi.waitFor(async () => expect((await get(id)).turns).toHaveLength(2));
    const reply = (await get(id)).turns[1]!;
    expect(reply).toMatchObject({ role: "assistant", content: "Once upon", incompleteReason: "cancelled" });
  });

  it("a stream longer than CONVERSATION_LEASE_MS keeps its conversation: each flush renews the lease and writes the reply so far", async () => {
    const h = await start({
      env: { CONVERSATION_LEASE_MS: "300", CONVERSATION_FLUSH_MS: "100" },
      upstream: {
        // The first reply stays open; a second stream, were it let in, would be answered at once.
        reply: (r: RecordedRequest): Reply =>
          r.index === 0
            ? { tokens: ["Once upon", " a time"], gate: (i) => (i === 1 ? never : undefined) }
            : { tokens: ["ok"] },
      },
    });
    const id = await create();
    const stream = openStream(h, { conversationId: id, text: "A story?" });
    await stream.until((r) => r.some((m) => m.event?.$case === "delta"));
    // Three lease terms with nothing from the upstream: only the flushes keep the lease alive.
    await sleep(900);
    expect((await collect(h.client, { conversationId: id, text: "Hello?" })).code).toBe(status.FAILED_PRECONDITION);
    expect((await get(id)).turns[1]).toMatchObject({ content: "Once upon", incompleteReason: "streaming" });
    stream.call.cancel();
    await stream.ended;
  });

  it("trims the oldest turns beyond MAX_HISTORY_TURNS, keeps the system prompt, and the finish says how many", async () => {
    const h = await start({ env: { MAX_HISTORY_TURNS: "2" }, upstream: { reply: (): Reply => ({ tokens: ["ok"] }) } });
    const id = await create({ systemPrompt: "Sys." });
    await collect(h.client, { conversationId: id, text: "one" });
    await collect(h.client, { conversationId: id, text: "two" });
    const third = await collect(h.client, { conversationId: id, text: "three" });
    const finish = third.responses.at(-1)?.event;
    expect(finish?.$case === "finish" && finish.value.historyTrimmedTurns).toBe(2);
    expect(sentMessages(h, 2)).toEqual([
      { role: "system", content: "Sys." },
      { role: "user", content: "two" },
      { role: "assistant", content: "ok" },
      { role: "user", content: "three" },
    ]);
  });

  it("belongs to the caller key that created it: another key gets NOT_FOUND, as for an id that does not exist", async () => {
    const h = await start({ env: { CALLER_KEYS: "ada ada-key-0123456789abcdef, bob bob-key-0123456789abcdef" } });
    const as = (key: string) => {
      const metadata = new Metadata();
      metadata.set("authorization", `Bearer ${key}`);
      return metadata;
    };
    const ada = as("ada-key-0123456789abcdef");
    const bob = as("bob-key-0123456789abcdef");
    const id = await create({ title: "ada's" }, ada);

    const missing = "00000000-0000-4000-8000-000000000000";
    for (const [target, metadata] of [
      [id, bob],
      [missing, ada],
    ] as const) {
      await expect(get(target, metadata)).rejects.toMatchObject({
        code: status.NOT_FOUND,
        details: "conversation not found",
      });
    }
    const chat = await collect(h.client, { conversationId: id, text: "hi" }, bob);
    expect([chat.code, chat.details]).toEqual([status.NOT_FOUND, "conversation not found"]);
    await expect(unary<Responses["deleteConversation"]>("deleteConversation", { id }, bob)).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
    expect(
      (await unary<Responses["listConversations"]>("listConversations", { pageSize: 0, pageToken: "" }, bob))
        .conversations,
    ).toEqual([]);
    expect((await get(id, ada)).conversation?.title).toBe("ada's");
  });

  it("lists newest first a page at a time, renames, and deletes for good (turns too)", async () => {
    const h = await start();
    const ids: string[] = [];
    for (const title of ["a", "b", "c"]) ids.push(await create({ title }));
    const page1 = await unary<Responses["listConversations"]>("listConversations", { pageSize: 2, pageToken: "" });
    const page2 = await unary<Responses["listConversations"]>("listConversations", {
      pageSize: 2,
      pageToken: page1.nextPageToken,
    });
    expect([...page1.conversations, ...page2.conversations].map((c) => c.title)).toEqual(["c", "b", "a"]);
    expect(page2.nextPageToken).toBe("");

    const renamed = await unary<Responses["updateConversation"]>("updateConversation", {
      id: ids[0]!,
      title: "renamed",
    });
    expect(renamed.conversation?.title).toBe("renamed");

    await collect(h.client, { conversationId: ids[0]!, text: "hi" });
    await unary<Responses["deleteConversation"]>("deleteConversation", { id: ids[0]! });
    await expect(get(ids[0]!)).rejects.toMatchObject({ code: status.NOT_FOUND });
    const chat = await collect(h.client, { conversationId: ids[0]!, text: "still there?" });
    expect(chat.code).toBe(status.NOT_FOUND);
  });

  it("refuses bad input naming the field", async () => {
    const h = await start();
    await expect(get("not-an-id")).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^id: /),
    });
    await expect(create({ title: "x".repeat(201) })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: "title: at most 200 characters",
    });
    await expect(create({ metadata: { big: "x".repeat(17 * 1024) } })).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^metadata: /),
    });
    await expect(
      unary<Responses["listConversations"]>("listConversations", { pageSize: 0, pageToken: "garbage" }),
    ).rejects.toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringMatching(/^page_token: /),
    });
    const chat = await collect(h.client, { conversationId: "nope", text: "hi" });
    expect([chat.code, chat.details]).toEqual([
      status.INVALID_ARGUMENT,
      "conversation_id: must be a conversation's id (a UUID)",
    ]);
  });
});

describe("a resumable stream on a stored conversation", () => {
  it("stores the whole reply although its caller left mid-stream (the generation outlives the call)", async () => {
    const { promise: gate, release } = hold();
    const h = await start({
      upstream: {
        reply: () => ({ tokens: ["Once ", "upon ", "a ", "time."], gate: (i) => (i === 2 ? gate : undefined) }),
      },
    });
    const id = await create();
    const stream = openStream(h, { conversationId: id, text: "A story?", resumable: true });
    await stream.received(2);
    stream.call.cancel();
    await stream.ended;
    await sleep(200);
    release();
    await vi.waitFor(async () => {
      const got = await get(id);
      expect(got.turns.map((t) => [t.role, t.content])).toEqual([
        ["user", "A story?"],
        ["assistant", "Once upon a time."],
      ]);
    });
  });
});
