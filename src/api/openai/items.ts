// Stored turns ↔ the OpenAI API's items (`/v1/conversations/{id}/items`, a response's
// `input_items`), and the OpenAI ids of stored things. Pure.
//
// Item ids are derived, not stored: a turn is the unit of storage (Chat's history writes one
// assistant turn per reply, its text, reasoning and tool calls together), and an item names a turn
// and the part of it: `msg_<seq>` (the turn's message), `rs_<seq>` (an assistant turn's reasoning),
// `fc_<seq>_<call>` (one of its tool calls, `<call>` the call id in base64url, so it stays the same
// when another call of the turn is deleted), `fco_<seq>` (a tool result). An assistant turn becomes
// its reasoning item, its message item (when it has text) and one function_call item per call, in
// that order, as the model wrote them.
import type { ChatMessage } from "../../contract/chat.js";

/** A stored turn, as the conversation store keeps it (its Turn, structurally). */
export interface ItemTurn {
  seq: number;
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
  reasoning?: string;
  toolCalls?: { id: string; name: string; arguments: string }[];
  toolCallId?: string;
  incompleteReason?: string;
}

/** A turn as it is appended (no seq yet). */
export type NewItemTurn = Omit<ItemTurn, "seq">;

const CONVERSATION_ID = /^conv_([0-9a-f]{8})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{4})([0-9a-f]{12})$/;
const RESPONSE_ID = /^resp_[0-9a-f]{32}$/;
const ITEM_ID = /^(msg|rs|fc|fco)_([1-9]\d{0,14})(?:_([A-Za-z0-9_-]+))?$/;

/** The OpenAI id of a stored conversation (a UUID): `conv_` and its hex. */
export function openAIConversationId(uuid: string): string {
  return `conv_${uuid.replaceAll("-", "")}`;
}

/** The store's id (a UUID) for an OpenAI conversation id, or undefined when it is not one. */
export function conversationUuid(id: string): string | undefined {
  const m = CONVERSATION_ID.exec(id);
  return m ? m.slice(1).join("-") : undefined;
}

export function isResponseId(id: string): boolean {
  return RESPONSE_ID.test(id);
}

export type ItemAddress = { kind: "msg" | "rs" | "fco"; seq: number } | { kind: "fc"; seq: number; callId: string };

/** Which turn, and which part of it, an item id names; undefined when it is not an item id. */
export function parseItemId(id: string): ItemAddress | undefined {
  const m = ITEM_ID.exec(id);
  if (!m) return undefined;
  const seq = Number(m[2]);
  if (m[1] === "fc") {
    if (m[3] === undefined) return undefined;
    return { kind: "fc", seq, callId: Buffer.from(m[3], "base64url").toString("utf8") };
  }
  return m[3] === undefined ? { kind: m[1] as "msg" | "rs" | "fco", seq } : undefined;
}

function fcId(seq: number, callId: string): string {
  return `fc_${seq}_${Buffer.from(callId, "utf8").toString("base64url")}`;
}

/** A turn's items, in order. */
export function itemsOfTurn(turn: ItemTurn): Record<string, unknown>[] {
  const status = turn.incompleteReason ? "incomplete" : "completed";
  switch (turn.role) {
    case "system":
    case "developer":
    case "user":
      return [
        {
          id: `msg_${turn.seq}`,
          type: "message",
          status: "completed",
          role: turn.role,
          content: [{ type: "input_text", text: turn.content }],
        },
      ];
    case "tool":
      return [
        {
          id: `fco_${turn.seq}`,
          type: "function_call_output",
          status: "completed",
          call_id: turn.toolCallId ?? "",
          output: turn.content,
        },
      ];
    case "assistant":
      return [
        ...(turn.reasoning
          ? [
              {
                id: `rs_${turn.seq}`,
                type: "reasoning",
                status,
                summary: [],
                content: [{ type: "reasoning_text", text: turn.reasoning }],
              },
            ]
          : []),
        ...(turn.content || !turn.toolCalls?.length
          ? [
              {
                id: `msg_${turn.seq}`,
                type: "message",
                status,
                role: "assistant",
                content: [{ type: "output_text", text: turn.content, annotations: [], logprobs: [] }],
              },
            ]
          : []),
        ...(turn.toolCalls ?? []).map((call) => ({
          id: fcId(turn.seq, call.id),
          type: "function_call",
          status,
          call_id: call.id,
          name: call.name,
          arguments: call.arguments,
        })),
      ];
  }
}

/** The turn with the item `address` names taken out; undefined when nothing of it is left. */
export function withoutItem(turn: ItemTurn, address: ItemAddress): NewItemTurn | undefined {
  const { seq: _, ...rest } = turn;
  if (turn.role !== "assistant") return undefined;
  let edited: NewItemTurn = rest;
  if (address.kind === "msg") edited = { ...rest, content: "" };
  if (address.kind === "rs") edited = { ...rest, reasoning: "" };
  if (address.kind === "fc")
    edited = { ...rest, toolCalls: (rest.toolCalls ?? []).filter((c) => c.id !== address.callId) };
  const left = edited.content || edited.reasoning || edited.toolCalls?.length;
  return left ? edited : undefined;
}

/** The item `id` among the turn's, or undefined. */
export function itemOfTurn(turn: ItemTurn, id: string): Record<string, unknown> | undefined {
  return itemsOfTurn(turn).find((item) => item.id === id);
}

/**
 * Chat's messages (an input decoded by responses-request.ts) as turns to store: a user message's
 * text parts joined (images are not stored, as for Chat's conversations).
 */
export function turnsOfMessages(messages: ChatMessage[]): NewItemTurn[] {
  return messages.map((m): NewItemTurn => {
    const role = m.role as ItemTurn["role"];
    if (role === "assistant")
      return {
        role,
        content: m.content,
        ...(m.toolCalls.length > 0 && {
          toolCalls: m.toolCalls.map((c) => ({
            id: c.id,
            name: c.function?.name ?? "",
            arguments: c.function?.arguments ?? "",
          })),
        }),
      };
    if (role === "tool") return { role, content: m.content, toolCallId: m.toolCallId };
    const texts = m.parts.flatMap((p) => (p.type === "text" ? [p.text] : []));
    return { role, content: [m.content, ...texts].filter((t) => t !== "").join("\n") };
  });
}

/** OpenAI's list object over items (`first_id`, `last_id`, `has_more`). */
export function itemList(data: Record<string, unknown>[], hasMore: boolean) {
  return {
    object: "list",
    data,
    first_id: (data[0]?.id as string | undefined) ?? null,
    last_id: (data.at(-1)?.id as string | undefined) ?? null,
    has_more: hasMore,
  };
}

/**
 * A page of items: `order` "asc" (oldest first) or "desc", those after the item `after` in that
 * order, `limit` at most. Undefined when `after` is not among them.
 */
export function pageOf(
  items: Record<string, unknown>[],
  order: "asc" | "desc",
  limit: number,
  after: string,
): ReturnType<typeof itemList> | undefined {
  const ordered = order === "asc" ? items : [...items].reverse();
  let start = 0;
  if (after !== "") {
    const at = ordered.findIndex((item) => item.id === after);
    if (at < 0) return undefined;
    start = at + 1;
  }
  const page = ordered.slice(start, start + limit);
  return itemList(page, start + limit < ordered.length);
}
