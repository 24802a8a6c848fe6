// A stored response's history and recorder (the OpenAI API's `POST /v1/responses` with `store`,
// `previous_response_id` or `conversation`), for ChatService.serve. The context is, in order: the
// request's `instructions` (never carried over to a later response, as OpenAI documents), the
// history (the chain of responses ending with `previous_response_id`, its inputs and outputs; or the
// conversation's turns, as Chat's `conversation_id` has them: its lease, its input stored first),
// then the request's own input. The history is trimmed to the newest `maxTurns` turns as Chat's is.
// With `store`, the response's row is written when the stream ends: its own input, its output and
// the `response` object the caller was given.
import { status } from "@grpc/grpc-js";
import type { ConversationHistory, HistoryOpened, HistoryRefused, ReplyRecorder } from "../chat/history.js";
import type { ResponseHistoryOptions } from "../api/openai/stored.js";
import type { ConversationStore, StoredResponse } from "../conversations/store.js";
import type { Logger } from "../observability/logger.js";
import type { UpstreamEvent } from "../upstream/events.js";
import { ReplyTurn, toNewTurn, toUpstreamMessages, trimHistory } from "./conversation-history.js";

export interface ResponseHistoryDeps {
  store: ConversationStore;
  /** Chat's conversations' history, which a response on a conversation goes through. */
  conversations: ConversationHistory;
  maxTurns: number;
  logger: Logger;
}

export function responseHistory(deps: ResponseHistoryDeps, options: ResponseHistoryOptions): ConversationHistory {
  return {
    async open(_conversationId, caller, request): Promise<HistoryOpened | HistoryRefused> {
      const instructions = options.hasInstructions ? request.messages.slice(0, 1) : [];
      const own = request.messages.slice(instructions.length);
      let opened: HistoryOpened;
      if (options.conversationUuid !== undefined) {
        const inConversation = await deps.conversations.open(options.conversationUuid, caller, {
          ...request,
          messages: own,
        });
        if (!inConversation.ok) return inConversation;
        opened = {
          ...inConversation,
          request: { ...inConversation.request, messages: [...instructions, ...inConversation.request.messages] },
        };
      } else if (options.previousResponseId !== undefined) {
        let chain;
        try {
          chain = await deps.store.responseChain(caller, options.previousResponseId, deps.maxTurns);
        } catch (error) {
          deps.logger.error({ err: error, operation: "response_chain" }, "conversation store failed");
          return { ok: false, why: "unavailable", detail: "conversation store unavailable" };
        }
        if (chain === undefined) {
          return {
            ok: false,
            why: "not_found",
            detail: `previous_response_id: no response with id '${options.previousResponseId}' found`,
          };
        }
        const { kept, trimmed } = trimHistory(
          chain.map((turn, i) => ({ ...turn, seq: i + 1, createdAt: new Date(0) })),
          deps.maxTurns,
        );
        opened = {
          ok: true,
          request: { ...request, messages: [...instructions, ...kept.flatMap(toUpstreamMessages), ...own] },
          trimmedTurns: trimmed,
          reply: NOTHING,
        };
      } else {
        opened = { ok: true, request, trimmedTurns: 0, reply: NOTHING };
      }
      if (!options.store) return opened;
      const recorder = new StoredResponseRecorder(deps, options, caller, own.map(toNewTurn), opened.reply);
      if (options.background) {
        try {
          await recorder.start();
        } catch (error) {
          deps.logger.error({ err: error, operation: "save_response" }, "conversation store failed");
          await opened.reply.end(status.UNAVAILABLE, "conversation_store");
          return { ok: false, why: "unavailable", detail: "conversation store unavailable" };
        }
      }
      return { ...opened, reply: recorder };
    },
  };
}

/** No recorder: a response with no conversation records nothing but its own row. */
const NOTHING: ReplyRecorder = { event: () => undefined, end: () => Promise.resolve() };

/** The response's reply, kept in memory; at the end, the conversation's recorder first, then the response's row. */
class StoredResponseRecorder implements ReplyRecorder {
  private readonly reply = new ReplyTurn();
  private ended: Promise<void> | undefined;
  private readonly createdAt = new Date();

  constructor(
    private readonly deps: ResponseHistoryDeps,
    private readonly options: ResponseHistoryOptions,
    private readonly owner: string,
    private readonly input: ReturnType<typeof toNewTurn>[],
    private readonly inner: ReplyRecorder,
  ) {}

  event(event: UpstreamEvent): void {
    this.reply.event(event);
    this.inner.event(event);
    this.options.background?.follow(event);
  }

  /** A background response's row as it starts: in progress, its input, no output yet. */
  start(): Promise<void> {
    return this.deps.store.saveResponse(this.row([], this.options.presenter.initial()));
  }

  private row(output: StoredResponse["output"], response: Record<string, unknown>): StoredResponse {
    return {
      id: this.options.responseId,
      owner: this.owner,
      conversationId: this.options.conversationUuid,
      previousResponseId: this.options.previousResponseId,
      input: this.input,
      output,
      response,
      createdAt: this.createdAt,
    };
  }

  end(code: status, cause: string | undefined): Promise<void> {
    this.ended ??= this.inner.end(code, cause).then(async () => {
      const failed = code !== 0;
      const response = this.options.presenter.final(code, cause ?? "failed");
      try {
        const output = this.reply.empty ? [] : [this.reply.turn(failed ? (cause ?? "failed") : undefined)];
        // A background response's row exists since it started; deleted meanwhile, it stays deleted.
        if (this.options.background)
          await this.deps.store.updateResponse(this.owner, this.options.responseId, { output, response });
        else await this.deps.store.saveResponse(this.row(output, response));
      } catch (error) {
        // The response is not kept; the stream ends as it would have.
        this.deps.logger.error({ err: error, operation: "save_response" }, "conversation store failed");
      }
    });
    return this.ended;
  }
}
