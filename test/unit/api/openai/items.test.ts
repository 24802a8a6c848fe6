// The stored side's translators, byte for byte: turns → OpenAI items and back, item ids, the ids of
// conversations, lists and pages, metadata limits, and what a stored `response` object says.
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  conversationUuid,
  itemsOfTurn,
  openAIConversationId,
  pageOf,
  parseItemId,
  turnsOfMessages,
  withoutItem,
} from "../../../../src/api/openai/items.js";
import { ResponseObjectPresenter } from "../../../../src/api/openai/responses-events.js";
import { decodeResponseRequest } from "../../../../src/api/openai/responses-request.js";
import { conversationObject, metadataOf } from "../../../../src/api/openai/stored.js";
import { inputOf } from "../../../../src/api/openai/responses-request.js";

describe("turns as items", () => {
  it("writes each role's turn as OpenAI's items, an assistant turn as reasoning, message, then one item per call", () => {
    expect(itemsOfTurn({ seq: 1, role: "user", content: "hi" })).toEqual([
      {
        id: "msg_1",
        type: "message",
        status: "completed",
        role: "user",
        content: [{ type: "input_text", text: "hi" }],
      },
    ]);
    expect(itemsOfTurn({ seq: 4, role: "tool", content: "18°C", toolCallId: "call_1" })).toEqual([
      { id: "fco_4", type: "function_call_output", status: "completed", call_id: "call_1", output: "18°C" },
    ]);
    expect(
      JSON.stringify(
        itemsOfTurn({
          seq: 3,
          role: "assistant",
          content: "Checking.",
          reasoning: "hmm",
          toolCalls: [
            { id: "call_1", name: "f", arguments: "{}" },
            { id: "call/2", name: "g", arguments: '{"a":1}' },
          ],
        }),
      ),
    ).toBe(
      '[{"id":"rs_3","type":"reasoning","status":"completed","summary":[],"content":[{"type":"reasoning_text","text":"hmm"}]},' +
        '{"id":"msg_3","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking.","annotations":[],"logprobs":[]}]},' +
        '{"id":"fc_3_Y2FsbF8x","type":"function_call","status":"completed","call_id":"call_1","name":"f","arguments":"{}"},' +
        '{"id":"fc_3_Y2FsbC8y","type":"function_call","status":"completed","call_id":"call/2","name":"g","arguments":"{\\"a\\":1}"}]',
    );
    // A reply cut short: its items are incomplete; tool calls alone have no message item.
    expect(
      itemsOfTurn({
        seq: 5,
        role: "assistant",
        content: "",
        incompleteReason: "cancelled",
        toolCalls: [{ id: "c", name: "f", arguments: "" }],
      }).map((i) => [i.type, i.status]),
    ).toEqual([["function_call", "incomplete"]]);
  });

  it("parses the ids it writes, and nothing else", () => {
    expect(parseItemId("msg_12")).toEqual({ kind: "msg", seq: 12 });
    expect(parseItemId("fco_3")).toEqual({ kind: "fco", seq: 3 });
    expect(parseItemId("fc_3_Y2FsbC8y")).toEqual({ kind: "fc", seq: 3, callId: "call/2" });
    for (const bad of ["msg_0", "msg_x", "fc_3", "msg_1_x", "item_1", "msg_1234567890123456", ""]) {
      expect(parseItemId(bad), bad).toBeUndefined();
    }
  });

  it("takes one item out of an assistant turn, leaving the others; nothing left is a deleted turn", () => {
    const turn = {
      seq: 2,
      role: "assistant" as const,
      content: "text",
      reasoning: "r",
      toolCalls: [
        { id: "a", name: "f", arguments: "{}" },
        { id: "b", name: "g", arguments: "{}" },
      ],
    };
    expect(withoutItem(turn, { kind: "fc", seq: 2, callId: "a" })).toEqual({
      role: "assistant",
      content: "text",
      reasoning: "r",
      toolCalls: [{ id: "b", name: "g", arguments: "{}" }],
    });
    expect(withoutItem(turn, { kind: "msg", seq: 2 })?.content).toBe("");
    expect(withoutItem(turn, { kind: "rs", seq: 2 })?.reasoning).toBe("");
    expect(withoutItem({ seq: 2, role: "assistant", content: "only" }, { kind: "msg", seq: 2 })).toBeUndefined();
    expect(withoutItem({ seq: 1, role: "user", content: "hi" }, { kind: "msg", seq: 1 })).toBeUndefined();
  });

  it("stores input items as turns: a call joins the assistant turn before it, a user's text parts joined", () => {
    const turns = turnsOfMessages(
      inputOf(
        [
          {
            role: "user",
            content: [
              { type: "input_text", text: "a" },
              { type: "input_text", text: "b" },
            ],
          },
          { type: "message", role: "assistant", content: "calling" },
          { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
          { type: "function_call_output", call_id: "c1", output: "out" },
        ],
        "items",
      ),
    );
    expect(turns).toEqual([
      { role: "user", content: "a\nb" },
      { role: "assistant", content: "calling", toolCalls: [{ id: "c1", name: "f", arguments: "{}" }] },
      { role: "tool", content: "out", toolCallId: "c1" },
    ]);
    expect(() => inputOf([{ role: "nobody", content: "x" }], "items")).toThrow(/^items\[0\]\.role: /);
  });
});

describe("lists, ids and metadata", () => {
  const items = ["a", "b", "c", "d", "e"].map((id) => ({ id }));

  it("pages as OpenAI's list: order, limit, after, first_id, last_id, has_more", () => {
    expect(pageOf(items, "asc", 2, "")).toEqual({
      object: "list",
      data: [{ id: "a" }, { id: "b" }],
      first_id: "a",
      last_id: "b",
      has_more: true,
    });
    expect(pageOf(items, "asc", 2, "d")).toEqual({
      object: "list",
      data: [{ id: "e" }],
      first_id: "e",
      last_id: "e",
      has_more: false,
    });
    expect(pageOf(items, "desc", 2, "d")?.data).toEqual([{ id: "c" }, { id: "b" }]);
    expect(pageOf([], "desc", 20, "")).toEqual({
      object: "list",
      data: [],
      first_id: null,
      last_id: null,
      has_more: false,
    });
    expect(pageOf(items, "asc", 2, "zz")).toBeUndefined();
  });

  it("maps a stored conversation's UUID to conv_ and back", () => {
    const uuid = "0193aabb-ccdd-7eef-8011-223344556677";
    expect(openAIConversationId(uuid)).toBe("conv_0193aabbccdd7eef8011223344556677");
    expect(conversationUuid("conv_0193aabbccdd7eef8011223344556677")).toBe(uuid);
    for (const bad of ["conv_0193", "conv_0193AABBCCDD7EEF8011223344556677", uuid, "conv_"])
      expect(conversationUuid(bad), bad).toBeUndefined();
    expect(
      conversationObject({
        id: uuid,
        metadata: { a: "1", n: 2, o: { x: true } },
        createdAt: new Date(1_700_000_000_500),
      }),
    ).toEqual({
      id: "conv_0193aabbccdd7eef8011223344556677",
      object: "conversation",
      created_at: 1_700_000_000,
      metadata: { a: "1", n: "2", o: '{"x":true}' },
    });
  });

  it("holds metadata to OpenAI's limits, naming the field", () => {
    expect(metadataOf({ k: "v" })).toEqual({ k: "v" });
    expect(metadataOf(undefined)).toBeUndefined();
    const pairs = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    expect(metadataOf(pairs(16))).toEqual(pairs(16));
    expect(() => metadataOf(pairs(17))).toThrow("metadata: at most 16 pairs");
    expect(metadataOf({ ["k".repeat(64)]: "v" })).toBeDefined();
    expect(() => metadataOf({ ["k".repeat(65)]: "v" })).toThrow("metadata: keys of at most 64 characters");
    expect(metadataOf({ k: "é".repeat(512) })).toBeDefined();
    expect(() => metadataOf({ k: "v".repeat(513) })).toThrow("metadata.k: at most 512 characters");
    expect(() => metadataOf({ k: 1 })).toThrow("metadata.k: must be a string");
    expect(() => metadataOf([])).toThrow("metadata: must be an object");
  });
});

describe("a stored response's object", () => {
  const echo = decodeResponseRequest(Buffer.from(JSON.stringify({ model: "m", input: "hi" }))).echo;

  it("says how it is kept (store, previous_response_id, conversation) and is what storage keeps", () => {
    const presenter = new ResponseObjectPresenter({
      model: "m",
      echo,
      id: "resp_1",
      now: () => 1_000_000,
      newId: (p) => `${p}_x`,
      storage: { store: true, previousResponseId: "resp_0", conversation: "conv_1" },
    });
    presenter.present({ event: { $case: "delta", value: { text: "Hi" } } } as never);
    const body = presenter.present({
      event: { $case: "finish", value: { finishReason: "stop", model: "up", usage: undefined } },
    } as never);
    const sent = JSON.parse(Buffer.from(body!.data).toString());
    expect(sent).toMatchObject({
      id: "resp_1",
      store: true,
      previous_response_id: "resp_0",
      conversation: { id: "conv_1" },
      status: "completed",
    });
    expect(presenter.final(status.OK, "")).toEqual(sent);
  });

  it("is failed, with the output so far, when the stream did not finish", () => {
    const presenter = new ResponseObjectPresenter({ model: "m", echo, id: "resp_2", storage: { store: true } });
    presenter.present({ event: { $case: "delta", value: { text: "Hal" } } } as never);
    const final = presenter.final(status.UNAVAILABLE, "upstream_cut");
    expect(final).toMatchObject({
      id: "resp_2",
      status: "failed",
      error: { code: "server_error", message: "upstream_cut" },
      output: [{ type: "message", content: [{ type: "output_text", text: "Hal" }] }],
      previous_response_id: null,
      store: true,
    });
    expect(final).not.toHaveProperty("conversation");
  });
});
