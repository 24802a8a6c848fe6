// The stream's messages (chat.v1 ChatResponse events) → what the OpenAI SDKs read from
// `POST /v1/responses`. Streamed: the Responses event sequence, each a server-sent event named for
// its type and numbered (`sequence_number`): `response.created` and `response.in_progress` with the
// first message; then output items in order, each opened (`response.output_item.added`), filled
// (text, refusal and reasoning through their content part's events, a function call's arguments
// through `response.function_call_arguments.delta`) and closed with its `.done` events when the
// model moves on to another kind of output; at the finish, `response.completed` (or
// `response.incomplete` when the output was cut) with the whole response and its usage. Heartbeats
// go out as SSE comment lines. A failure after the first byte is `response.failed` and then an
// `error` event: the SDKs raise on the latter (neither raises on `response.failed` alone), so a
// failed stream never ends as if it were complete. Not streamed: nothing until the end, then the
// one `response` object.
import { heartbeatBody, jsonBody, sseBody } from "./bodies.js";
import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Presenter } from "../../chat/outbox.js";
import type { ChatResponse, HttpBody, Usage } from "../../contract/chat.js";
import { openAIError } from "./errors.js";
import type { ResponseEcho } from "./responses-request.js";

type ChatEvent = NonNullable<ChatResponse["event"]>;
type ContentOrFinish = Exclude<ChatEvent, { $case: "heartbeat" | "error" }>;

export interface ResponseOptions {
  /** The model named on the response until the upstream's finish names its own. */
  model: string;
  echo: ResponseEcho;
  now?: () => number;
  /** Ids for the response and its items, by prefix (`resp`, `msg`, `rs`, `fc`); random by default. */
  newId?: (prefix: string) => string;
  /** The response's own id (stored responses' are chosen before the stream). */
  id?: string;
  /** How the response is kept, as the `response` object says (not stored, no history by default). */
  storage?: ResponseStorage;
  /**
   * A background response (background.ts): `background: true` on the object, `queued` on
   * `response.created`, `cancelled` (not `failed`) when it was cancelled; its `created_at` given
   * (seconds), so a resume presents the very events the first reading did.
   */
  background?: { createdAt: number };
  /** A resume's `starting_after`: events numbered up to it are built but not written. */
  after?: number;
}

export interface ResponseStorage {
  store: boolean;
  previousResponseId?: string;
  /** The conversation's OpenAI id. */
  conversation?: string;
}

/** What a stored response is kept as: the `response` object at the stream's end. */
export interface FinalResponse {
  /** The response as the stream ended: as `response.completed` or `.incomplete` carried it, or failed with `message`. */
  final(code: status, message: string): Record<string, unknown>;
  /** The response as it starts (in progress, no output): a background response's row until it ends. */
  initial(): Record<string, unknown>;
}

type Status = "in_progress" | "completed" | "incomplete";
interface OutputText {
  type: "output_text";
  text: string;
  annotations: never[];
  logprobs: never[];
}
interface Refusal {
  type: "refusal";
  refusal: string;
}
interface MessageItem {
  id: string;
  type: "message";
  status: Status;
  role: "assistant";
  content: (OutputText | Refusal)[];
}
interface ReasoningItem {
  id: string;
  type: "reasoning";
  status: Status;
  summary: never[];
  content: { type: "reasoning_text"; text: string }[];
}
interface FunctionCallItem {
  id: string;
  type: "function_call";
  status: Status;
  call_id: string;
  name: string;
  arguments: string;
}
type OutputItem = MessageItem | ReasoningItem | FunctionCallItem;

/**
 * The response as it is built from the stream's messages, and the Responses events that build it
 * (written as SSE text when `streaming`). Pure but for the ids and the clock.
 */
class ResponseBuilder {
  readonly id: string;
  readonly output: OutputItem[] = [];
  private readonly createdAt: number;
  private sequence = 0;
  private started = false;
  private text = "";
  private message: MessageItem | undefined;
  private reasoning: ReasoningItem | undefined;
  /** Function calls still receiving arguments, by the gateway's call index. */
  private readonly calls = new Map<number, FunctionCallItem>();

  constructor(
    private readonly options: ResponseOptions,
    private readonly streaming: boolean,
  ) {
    this.id = options.id ?? this.newId("resp");
    this.createdAt = options.background?.createdAt ?? Math.floor((options.now ?? Date.now)() / 1000);
  }

  /** SSE text of everything emitted since the last call. */
  take(): string {
    const text = this.text;
    this.text = "";
    return text;
  }

  outputText(delta: string): void {
    const message = this.openMessage();
    let part = message.content.at(-1);
    if (part?.type !== "output_text") {
      this.closePart(message);
      part = { type: "output_text", text: "", annotations: [], logprobs: [] };
      this.addPart(message, part);
    }
    part.text += delta;
    this.emit("response.output_text.delta", { ...this.where(message), delta, logprobs: [] });
  }

  refusal(delta: string): void {
    const message = this.openMessage();
    let part = message.content.at(-1);
    if (part?.type !== "refusal") {
      this.closePart(message);
      part = { type: "refusal", refusal: "" };
      this.addPart(message, part);
    }
    part.refusal += delta;
    this.emit("response.refusal.delta", { ...this.where(message), delta });
  }

  reasoningText(delta: string): void {
    let item = this.reasoning;
    if (item === undefined) {
      this.closeAll("completed");
      item = { id: this.newId("rs"), type: "reasoning", status: "in_progress", summary: [], content: [] };
      this.reasoning = item;
      this.addItem(item);
      const part = { type: "reasoning_text" as const, text: "" };
      item.content.push(part);
      this.emit("response.content_part.added", { ...this.where(item), part });
    }
    item.content[0]!.text += delta;
    this.emit("response.reasoning_text.delta", { ...this.where(item), delta });
  }

  /** A piece of a function call: its id and name come with the first piece of its index. */
  toolCall(index: number, callId: string, name: string, args: string): void {
    let item = this.calls.get(index);
    if (item === undefined) {
      // Parallel calls stay open together (an upstream may interleave their pieces); text or
      // reasoning after them closes them.
      this.closeMessage("completed");
      this.closeReasoning("completed");
      item = {
        id: this.newId("fc"),
        type: "function_call",
        status: "in_progress",
        call_id: callId || (this.options.newId?.("call") ?? `call_${randomBytes(12).toString("hex")}`),
        name,
        arguments: "",
      };
      this.calls.set(index, item);
      this.addItem(item);
    }
    if (args === "") return;
    item.arguments += args;
    this.emit("response.function_call_arguments.delta", {
      item_id: item.id,
      output_index: this.output.indexOf(item),
      delta: args,
    });
  }

  /**
   * A background response's events, read again on each resume, must be the same bytes every time:
   * the log keeps no time, so `response.completed` carries no `completed_at` (the stored response,
   * which is not re-presented, has it).
   */
  private get replayable(): boolean {
    return this.streaming && this.options.background !== undefined;
  }

  /** The response the finish made, if it came. */
  finished: Record<string, unknown> | undefined;

  /** The response at the stream's end, for storage: the finished one, or failed with the output so far. */
  final(code: status, message: string): Record<string, unknown> {
    if (this.finished !== undefined && code === status.OK) return this.finished;
    return this.failed(code, message);
  }

  private failed(code: status, message: string): Record<string, unknown> {
    if (this.options.background && code === status.CANCELLED) return this.response("cancelled", this.options.model, {});
    return this.response("failed", this.options.model, {
      error: { code: code === status.RESOURCE_EXHAUSTED ? "rate_limit_exceeded" : "server_error", message },
    });
  }

  /** The end: open items closed, then `response.completed`, or `response.incomplete` when the output was cut. */
  /** One of the stream's content events, or its finish (which returns the whole response). */
  add(event: ContentOrFinish): Record<string, unknown> | undefined {
    switch (event.$case) {
      case "delta":
        this.outputText(event.value.text);
        return undefined;
      case "reasoning":
        this.reasoningText(event.value.text);
        return undefined;
      case "refusal":
        this.refusal(event.value.text);
        return undefined;
      case "toolCall":
        this.toolCall(event.value.index, event.value.id, event.value.name, event.value.arguments);
        return undefined;
      case "finish":
        return this.finish(event.value.finishReason, event.value.model, event.value.usage);
    }
  }

  finish(finishReason: string, model: string, usage: Usage | undefined): Record<string, unknown> {
    const incomplete =
      finishReason === "length" ? "max_output_tokens" : finishReason === "content_filter" ? "content_filter" : null;
    this.closeAll(incomplete === null ? "completed" : "incomplete");
    const response = this.response(incomplete === null ? "completed" : "incomplete", model || this.options.model, {
      completed_at:
        incomplete === null && !this.replayable ? Math.floor((this.options.now ?? Date.now)() / 1000) : null,
      incomplete_details: incomplete === null ? null : { reason: incomplete },
      usage: usage ? usageOf(usage) : null,
    });
    this.emit(incomplete === null ? "response.completed" : "response.incomplete", { response });
    this.finished = response;
    return response;
  }

  /** A failure after the first byte: `response.failed` with the output so far, then the `error` the SDKs raise. */
  fail(code: status, message: string): void {
    const response = this.failed(code, message);
    this.emit("response.failed", { response });
    // The event's own fields (`code`, `message`, `param`) and, nested, OpenAI's error object: the
    // Python SDK raises only on a nested `error`, the Node SDK on the event's name.
    const { error } = openAIError(code, message);
    this.emit("error", { code: error.code, message, param: error.param, error });
  }

  /** `response.created` and `response.in_progress`, before whatever is written first. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const response = this.response("in_progress", this.options.model, {});
    const created = this.options.background ? { ...response, status: "queued" } : response;
    this.emit("response.created", { response: created });
    this.emit("response.in_progress", { response });
  }

  /** The response as it starts: what a background response's create answers, and is stored as until it ends. */
  initial(): Record<string, unknown> {
    return this.response("in_progress", this.options.model, {});
  }

  private response(state: string, model: string, fields: Record<string, unknown>): Record<string, unknown> {
    const echo = this.options.echo;
    const storage = this.options.storage;
    return {
      id: this.id,
      object: "response",
      created_at: this.createdAt,
      status: state,
      background: this.options.background !== undefined,
      completed_at: null,
      error: null,
      incomplete_details: null,
      instructions: echo.instructions,
      max_output_tokens: echo.max_output_tokens,
      metadata: echo.metadata,
      model,
      output: this.output,
      parallel_tool_calls: echo.parallel_tool_calls,
      previous_response_id: storage?.previousResponseId ?? null,
      reasoning: echo.reasoning,
      store: storage?.store ?? false,
      temperature: echo.temperature,
      text: echo.text,
      tool_choice: echo.tool_choice,
      tools: echo.tools,
      top_p: echo.top_p,
      truncation: "disabled",
      usage: null,
      ...(echo.user !== undefined && { user: echo.user }),
      ...(storage?.conversation !== undefined && { conversation: { id: storage.conversation } }),
      ...fields,
    };
  }

  private openMessage(): MessageItem {
    if (this.message !== undefined) return this.message;
    this.closeAll("completed");
    const message: MessageItem = {
      id: this.newId("msg"),
      type: "message",
      status: "in_progress",
      role: "assistant",
      content: [],
    };
    this.message = message;
    this.addItem(message);
    return message;
  }

  private addItem(item: OutputItem): void {
    this.output.push(item);
    this.emit("response.output_item.added", { output_index: this.output.length - 1, item });
  }

  private addPart(message: MessageItem, part: OutputText | Refusal): void {
    message.content.push(part);
    this.emit("response.content_part.added", { ...this.where(message), part });
  }

  /** The message's last content part is done. */
  private closePart(message: MessageItem): void {
    const part = message.content.at(-1);
    if (part === undefined) return;
    if (part.type === "output_text")
      this.emit("response.output_text.done", { ...this.where(message), text: part.text, logprobs: [] });
    else this.emit("response.refusal.done", { ...this.where(message), refusal: part.refusal });
    this.emit("response.content_part.done", { ...this.where(message), part });
  }

  private closeAll(state: Status): void {
    this.closeMessage(state);
    this.closeReasoning(state);
    for (const item of this.calls.values()) {
      const output_index = this.output.indexOf(item);
      this.emit("response.function_call_arguments.done", { item_id: item.id, output_index, arguments: item.arguments });
      this.closeItem(item, state);
    }
    this.calls.clear();
  }

  private closeMessage(state: Status): void {
    const message = this.message;
    if (message === undefined) return;
    this.message = undefined;
    this.closePart(message);
    this.closeItem(message, state);
  }

  private closeReasoning(state: Status): void {
    const item = this.reasoning;
    if (item === undefined) return;
    this.reasoning = undefined;
    const part = item.content[0]!;
    this.emit("response.reasoning_text.done", { ...this.where(item), text: part.text });
    this.emit("response.content_part.done", { ...this.where(item), part });
    this.closeItem(item, state);
  }

  private closeItem(item: OutputItem, state: Status): void {
    item.status = state;
    this.emit("response.output_item.done", { output_index: this.output.indexOf(item), item });
  }

  /** An event's address of the item's last content part. */
  private where(item: MessageItem | ReasoningItem) {
    return { item_id: item.id, output_index: this.output.indexOf(item), content_index: item.content.length - 1 };
  }

  /** Serialized at once: the items it names change after. */
  private emit(type: string, fields: Record<string, unknown>): void {
    const sequence_number = this.sequence++;
    if (this.streaming && sequence_number > (this.options.after ?? -1))
      this.text += `event: ${type}\ndata: ${JSON.stringify({ type, ...fields, sequence_number })}\n\n`;
  }

  private newId(prefix: string): string {
    return this.options.newId?.(prefix) ?? `${prefix}_${randomBytes(16).toString("hex")}`;
  }
}

/** Streams the Responses events. */
export class ResponseEventPresenter implements Presenter, FinalResponse {
  readonly errorsInBand = true;
  /** `sequence_number` counts the events built from the stream's: a resume re-presents them all (background.ts). */
  readonly numbersEvents = true;
  private readonly builder: ResponseBuilder;

  final(code: status, message: string) {
    return this.builder.final(code, message);
  }

  initial() {
    return this.builder.initial();
  }

  constructor(options: ResponseOptions) {
    this.builder = new ResponseBuilder(options, true);
  }

  present(message: ChatResponse): HttpBody | undefined {
    const event = message.event;
    const builder = this.builder;
    if (event === undefined) return undefined;
    // A heartbeat says only that the model is still quiet: no event, so nothing to number.
    if (event.$case === "heartbeat") return heartbeatBody(event.value.waitedMs);
    builder.start();
    if (event.$case === "error") builder.fail(event.value.code, event.value.message);
    else builder.add(event);
    const text = builder.take();
    // A resume's events up to `starting_after` are built, not written.
    return text === "" ? undefined : sseBody(text);
  }
}

/** Keeps the reply, and writes it as one `response` object when it has finished. */
export class ResponseObjectPresenter implements Presenter, FinalResponse {
  private readonly builder: ResponseBuilder;

  final(code: status, message: string) {
    return this.builder.final(code, message);
  }

  initial() {
    return this.builder.initial();
  }

  constructor(options: ResponseOptions) {
    this.builder = new ResponseBuilder(options, false);
  }

  present(message: ChatResponse): HttpBody | undefined {
    const event = message.event;
    // Nothing was written before the end, so a failure is the call's status: an HTTP error.
    if (event === undefined || event.$case === "heartbeat" || event.$case === "error") return undefined;
    const response = this.builder.add(event);
    return response === undefined ? undefined : jsonBody(response);
  }
}

export function usageOf(usage: Usage) {
  return {
    input_tokens: usage.promptTokens,
    input_tokens_details: { cached_tokens: usage.cachedPromptTokens },
    output_tokens: usage.completionTokens,
    output_tokens_details: { reasoning_tokens: usage.reasoningTokens },
    total_tokens: usage.totalTokens,
  };
}
