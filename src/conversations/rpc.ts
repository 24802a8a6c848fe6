// ConversationService: create, list, read, rename and delete the caller's stored conversations.
// A conversation's owner is the caller key's name; another key gets NOT_FOUND with the same message
// as an id that does not exist, so ids cannot be probed. Bad input is INVALID_ARGUMENT naming the field.
import { status, type Metadata, type ServiceError, type sendUnaryData } from "@grpc/grpc-js";
import type {
  Conversation as ConversationMessage,
  ConversationServiceServer,
  Turn as TurnMessage,
} from "../contract/chat.js";
import type { Conversation, ConversationStore, PageCursor, Turn } from "./store.js";

export const MAX_TITLE_CHARS = 200;
export const MAX_SYSTEM_PROMPT_BYTES = 32 * 1024;
export const MAX_METADATA_BYTES = 16 * 1024;
const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;
export const NOT_FOUND_MESSAGE = "conversation not found";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A conversation's id as the store makes them (a lower-case UUID); anything else is malformed. */
export function isConversationId(id: string): boolean {
  return UUID.test(id);
}

class Invalid extends Error {}

export interface ConversationRpcDeps {
  store: ConversationStore;
  /** The caller key's name for a call's metadata ("anonymous" with caller keys off). */
  ownerOf: (metadata: Metadata) => string;
  /** A store failure, for the log; the caller gets UNAVAILABLE. */
  onStoreError: (operation: string, error: unknown) => void;
}

export function conversationService(deps: ConversationRpcDeps): ConversationServiceServer {
  const { store } = deps;
  // Each handler: its answer, or an error to send; `Invalid` is the caller's mistake, any other
  // throw the store's failure.
  function unary<Req, Res>(operation: string, handle: (request: Req, owner: string) => Promise<Res | ServiceError>) {
    return (call: { request: Req; metadata: Metadata }, callback: sendUnaryData<Res>) => {
      handle(call.request, deps.ownerOf(call.metadata)).then(
        (result) => (result instanceof Error ? callback(result) : callback(null, result)),
        (error: unknown) => {
          if (error instanceof Invalid) return callback(serviceError(status.INVALID_ARGUMENT, error.message));
          deps.onStoreError(operation, error);
          callback(serviceError(status.UNAVAILABLE, "conversation store unavailable"));
        },
      );
    };
  }

  return {
    createConversation: unary("create", async (request, owner) => {
      const title = checkTitle(request.title);
      if (Buffer.byteLength(request.systemPrompt) > MAX_SYSTEM_PROMPT_BYTES) {
        throw new Invalid(`system_prompt: at most ${MAX_SYSTEM_PROMPT_BYTES} bytes`);
      }
      const metadata = request.metadata as Record<string, unknown> | undefined;
      if (metadata !== undefined && Buffer.byteLength(JSON.stringify(metadata)) > MAX_METADATA_BYTES) {
        throw new Invalid(`metadata: at most ${MAX_METADATA_BYTES} bytes as JSON`);
      }
      const conversation = await store.create({ owner, title, systemPrompt: request.systemPrompt, metadata });
      return { conversation: toMessage(conversation) };
    }),

    listConversations: unary("list", async (request, owner) => {
      const size = request.pageSize || DEFAULT_PAGE_SIZE;
      if (size > MAX_PAGE_SIZE) throw new Invalid(`page_size: at most ${MAX_PAGE_SIZE}`);
      const after = request.pageToken ? decodePageToken(request.pageToken) : undefined;
      // One more than the page, to know whether there is a next one.
      const rows = await store.list(owner, size + 1, after);
      const page = rows.slice(0, size);
      const last = page.at(-1);
      return {
        conversations: page.map(toMessage),
        nextPageToken: rows.length > size && last ? encodePageToken({ createdAt: last.createdAt, id: last.id }) : "",
      };
    }),

    getConversation: unary("get", async (request, owner) => {
      const found = await store.get(owner, checkId(request.id));
      if (!found) return notFound();
      return { conversation: toMessage(found.conversation), turns: found.turns.map(toTurnMessage) };
    }),

    updateConversation: unary("rename", async (request, owner) => {
      checkId(request.id);
      const title = checkTitle(request.title);
      const renamed = await store.rename(owner, request.id, title);
      return renamed ? { conversation: toMessage(renamed) } : notFound();
    }),

    deleteConversation: unary("delete", async (request, owner) => {
      checkId(request.id);
      return (await store.delete(owner, request.id)) ? {} : notFound();
    }),
  };
}

function checkId(id: string): string {
  if (!isConversationId(id))
    throw new Invalid("id: must be a conversation's id (a UUID, as CreateConversation returns)");
  return id;
}

function checkTitle(title: string): string {
  if ([...title].length > MAX_TITLE_CHARS) throw new Invalid(`title: at most ${MAX_TITLE_CHARS} characters`);
  return title;
}

function notFound(): ServiceError {
  return serviceError(status.NOT_FOUND, NOT_FOUND_MESSAGE);
}

function serviceError(code: status, details: string): ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: undefined as unknown as Metadata });
}

/** The page token: where the next page starts, opaque to the caller (base64url of a small JSON). */
function encodePageToken(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify({ t: cursor.createdAt.toISOString(), i: cursor.id })).toString("base64url");
}

function decodePageToken(token: string): PageCursor {
  try {
    const { t, i } = JSON.parse(Buffer.from(token, "base64url").toString()) as { t: unknown; i: unknown };
    const createdAt = new Date(typeof t === "string" ? t : Number.NaN);
    if (typeof i === "string" && isConversationId(i) && !Number.isNaN(createdAt.getTime())) return { createdAt, id: i };
  } catch {
    // Falls through to the refusal.
  }
  throw new Invalid("page_token: not a token ListConversations returned");
}

function toMessage(c: Conversation): ConversationMessage {
  return {
    id: c.id,
    title: c.title,
    systemPrompt: c.systemPrompt,
    metadata: c.metadata,
    createTime: c.createdAt,
    updateTime: c.updatedAt,
  };
}

function toTurnMessage(t: Turn): TurnMessage {
  return {
    seq: t.seq,
    role: t.role,
    content: t.content,
    reasoning: t.reasoning ?? "",
    toolCalls: (t.toolCalls ?? []).map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.name, arguments: call.arguments },
    })),
    toolCallId: t.toolCallId ?? "",
    model: t.model ?? "",
    finishReason: t.finishReason ?? "",
    usage: t.usage,
    incompleteReason: t.incompleteReason ?? "",
    createTime: t.createdAt,
  };
}
