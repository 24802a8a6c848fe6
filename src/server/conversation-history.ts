// Chat's stored conversations (chat/history.ts's seam), on the conversation store: the history put
// before a request's new turns, the new turns stored before the upstream is called (with the
// conversation's lease, in one transaction), the reply kept in memory as it streams and stored in
// one write when it ends. A reply cut short (cancel, upstream failure, shutdown) is stored with
// what was streamed, marked incomplete with the cause.
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { ConversationHistory, HistoryOpened, HistoryRefused, ReplyRecorder } from "../chat/history.js";
import { isConversationId, NOT_FOUND_MESSAGE } from "../conversations/rpc.js";
import type { ConversationStore, NewTurn, Turn } from "../conversations/store.js";
import type { Logger } from "../observability/logger.js";
import type { UpstreamEvent, UpstreamUsage } from "../upstream/events.js";
import type { UpstreamMessage, UpstreamToolCall } from "../upstream/request.js";

export interface HistoryOptions {
  /** The most stored turns sent with a request (the newest). */
  maxTurns: number;
  /** How long a stream's lease lasts if its process dies before giving it back. */
  leaseMs: number;
  logger: Logger;
}

export function conversationHistory(store: ConversationStore, options: HistoryOptions): ConversationHistory {
  return {
    async open(id, caller, request): Promise<HistoryOpened | HistoryRefused> {
      if (!isConversationId(id)) {
        return { ok: false, why: "invalid", detail: "conversation_id: must be a conversation's id (a UUID)" };
      }
      const holder = randomUUID();
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
        reply: new Reply(store, id, holder, options.logger),
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
function toUpstreamMessages(turn: Turn): UpstreamMessage[] {
  switch (turn.role) {
    case "system":
    case "developer":
    case "user":
      return [{ role: turn.role, content: turn.content }];
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

function toNewTurn(message: UpstreamMessage): NewTurn {
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
      // Images are not stored (yet): the turn keeps its text.
      const texts = (message.parts ?? []).flatMap((p) => (p.type === "text" ? [p.text] : []));
      return { role: "user", content: [message.content, ...texts].filter((t) => t !== "").join("\n") };
    }
    default:
      return { role: message.role, content: message.content };
  }
}

/** The reply, accumulated in memory from the events the caller is sent; stored once, at its end. */
class Reply implements ReplyRecorder {
  private text = "";
  private reasoning = "";
  private readonly calls: UpstreamToolCall[] = [];
  private model: string | undefined;
  private finishReason: string | undefined;
  private usage: UpstreamUsage | undefined;
  private ended: Promise<void> | undefined;

  constructor(
    private readonly store: ConversationStore,
    private readonly id: string,
    private readonly holder: string,
    private readonly logger: Logger,
  ) {}

  event(event: UpstreamEvent): void {
    switch (event.type) {
      case "text":
      case "refusal":
        this.text += event.text;
        return;
      case "reasoning":
        this.reasoning += event.text;
        return;
      case "tool_call": {
        const call = (this.calls[event.index] ??= { id: "", name: "", arguments: "" });
        if (event.id) call.id = event.id;
        if (event.name) call.name = event.name;
        call.arguments += event.arguments;
        return;
      }
      case "finish":
        this.model = event.model;
        this.finishReason = event.finishReason;
        this.usage = event.usage;
    }
  }

  end(code: status, cause: string | undefined): Promise<void> {
    this.ended ??= this.store
      .end(this.id, this.holder, {
        role: "assistant",
        content: this.text,
        reasoning: this.reasoning,
        toolCalls: this.calls.filter((c) => c !== undefined),
        ...(this.model && { model: this.model }),
        ...(this.finishReason && { finishReason: this.finishReason }),
        ...(this.usage && { usage: this.usage }),
        ...(code !== status.OK && { incompleteReason: cause ?? status[code].toLowerCase() }),
      })
      .catch((error: unknown) => {
        // The reply is lost, the lease expires by itself; the stream ends as it would have.
        this.logger.error({ err: error, operation: "end", conversation: this.id }, "conversation store failed");
      });
    return this.ended;
  }
}
