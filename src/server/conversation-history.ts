// Chat's stored conversations (chat/history.ts's seam), on the conversation store: the history put
// before a request's new turns, the new turns stored before the upstream is called (with the
// conversation's lease, in one transaction), the reply kept in memory as it streams, flushed to the
// store every `flushMs` or `flushChars` characters (whichever first; the write that also renews the
// lease), and stored whole when it ends. A reply cut short (cancel, upstream failure, shutdown) is
// stored with what was streamed, marked incomplete with the cause; a process killed mid-stream leaves
// its last flush.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { ConversationHistory, HistoryOpened, HistoryRefused, ReplyRecorder } from "../chat/history.js";
import { isConversationId, NOT_FOUND_MESSAGE } from "../conversations/rpc.js";
import { STREAMING, type ConversationStore, type NewTurn, type Turn } from "../conversations/store.js";
import type { Logger } from "../observability/logger.js";
import type { UpstreamEvent, UpstreamUsage } from "../upstream/events.js";
import type { UpstreamMessage, UpstreamToolCall } from "../upstream/request.js";

export interface HistoryOptions {
  /** The most stored turns sent with a request (the newest). */
  maxTurns: number;
  /** How long a stream's lease lasts past its last flush (so: if its process dies). */
  leaseMs: number;
  /** The reply is written (and the lease renewed) this often while it streams... */
  flushMs: number;
  /** ...and after this many new characters, whichever comes first. */
  flushChars: number;
  logger: Logger;
}

export function conversationHistory(store: ConversationStore, options: HistoryOptions): ConversationHistory {
  return {
    async open(id, caller, request): Promise<HistoryOpened | HistoryRefused> {
      if (!isConversationId(id)) {
        return { ok: false, why: "invalid", detail: "conversation_id: must be a conversation's id (a UUID)" };
      }
      const holder = randomUUID();
      const leaseTakenAt = performance.now();
      let begun: Awaited<ReturnType<ConversationStore["begin"]>>;
      try {
        begun = await store.begin(caller, id, holder, options.leaseMs, request.messages.map(toNewTurn));
      } catch (error) {
        options.logger.error({ err: error, operation: "begin" }, "conversation store failed");
        return { ok: false, why: "unavailable", detail: "conversation store unavailable" };
      }
      if (!begun.ok) {
        return begun.why === "busy"
          ? { ok: false, why: "busy", detail: "conversation busy: another stream on it has not ended" }
          : { ok: false, why: "not_found", detail: NOT_FOUND_MESSAGE };
      }
      const { kept, trimmed } = trimHistory(begun.history, options.maxTurns);
      const system = begun.conversation.systemPrompt;
      const messages: UpstreamMessage[] = [
        ...(system ? [{ role: "system" as const, content: system }] : []),
        ...kept.flatMap(toUpstreamMessages),
        ...request.messages,
      ];
      return {
        ok: true,
        request: { ...request, messages },
        trimmedTurns: trimmed,
        reply: new Reply(store, id, holder, begun.replySeq, options, leaseTakenAt),
      };
    },
  };
}

/**
 * The newest `max` turns; a tool result whose assistant turn was left out goes too (an upstream
 * refuses a `tool` message that answers no call it can see).
 */
export function trimHistory(turns: Turn[], max: number): { kept: Turn[]; trimmed: number } {
  let start = Math.max(0, turns.length - max);
  while (start < turns.length && turns[start]!.role === "tool") start++;
  return { kept: turns.slice(start), trimmed: start };
}

/** A stored turn as the upstream is sent it again: the reasoning never is. */
export function toUpstreamMessages(turn: Turn): UpstreamMessage[] {
  switch (turn.role) {
    case "system":
    case "developer":
      return [{ role: turn.role, content: turn.content }];
    case "user":
      // With its images, when it had any: its stored parts begin with its own content.
      return [{ role: "user", content: turn.parts ? "" : turn.content, ...(turn.parts && { parts: turn.parts }) }];
    case "tool":
      return [{ role: "tool", content: turn.content, toolCallId: turn.toolCallId ?? "" }];
    case "assistant":
      // A reply cut short is sent as the text it had; its tool calls, maybe half-written, are not.
      if (turn.incompleteReason) return turn.content ? [{ role: "assistant", content: turn.content }] : [];
      return [
        { role: "assistant", content: turn.content, ...(turn.toolCalls?.length && { toolCalls: turn.toolCalls }) },
      ];
  }
}

export function toNewTurn(message: UpstreamMessage): NewTurn {
  switch (message.role) {
    case "assistant":
      return {
        role: "assistant",
        content: message.content,
        ...(message.toolCalls && { toolCalls: message.toolCalls }),
      };
    case "tool":
      return { role: "tool", content: message.content, toolCallId: message.toolCallId };
    case "user": {
      // Its text for readers; with parts, the whole of it as sent (content first, as the upstream
      // is sent it) to send again.
      const parts = message.parts ?? [];
      const texts = parts.flatMap((p) => (p.type === "text" ? [p.text] : []));
      const content = [message.content, ...texts].filter((t) => t !== "").join("\n");
      if (parts.length === 0) return { role: "user", content };
      const first = message.content ? [{ type: "text" as const, text: message.content }] : [];
      return { role: "user", content, parts: [...first, ...parts] };
    }
    default:
      return { role: message.role, content: message.content };
  }
}

/** A reply as the events the caller is sent build it, in memory: the assistant turn to store. */
export class ReplyTurn {
  text = "";
  reasoning = "";
  readonly calls: UpstreamToolCall[] = [];
  private model: string | undefined;
  private finishReason: string | undefined;
  private usage: UpstreamUsage | undefined;

  /** The characters the event added. */
  event(event: UpstreamEvent): number {
    switch (event.type) {
      case "text":
      case "refusal":
        this.text += event.text;
        return event.text.length;
      case "reasoning":
        this.reasoning += event.text;
        return event.text.length;
      case "tool_call": {
        const call = (this.calls[event.index] ??= { id: "", name: "", arguments: "" });
        if (event.id) call.id = event.id;
        if (event.name) call.name = event.name;
        call.arguments += event.arguments;
        return event.arguments.length;
      }
      case "finish":
        this.model = event.model;
        this.finishReason = event.finishReason;
        this.usage = event.usage;
        return 0;
    }
  }

  get empty(): boolean {
    return !this.text && !this.reasoning && this.calls.length === 0;
  }

  /** `incompleteReason` undefined: a reply that ended by itself. */
  turn(incompleteReason: string | undefined): NewTurn {
    return {
      role: "assistant",
      content: this.text,
      reasoning: this.reasoning,
      toolCalls: this.calls.filter((c) => c !== undefined),
      ...(this.model && { model: this.model }),
      ...(this.finishReason && { finishReason: this.finishReason }),
      ...(this.usage && { usage: this.usage }),
      ...(incompleteReason !== undefined && { incompleteReason }),
    };
  }
}

/**
 * The reply, accumulated in memory from the events the caller is sent; written at each flush (a timer
 * or a count of characters, never an await on the token path) and once more, whole, at its end.
 */
class Reply implements ReplyRecorder {
  private readonly reply = new ReplyTurn();
  private ended: Promise<void> | undefined;
  /** Characters received since the last flush began. */
  private unflushed = 0;
  /** The flush being written: at most one at a time, and the end waits for it. */
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  /** When this stream's lease runs out at the latest (performance.now()), unless a flush renews it. */
  private heldUntil: number;

  constructor(
    private readonly store: ConversationStore,
    private readonly id: string,
    private readonly holder: string,
    private readonly seq: number,
    private readonly options: HistoryOptions,
    /** When the lease was taken (performance.now() before the store's begin). */
    leaseTakenAt: number,
  ) {
    this.heldUntil = leaseTakenAt + options.leaseMs;
    // Also when nothing arrives (a long silence of the upstream): the flush renews the lease.
    this.timer = setInterval(() => this.flush(), options.flushMs);
    this.timer.unref();
  }

  event(event: UpstreamEvent): void {
    this.unflushed += this.reply.event(event);
    if (this.unflushed >= this.options.flushChars) this.flush();
  }

  /** Starts a write of the reply so far, unless one is under way (the next one takes what came meanwhile). */
  private flush(): void {
    if (this.flushing || this.ended) return;
    // Nothing received yet: only the lease is renewed (no empty reply turn).
    const reply = this.unflushed > 0 || !this.reply.empty ? this.reply.turn(STREAMING) : undefined;
    this.unflushed = 0;
    const at = performance.now();
    this.flushing = this.store
      .flush(this.id, this.holder, this.options.leaseMs, this.seq, reply)
      .then((held) => {
        if (held) this.heldUntil = at + this.options.leaseMs;
        else {
          this.options.logger.warn(
            { conversation: this.id },
            "conversation lease lost mid-stream: the reply is written when it ends",
          );
        }
      })
      .catch((error: unknown) => {
        // The next flush (or the end) tries again; the stream goes on.
        this.options.logger.error(
          { err: error, operation: "flush", conversation: this.id },
          "conversation store failed",
        );
      })
      .finally(() => {
        this.flushing = undefined;
      });
  }

  end(code: status, cause: string | undefined): Promise<void> {
    if (this.ended) return this.ended;
    clearInterval(this.timer);
    const reply = this.reply.turn(code === status.OK ? undefined : (cause ?? status[code].toLowerCase()));
    // After the flush under way, so it cannot land over the whole reply. The stream waits for the
    // first try only: it ends as it would have whatever the database does.
    this.ended = (this.flushing ?? Promise.resolve()).then(() => this.storeEnd(reply, 0));
    return this.ended;
  }

  /**
   * Stores the whole reply and gives the lease back. When the database fails, tries again in the
   * background while the lease still holds (no other stream can have taken the conversation until
   * then): a database back within it loses nothing and leaves no hold behind. Past it the reply is
   * lost beyond its last flush and the lease expires by itself.
   */
  private async storeEnd(reply: NewTurn, attempt: number): Promise<void> {
    try {
      await this.store.end(this.id, this.holder, this.seq, reply);
      if (attempt > 0)
        this.options.logger.info({ conversation: this.id, attempt }, "conversation reply stored on retry");
    } catch (error: unknown) {
      const retryInMs = Math.min(END_RETRY_FIRST_MS * 2 ** attempt, END_RETRY_MAX_MS);
      const retrying = performance.now() + retryInMs < this.heldUntil;
      this.options.logger.error(
        { err: error, operation: "end", conversation: this.id, attempt, ...(retrying && { retryInMs }) },
        "conversation store failed",
      );
      if (retrying) setTimeout(() => void this.storeEnd(reply, attempt + 1), retryInMs).unref();
    }
  }
}

/** A failed end is tried again after this long, then twice as long each time, up to the max. */
const END_RETRY_FIRST_MS = 250;
const END_RETRY_MAX_MS = 5_000;
