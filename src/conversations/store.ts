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

export interface ConversationStore {
  readonly kind: "sqlite" | "postgres";
  create(conversation: {
    owner: string;
    title: string;
    systemPrompt: string;
    metadata: Record<string, unknown> | undefined;
  }): Promise<Conversation>;
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
