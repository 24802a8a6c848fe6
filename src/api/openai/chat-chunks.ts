// The stream's messages (chat.v1 ChatResponse events) → what the OpenAI SDKs read from
// `POST /v1/chat/completions`: streamed, one `chat.completion.chunk` server-sent event per message
// as it is written (the first carrying the assistant's role), a chunk with the finish reason, one
// with the usage when `stream_options.include_usage` asked for it, then `data: [DONE]`; heartbeats
// as SSE comment lines, which the SDKs skip; a failure after the first chunk as an `error` event,
// which the SDKs raise mid-iteration. Not streamed: nothing until the end, then one
// `chat.completion` object.
import { heartbeatBody, jsonBody, sseBody } from "./bodies.js";
import { randomBytes } from "node:crypto";
import type { Presenter } from "../../chat/outbox.js";
import type { ChatResponse, HttpBody, Usage } from "../../contract/chat.js";
import { openAIError } from "./errors.js";

export interface ChunkOptions {
  /** The model named on each chunk until the upstream's finish names its own. */
  model: string;
  includeUsage: boolean;
  now?: () => number;
  id?: string;
}

/** Streams `chat.completion.chunk` events. */
export class ChatChunkPresenter implements Presenter {
  readonly errorsInBand = true;
  private readonly id: string;
  private readonly created: number;
  private roleSent = false;

  constructor(private readonly options: ChunkOptions) {
    this.id = options.id ?? completionId();
    this.created = Math.floor((options.now ?? Date.now)() / 1000);
  }

  present(message: ChatResponse): HttpBody | undefined {
    const event = message.event;
    switch (event?.$case) {
      case "delta":
        return this.chunk({ content: event.value.text });
      case "reasoning":
        return this.chunk({ reasoning_content: event.value.text });
      case "refusal":
        return this.chunk({ refusal: event.value.text });
      case "toolCall": {
        const { index, id, name, arguments: args } = event.value;
        const call =
          id === ""
            ? { index, function: { arguments: args } }
            : { index, id, type: "function", function: { name, arguments: args } };
        return this.chunk({ tool_calls: [call] });
      }
      case "heartbeat":
        return heartbeatBody(event.value.waitedMs);
      case "finish": {
        const { finishReason, model, usage } = event.value;
        let text = data(
          this.frame(model || this.options.model, [
            { index: 0, delta: {}, finish_reason: finishReason, logprobs: null },
          ]),
        );
        if (this.options.includeUsage) {
          text += data({ ...this.frame(model || this.options.model, []), usage: usage ? usageOf(usage) : null });
        }
        return sseBody(`${text}data: [DONE]\n\n`);
      }
      case "error":
        return sseBody(data(openAIError(event.value.code, event.value.message)));
      default:
        return undefined;
    }
  }

  private chunk(delta: Record<string, unknown>): HttpBody {
    const first = !this.roleSent;
    this.roleSent = true;
    const choice = {
      index: 0,
      delta: first ? { role: "assistant", ...delta } : delta,
      finish_reason: null,
      logprobs: null,
    };
    return sseBody(data(this.frame(this.options.model, [choice])));
  }

  private frame(model: string, choices: unknown[]) {
    return {
      id: this.id,
      object: "chat.completion.chunk",
      created: this.created,
      model,
      system_fingerprint: null,
      choices,
    };
  }
}

/** Keeps the reply, and writes it as one `chat.completion` when it has finished. */
export class ChatCompletionPresenter implements Presenter {
  private content = "";
  private reasoning = "";
  private refusal = "";
  private readonly toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[] = [];

  constructor(private readonly options: Omit<ChunkOptions, "includeUsage">) {}

  present(message: ChatResponse): HttpBody | undefined {
    const event = message.event;
    switch (event?.$case) {
      case "delta":
        this.content += event.value.text;
        return undefined;
      case "reasoning":
        this.reasoning += event.value.text;
        return undefined;
      case "refusal":
        this.refusal += event.value.text;
        return undefined;
      case "toolCall": {
        const { index, id, name, arguments: args } = event.value;
        const call = (this.toolCalls[index] ??= { id, type: "function", function: { name, arguments: "" } });
        call.function.arguments += args;
        return undefined;
      }
      case "finish": {
        const { finishReason, model, usage } = event.value;
        const completion = {
          id: this.options.id ?? completionId(),
          object: "chat.completion",
          created: Math.floor((this.options.now ?? Date.now)() / 1000),
          model: model || this.options.model,
          system_fingerprint: null,
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content: this.content === "" && this.toolCalls.length > 0 ? null : this.content,
                refusal: this.refusal === "" ? null : this.refusal,
                ...(this.reasoning !== "" && { reasoning_content: this.reasoning }),
                ...(this.toolCalls.length > 0 && { tool_calls: this.toolCalls }),
              },
              finish_reason: finishReason,
              logprobs: null,
            },
          ],
          usage: usage ? usageOf(usage) : null,
        };
        return jsonBody(completion);
      }
      // Nothing was written before the end, so a failure is the call's status: an HTTP error.
      default:
        return undefined;
    }
  }
}

export function usageOf(usage: Usage) {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.totalTokens,
    completion_tokens_details: { reasoning_tokens: usage.reasoningTokens },
    prompt_tokens_details: { cached_tokens: usage.cachedPromptTokens },
  };
}

function completionId(): string {
  return `chatcmpl-${randomBytes(12).toString("base64url")}`;
}

function data(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}
