// The conversations' storage port: what the gateway keeps of a conversation and the operations it
// needs, in no database's terms. One implementation (kysely-store.ts) serves SQLite and PostgreSQL,
// its SQL written by Kysely for each.
import type { UpstreamContentPart, UpstreamToolCall } from "../upstream/request.js";
import type { UpstreamUsage } from "../upstream/events.js";

export interface Conversation {
  id: string;
  owner: string;
  title: string;
  systemPrompt: string;
  metadata: Record<string, unknown> | undefined;
  createdAt: Date;
  updatedAt: Date;
}

export type TurnRole = "system" | "developer" | "user" | "assistant" | "tool";

/** A turn as it is appended: the caller's (user, tool results) or the model's reply. */
export interface NewTurn {
  role: TurnRole;
  /** The turn's text (a user turn's text parts too, joined by newlines): what a reader is shown. */
  content: string;
  /**
   * A user turn that had parts (images): all of it as it was sent, its `content` first as a text
   * part, then its parts; sent to the upstream again in place of `content`.
   */
  parts?: UpstreamContentPart[];
  reasoning?: string;
  toolCalls?: UpstreamToolCall[];
  toolCallId?: string;
  model?: string;
  finishReason?: string;
  usage?: UpstreamUsage;
  /** Why the reply did not end by itself ("cancelled", "upstream_error", "shutdown", ...). */
  incompleteReason?: string;
}

export interface Turn extends NewTurn {
  seq: number;
  createdAt: Date;
}

/** Where a page of the list starts: after this conversation (newest first). */
export interface PageCursor {
  createdAt: Date;
  id: string;
}

/**
 * A reply's `incompleteReason` while it streams (written by each flush), and once its stream is known
 * to have died without ending it (its process killed: the lease was not given back and expired).
 */
export const STREAMING = "streaming";
export const INTERRUPTED = "interrupted";

export type BeginOutcome =
  | { ok: true; conversation: Conversation; history: Turn[]; replySeq: number }
  | { ok: false; why: "not_found" | "busy" };

/** A stored response (the OpenAI API's): its own input and output turns, and the `response` object. */
export interface StoredResponse {
  id: string;
  owner: string;
  conversationId: string | undefined;
  previousResponseId: string | undefined;
  input: NewTurn[];
  output: NewTurn[];
  response: Record<string, unknown>;
  createdAt: Date;
}

/** A change to turns under no stream: refused while a stream holds the conversation's lease. */
export type EditOutcome<T> = { ok: true; value: T } | { ok: false; why: "not_found" | "busy" };

export interface ConversationStore {
  readonly kind: "sqlite" | "postgres";
  /** With `turns`, the conversation and its first turns in one transaction. */
  create(conversation: {
    owner: string;
    title: string;
    systemPrompt: string;
    metadata: Record<string, unknown> | undefined;
    turns?: NewTurn[];
  }): Promise<Conversation>;
  /** Replaces the metadata. */
  setMetadata(owner: string, id: string, metadata: Record<string, unknown>): Promise<Conversation | undefined>;
  /** Appends turns after the newest, in one transaction; the appended turns. */
  append(owner: string, id: string, turns: NewTurn[]): Promise<EditOutcome<Turn[]>>;
  /**
   * Turn `seq` rewritten by `edit` (undefined: the turn is deleted), in one transaction; `value`
   * false when there is no such turn.
   */
  editTurn(
    owner: string,
    id: string,
    seq: number,
    edit: (turn: Turn) => NewTurn | undefined,
  ): Promise<EditOutcome<boolean>>;
  saveResponse(response: StoredResponse): Promise<void>;
  /**
   * A kept response's output and object rewritten (a background response's as it ends); false when
   * there is no such row (deleted meanwhile: it stays deleted).
   */
  updateResponse(owner: string, id: string, ended: Pick<StoredResponse, "output" | "response">): Promise<boolean>;
  /** The owner's response, or undefined (unknown, deleted, or another owner's). */
  getResponse(owner: string, id: string): Promise<StoredResponse | undefined>;
  deleteResponse(owner: string, id: string): Promise<boolean>;
  /**
   * The turns of the chain of responses ending with `id` (its own input and output last), oldest
   * first, at least the newest `minTurns` of them when the chain has so many; undefined when the
   * owner has no response `id`. A response deleted from the middle ends the chain there.
   */
  responseChain(owner: string, id: string, minTurns: number): Promise<NewTurn[] | undefined>;
  /** The owner's conversations, newest first, `limit` at most, after `after` when given. */
  list(owner: string, limit: number, after?: PageCursor): Promise<Conversation[]>;
  /** The conversation and its turns, oldest first; undefined when the owner has no such conversation. */
  get(owner: string, id: string): Promise<{ conversation: Conversation; turns: Turn[] } | undefined>;
  rename(owner: string, id: string, title: string): Promise<Conversation | undefined>;
  /** True when something was deleted (the conversation, its turns and its lease). */
  delete(owner: string, id: string): Promise<boolean>;
  /**
   * In one transaction: takes the conversation's lease for `holder` (refused while another holder's
   * has not expired), reads its turns so far and appends `turns` (the request's new ones).
   */
  begin(owner: string, id: string, holder: string, leaseMs: number, turns: NewTurn[]): Promise<BeginOutcome>;
  /**
   * While a reply streams, in one transaction: renews `holder`'s lease for another `leaseMs` and
   * writes the reply so far (when given) as turn `seq` (begin's `replySeq`), replacing the last
   * flush's. False, writing nothing, when `holder` no longer holds the lease.
   */
  flush(id: string, holder: string, leaseMs: number, seq: number, reply: NewTurn | undefined): Promise<boolean>;
  /**
   * Writes the reply (when there is one) as turn `seq`, replacing what a flush wrote, and gives the
   * lease back, in one transaction. Should the lease have been lost meanwhile (it expired and another
   * stream took the conversation), the reply goes after the newest turn instead.
   */
  end(id: string, holder: string, seq: number, reply: NewTurn | undefined): Promise<void>;
  close(): Promise<void>;
}
