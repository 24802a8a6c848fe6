// The OpenAI API's stored side: `GET`/`DELETE /v1/responses/{id}`, its `input_items` and `cancel`,
// and the Conversations API (`/v1/conversations` and its items), over the conversation store's
// tables (the port below, which src/conversations/'s store is). Ownership is the store's: each
// query names the caller key, so another key's response, conversation or item is NOT_FOUND with
// the same message as an unknown id. Bad input is INVALID_ARGUMENT naming the field; a write is one
// transaction (nothing stored half).
import { Metadata, status, type handleServerStreamingCall, type handleUnaryCall } from "@grpc/grpc-js";
import type { ConversationHistory } from "../../chat/history.js";
import type {
  CancelResponseRequest,
  CreateConversationItemsRequest,
  DeleteConversationItemRequest,
  DeleteOpenAIConversationRequest,
  DeleteResponseRequest,
  HttpBody,
  ListConversationItemsRequest,
  ListResponseInputItemsRequest,
  RetrieveConversationItemRequest,
  RetrieveOpenAIConversationRequest,
  RetrieveResponseRequest,
  UpdateOpenAIConversationRequest,
} from "../../contract/chat.js";
import { jsonBody } from "./bodies.js";
import { fail, integer, isObject, optionalObject, parseBody, Problem } from "./fields.js";
import {
  conversationUuid,
  isResponseId,
  itemOfTurn,
  itemsOfTurn,
  openAIConversationId,
  pageOf,
  parseItemId,
  turnsOfMessages,
  withoutItem,
  type ItemTurn,
  type NewItemTurn,
} from "./items.js";
import { ResponseEventPresenter, type FinalResponse } from "./responses-events.js";
import type { AnyCall } from "../../chat/outbox.js";
import type { ChatService } from "../../chat/service.js";
import { optionsOfRow, running, streamIdOf } from "./background.js";
import { randomUUID } from "node:crypto";
import type { UpstreamEvent } from "../../upstream/events.js";
import { inputOf } from "./responses-request.js";

/** OpenAI's limits on metadata: 16 pairs, keys up to 64 characters, values up to 512. */
export const MAX_METADATA_PAIRS = 16;
export const MAX_METADATA_KEY_CHARS = 64;
export const MAX_METADATA_VALUE_CHARS = 512;
/** The most items one request may add (a create's initial items, or an items create), as OpenAI's. */
export const MAX_ITEMS_PER_REQUEST = 20;
const DEFAULT_LIST_LIMIT = 20;
const MAX_LIST_LIMIT = 100;

interface StoredConversation {
  id: string;
  metadata: Record<string, unknown> | undefined;
  createdAt: Date;
}

type EditOutcome<T> = { ok: true; value: T } | { ok: false; why: "not_found" | "busy" };

/** What these routes need of the conversation store (src/conversations/store.ts implements it). */
export interface OpenAIStore {
  create(conversation: {
    owner: string;
    title: string;
    systemPrompt: string;
    metadata: Record<string, unknown> | undefined;
    turns?: NewItemTurn[];
  }): Promise<StoredConversation>;
  get(owner: string, id: string): Promise<{ conversation: StoredConversation; turns: ItemTurn[] } | undefined>;
  setMetadata(owner: string, id: string, metadata: Record<string, unknown>): Promise<StoredConversation | undefined>;
  delete(owner: string, id: string): Promise<boolean>;
  append(owner: string, id: string, turns: NewItemTurn[]): Promise<EditOutcome<ItemTurn[]>>;
  editTurn(
    owner: string,
    id: string,
    seq: number,
    edit: (turn: ItemTurn) => NewItemTurn | undefined,
  ): Promise<EditOutcome<boolean>>;
  getResponse(
    owner: string,
    id: string,
  ): Promise<{ input: NewItemTurn[]; response: Record<string, unknown> } | undefined>;
  deleteResponse(owner: string, id: string): Promise<boolean>;
}

/** A response's own history and recorder (server/response-history.ts), for ChatService.serve. */
export interface ResponseHistoryOptions {
  responseId: string;
  store: boolean;
  previousResponseId?: string | undefined;
  /** The store's id of the conversation named. */
  conversationUuid?: string | undefined;
  /** The request's first message is `instructions`: put first, never stored as input. */
  hasInstructions: boolean;
  presenter: FinalResponse;
  /**
   * A background response: its row is written before the generation starts (`presenter.initial()`,
   * so a poll or a resume finds it at once) and rewritten as it ends; `presenter` is then one of its
   * own that `follow` feeds with every event (no reader may be there to see them).
   */
  background?: { follow(event: UpstreamEvent): void };
}

export interface OpenAIStorage {
  store: OpenAIStore;
  historyFor(options: ResponseHistoryOptions): ConversationHistory;
  /** The caller key's name for a call's metadata ("anonymous" with caller keys off). */
  ownerOf(metadata: Metadata): string;
  onStoreError(operation: string, error: unknown): void;
}

class Refusal extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

const invalid = (message: string) => new Refusal(status.INVALID_ARGUMENT, message);
const responseNotFound = (id: string) => new Refusal(status.NOT_FOUND, `No response with id '${id}' found.`);
const conversationNotFound = (id: string) => new Refusal(status.NOT_FOUND, `No conversation with id '${id}' found.`);
const itemNotFound = (id: string) => new Refusal(status.NOT_FOUND, `No item with id '${id}' found.`);
const busy = () =>
  new Refusal(status.FAILED_PRECONDITION, "conversation busy: a response or Chat stream on it has not ended");

/** How long a cancel waits for the generation to write its row as cancelled, and how often it looks. */
const CANCEL_WAIT_MS = 2_000;
const CANCEL_POLL_MS = 25;

export function storedHandlers(storage: OpenAIStorage, chat: Pick<ChatService, "resume" | "cancel">) {
  const { store } = storage;

  /** A unary handler: its JSON answer, or the refusal, or UNAVAILABLE when the store failed. */
  function unary<Req>(
    operation: string,
    handle: (request: Req, owner: string) => Promise<unknown>,
  ): handleUnaryCall<Req, HttpBody> {
    return (call, callback) => {
      run(operation, () => handle(call.request, storage.ownerOf(call.metadata))).then((outcome) =>
        "error" in outcome ? callback(outcome.error) : callback(null, jsonBody(outcome.value)),
      );
    };
  }

  async function run(operation: string, handle: () => Promise<unknown>) {
    try {
      return { value: await handle() };
    } catch (error) {
      if (error instanceof Refusal)
        return { error: { code: error.code, details: error.message, metadata: new Metadata() } };
      if (error instanceof Problem)
        return { error: { code: status.INVALID_ARGUMENT, details: error.message, metadata: new Metadata() } };
      storage.onStoreError(operation, error);
      return {
        error: { code: status.UNAVAILABLE, details: "conversation store unavailable", metadata: new Metadata() },
      };
    }
  }

  async function ownedResponse(owner: string, id: string) {
    if (!isResponseId(id)) throw invalid("response_id: must be a response's id (resp_ and 32 hex digits)");
    return (await store.getResponse(owner, id)) ?? Promise.reject(responseNotFound(id));
  }

  async function ownedConversation(owner: string, id: string) {
    const uuid = uuidOf(id);
    const found = await store.get(owner, uuid);
    if (!found) throw conversationNotFound(id);
    return { ...found, uuid };
  }

  const retrieveResponse: handleServerStreamingCall<RetrieveResponseRequest, HttpBody> = (call) => {
    const request = call.request;
    const owner = storage.ownerOf(call.metadata);
    run("get_response", async () => {
      if (request.include.length > 0) throw invalid("include: extra output is not available");
      const { response } = await ownedResponse(owner, request.responseId);
      if (request.stream !== true) return { row: response, after: undefined };
      if (response.background !== true) throw invalid("stream: only background responses can be streamed again");
      const after = request.startingAfter ?? -1;
      if (after < -1) throw invalid("starting_after: must be a sequence number (0 or more)");
      return { row: response, after };
    }).then((outcome) => {
      if ("error" in outcome) {
        call.emit("error", outcome.error);
        return;
      }
      const { row, after } = outcome.value as { row: Record<string, unknown>; after: number | undefined };
      if (after === undefined) {
        call.write(jsonBody(row));
        call.end();
        return;
      }
      // The stream's events from its first, re-presented; those up to `starting_after` not written (background.ts).
      const who = { caller: owner, requestId: requestIdOf(call.metadata) };
      const presenter = new ResponseEventPresenter(optionsOfRow(row, after));
      const notFound = running(row)
        ? `No events of response '${request.responseId}' are kept here: its generation was lost, or runs on another replica (replicas share them with REDIS_URL).`
        : `The events of response '${request.responseId}' are no longer kept: its retention window passed. Retrieve it without stream for the response itself.`;
      chat
        .resume(call as AnyCall, who, streamIdOf(request.responseId), 0, presenter, notFound)
        .catch((error: unknown) => storage.onStoreError("resume_response", error));
    });
  };

  /** Stops a running background response; resolves with its row once it says how it ended (or as it is after the wait). */
  async function cancelRunning(owner: string, id: string, response: Record<string, unknown>) {
    await chat.cancel(streamIdOf(id), owner);
    // The generation writes its row as it stops (here or on another replica): wait for it, briefly.
    for (let waited = 0; waited < CANCEL_WAIT_MS; waited += CANCEL_POLL_MS) {
      await new Promise((resolve) => setTimeout(resolve, CANCEL_POLL_MS));
      const now = await store.getResponse(owner, id);
      if (now === undefined || !running(now.response)) return now?.response;
    }
    return response;
  }

  return {
    retrieveResponse,

    deleteResponse: unary("delete_response", async (request: DeleteResponseRequest, owner) => {
      const id = request.responseId;
      if (!isResponseId(id)) throw invalid("response_id: must be a response's id (resp_ and 32 hex digits)");
      // A background response still running is stopped first: nothing generates for a deleted response.
      const kept = await store.getResponse(owner, id);
      if (kept !== undefined && running(kept.response)) await cancelRunning(owner, id, kept.response);
      if (!(await store.deleteResponse(owner, id))) throw responseNotFound(id);
      return { id, object: "response", deleted: true };
    }),

    cancelResponse: unary("cancel_response", async (request: CancelResponseRequest, owner) => {
      const { response } = await ownedResponse(owner, request.responseId);
      if (response.background !== true) throw invalid("Only responses created with background=true can be cancelled.");
      // A finished one is answered as it is, as OpenAI does.
      if (!running(response)) return response;
      return (
        (await cancelRunning(owner, request.responseId, response)) ??
        Promise.reject(responseNotFound(request.responseId))
      );
    }),

    listResponseInputItems: unary("input_items", async (request: ListResponseInputItemsRequest, owner) => {
      const { limit, order } = listOptions(request);
      const { input } = await ownedResponse(owner, request.responseId);
      // A response's input has no seq of its own: its place in the input is the item's number.
      const items = input.flatMap((turn, i) => itemsOfTurn({ ...turn, seq: i + 1 }));
      return (
        pageOf(items, order, limit, request.after) ??
        Promise.reject(invalid(`after: no item '${request.after}' in this list`))
      );
    }),

    createOpenAiConversation: unary("create", async (request: HttpBody, owner) => {
      const body = bodyOf(request);
      const metadata = metadataOf(body.metadata);
      const turns = itemsToTurns(body.items);
      const conversation = await store.create({ owner, title: "", systemPrompt: "", metadata, turns });
      return conversationObject(conversation);
    }),

    retrieveOpenAiConversation: unary("get", async (request: RetrieveOpenAIConversationRequest, owner) => {
      return conversationObject((await ownedConversation(owner, request.conversationId)).conversation);
    }),

    updateOpenAiConversation: unary("set_metadata", async (request: UpdateOpenAIConversationRequest, owner) => {
      const body = bodyOf(request.body);
      if (body.metadata === undefined) fail("metadata", "required");
      const metadata = metadataOf(body.metadata) ?? {};
      const uuid = uuidOf(request.conversationId);
      const updated = await store.setMetadata(owner, uuid, metadata);
      if (!updated) throw conversationNotFound(request.conversationId);
      return conversationObject(updated);
    }),

    deleteOpenAiConversation: unary("delete", async (request: DeleteOpenAIConversationRequest, owner) => {
      const id = request.conversationId;
      const uuid = uuidOf(id);
      if (!(await store.delete(owner, uuid))) throw conversationNotFound(id);
      return { id, object: "conversation.deleted", deleted: true };
    }),

    createConversationItems: unary("append", async (request: CreateConversationItemsRequest, owner) => {
      const id = request.conversationId;
      const uuid = uuidOf(id);
      const body = bodyOf(request.body);
      if (body.items === undefined) fail("items", "required");
      const turns = itemsToTurns(body.items);
      if (turns.length === 0) fail("items", "at least one item");
      const appended = await store.append(owner, uuid, turns);
      if (!appended.ok) throw appended.why === "busy" ? busy() : conversationNotFound(id);
      const items = appended.value.flatMap(itemsOfTurn);
      return pageOf(items, "asc", items.length, "");
    }),

    listConversationItems: unary("list_items", async (request: ListConversationItemsRequest, owner) => {
      const { limit, order } = listOptions(request);
      const { turns } = await ownedConversation(owner, request.conversationId);
      const items = turns.flatMap(itemsOfTurn);
      return (
        pageOf(items, order, limit, request.after) ??
        Promise.reject(invalid(`after: no item '${request.after}' in this list`))
      );
    }),

    retrieveConversationItem: unary("get_item", async (request: RetrieveConversationItemRequest, owner) => {
      const address = parseItemId(request.itemId);
      if (!address) throw invalid("item_id: not an item's id (msg_, rs_, fc_ or fco_ as the list gives them)");
      const { turns } = await ownedConversation(owner, request.conversationId);
      const turn = turns.find((t) => t.seq === address.seq);
      return (turn && itemOfTurn(turn, request.itemId)) ?? Promise.reject(itemNotFound(request.itemId));
    }),

    deleteConversationItem: unary("delete_item", async (request: DeleteConversationItemRequest, owner) => {
      const address = parseItemId(request.itemId);
      if (!address) throw invalid("item_id: not an item's id (msg_, rs_, fc_ or fco_ as the list gives them)");
      const { uuid, conversation } = await ownedConversation(owner, request.conversationId);
      let found = false;
      const edited = await store.editTurn(owner, uuid, address.seq, (turn) => {
        found = itemOfTurn(turn, request.itemId) !== undefined;
        // Not this turn's item: the turn is written back as it was.
        if (!found) return turn;
        return withoutItem(turn, address);
      });
      if (!edited.ok) throw edited.why === "busy" ? busy() : conversationNotFound(request.conversationId);
      if (!edited.value || !found) throw itemNotFound(request.itemId);
      return conversationObject(conversation);
    }),
  };
}

/** The request id Envoy gave the call (a new one without it), for a resumed stream's metadata. */
function requestIdOf(metadata: Metadata): string {
  return String(metadata.get("x-request-id")[0] ?? "").slice(0, 128) || randomUUID();
}

/** The store's id for a conversation id in the path, or the 400 naming it. */
function uuidOf(id: string): string {
  const uuid = conversationUuid(id);
  if (!uuid) throw invalid("conversation_id: must be a conversation's id (conv_...)");
  return uuid;
}

function bodyOf(request: HttpBody | undefined): Record<string, unknown> {
  if (request === undefined || request.data.length === 0) return {};
  const body = parseBody(request.data);
  if (typeof body === "string") throw invalid(body);
  return body;
}

/** OpenAI's metadata: up to 16 pairs of strings, keys up to 64 characters, values up to 512. */
export function metadataOf(value: unknown): Record<string, string> | undefined {
  const metadata = optionalObject(value, "metadata");
  if (metadata === undefined) return undefined;
  const entries = Object.entries(metadata);
  if (entries.length > MAX_METADATA_PAIRS) fail("metadata", `at most ${MAX_METADATA_PAIRS} pairs`);
  for (const [key, v] of entries) {
    if ([...key].length > MAX_METADATA_KEY_CHARS)
      fail("metadata", `keys of at most ${MAX_METADATA_KEY_CHARS} characters`);
    if (typeof v !== "string") fail(`metadata.${key}`, "must be a string");
    if ([...(v as string)].length > MAX_METADATA_VALUE_CHARS)
      fail(`metadata.${key}`, `at most ${MAX_METADATA_VALUE_CHARS} characters`);
  }
  return metadata as Record<string, string>;
}

function itemsToTurns(value: unknown): NewItemTurn[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail("items", "must be an array");
  if (value.length > MAX_ITEMS_PER_REQUEST) fail("items", `at most ${MAX_ITEMS_PER_REQUEST} items at a time`);
  if (value.some((item) => !isObject(item))) fail("items", "each item must be an object");
  return turnsOfMessages(inputOf(value, "items"));
}

function listOptions(request: { limit?: number | undefined; order: string }) {
  const limit = request.limit ?? DEFAULT_LIST_LIMIT;
  integer(limit, "limit");
  if (limit < 1 || limit > MAX_LIST_LIMIT) fail("limit", `from 1 to ${MAX_LIST_LIMIT}`);
  const order = request.order || "desc";
  if (order !== "asc" && order !== "desc") fail("order", `"asc" or "desc"`);
  return { limit, order: order as "asc" | "desc" };
}

/** The conversation object: metadata another API stored that is not a string is written as its JSON. */
export function conversationObject(conversation: StoredConversation) {
  return {
    id: openAIConversationId(conversation.id),
    object: "conversation",
    created_at: Math.floor(conversation.createdAt.getTime() / 1000),
    metadata: Object.fromEntries(
      Object.entries(conversation.metadata ?? {}).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
    ),
  };
}
