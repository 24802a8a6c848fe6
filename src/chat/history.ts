// The seam through which a Chat request naming a stored conversation (`conversation_id`) gets its
// history and has its turns kept. The handler knows nothing of the store: the composition root
// (src/server/conversation-history.ts) implements this, as it hands in `bodyKeys`.
import type { status } from "@grpc/grpc-js";
import type { UpstreamEvent } from "../upstream/events.js";
import type { UpstreamRequest } from "../upstream/request.js";

export interface ConversationHistory {
  /**
   * Before the upstream is called: the stored turns put before the request's own (which are stored
   * now), and the recorder of the reply; or why the call is refused.
   */
  open(conversationId: string, caller: string, request: UpstreamRequest): Promise<HistoryOpened | HistoryRefused>;
}

export interface HistoryOpened {
  ok: true;
  /** The request with the conversation's history before its own messages. */
  request: UpstreamRequest;
  /** Stored turns left out of `request` to keep within the history's size. */
  trimmedTurns: number;
  reply: ReplyRecorder;
}

export interface HistoryRefused {
  ok: false;
  why: "not_found" | "busy" | "invalid" | "unavailable";
  detail: string;
}

/**
 * Told every event of the reply as it is handed to the caller, kept in memory (no write on the
 * token path), and once at the end how the stream ended: the reply is stored then, in one write.
 */
export interface ReplyRecorder {
  event(event: UpstreamEvent): void;
  /** `code` OK: the reply ended by itself; otherwise `cause` says why it did not (the error table's). */
  end(code: status, cause: string | undefined): Promise<void>;
  // Never rejects: a failed write is the recorder's to log; the stream ends as it would have.
}
