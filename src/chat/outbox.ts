// The way out to one caller, with backpressure: the events of a stream go to grpc-js one message
// each while the caller keeps up; while grpc-js holds a full queue for the call (write() said false:
// the caller or the connection is behind), arriving events are held here and sent at the next
// 'drain', each merged into the one before it when both are of the same kind (and, for tool calls,
// the same call): never text into reasoning, never pieces of two calls, and the order across kinds
// is kept. Merging only joins what could not have left sooner, and saves a message's cost per
// event when behind. Past MAX_MERGED_CHARS or MAX_HELD_MESSAGES the producer is told to wait for
// the caller (`push` returns true), so memory stays bounded.
import { status, type ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse } from "../contract/chat.js";
import type { UpstreamEvent, UpstreamFinish } from "../upstream/port.js";
import type { GatewayStatus } from "./errors.js";
import { requestIdMetadata } from "./status-details.js";

export type Call = ServerWritableStream<ChatRequest, ChatResponse>;
/** A server-streaming call of any message type: chat.v1's Chat, or an API shape's (HttpBody). */
export type AnyCall = ServerWritableStream<unknown, unknown>;

/**
 * Turns the stream's messages into another API's shape as they are written (see src/api/): what
 * to write for `message`, or undefined to write nothing for it (a reply sent whole at its end, a
 * heartbeat the shape has no room for). Stateful, one per call.
 */
export interface Presenter {
  present(message: ChatResponse): unknown;
  /**
   * The shape carries a failure inside the stream itself (an `error` event): once something was
   * written, the call then ends as written rather than with an error status, which a proxy
   * converting statuses (Envoy's transcoder) could otherwise answer for in place of what was sent.
   */
  readonly errorsInBand?: boolean;
  /**
   * The shape numbers each event it writes from the stream's own events (the Responses API's
   * `sequence_number`, re-presented on a resume): a resumable stream's reader then never merges
   * events for it, which would change the numbers between one reading and another (replay.ts).
   */
  readonly numbersEvents?: boolean;
}
export type ContentEvent = Exclude<UpstreamEvent, UpstreamFinish>;

/** Held text beyond which the gateway stops reading the upstream until the caller catches up. */
export const MAX_MERGED_CHARS = 1024;
/**
 * Held messages beyond which it stops too: events that cannot be merged (text after reasoning,
 * pieces of two tool calls in turn) are held one message each.
 */
const MAX_HELD_MESSAGES = 64;

export class Outbox {
  /** The most characters of event text this stream ever had held or queued, waiting for the caller. */
  peakBuffered = 0;
  /** Characters of event text held here or handed to grpc-js and not yet written to the connection. */
  private buffered = 0;
  private readonly held: ChatResponse[] = [];
  private heldChars = 0;
  /**
   * The response's headers go out with its first message, never before: until then a failure is
   * a trailers-only status, which Envoy turns into an HTTP error status.
   */
  private responding = false;
  private readonly flushHeld = () => this.flush();

  constructor(
    private readonly call: AnyCall,
    private readonly requestId: string,
    /** Told of each message written (see CallObserver.sent). */
    private readonly sent: ((message: ChatResponse) => void) | undefined,
    /** chat.v1's messages go out as they are without one. */
    private readonly presenter?: Presenter,
  ) {}

  /** Whether a failure now goes to the caller inside the stream only (see Presenter.errorsInBand). */
  get failsInBand(): boolean {
    return this.responding && this.presenter?.errorsInBand === true;
  }

  /** Whether anything was written: from then on the HTTP status through Envoy is 200. */
  get started(): boolean {
    return this.responding;
  }

  /**
   * A content event: written now when nothing waits before it and the call keeps up, else held.
   * True when the caller is so far behind that the producer must wait for `drained` before more.
   */
  push(event: ContentEvent): boolean {
    const size =
      event.type === "tool_call" ? event.arguments.length + event.id.length + event.name.length : event.text.length;
    this.buffered += size;
    if (this.buffered > this.peakBuffered) this.peakBuffered = this.buffered;
    if (this.held.length === 0 && !this.call.writableNeedDrain) {
      this.write(messageOf(event), size);
      return false;
    }
    this.hold(event, size);
    return this.heldChars >= MAX_MERGED_CHARS || this.held.length >= MAX_HELD_MESSAGES;
  }

  /** The stream's one finish, after everything held. */
  /** `historyTrimmedTurns`: stored turns left out of the upstream request (a stored conversation's). */
  finish(event: UpstreamFinish, historyTrimmedTurns = 0): void {
    this.flush();
    const value = {
      finishReason: event.finishReason,
      model: event.model,
      usage: event.usage,
      ...(historyTrimmedTurns > 0 && { historyTrimmedTurns }),
    };
    this.write({ event: { $case: "finish", value } }, 0);
  }

  /**
   * The stream's one error, after everything held: once a message went out, the HTTP status through
   * Envoy is already 200, so the error travels inside the stream too, or an HTTP client would see a
   * clean end. The caller gets the status itself from the call's 'error' (see service.ts).
   */
  fail(outcome: GatewayStatus): void {
    this.flush();
    if (!this.responding) return;
    const value = { code: outcome.code, status: status[outcome.code], message: outcome.details };
    this.write({ event: { $case: "error", value } }, 0);
  }

  /**
   * A heartbeat goes out only when nothing is waiting to be sent: it is never merged, never put
   * before content, and a caller that has data to read (the gateway holding the upstream back for
   * it) is not idle.
   */
  heartbeat(waitedMs: number): void {
    if (this.held.length > 0 || this.call.writableNeedDrain || this.call.cancelled) return;
    this.write({ event: { $case: "heartbeat", value: { waitedMs: Math.min(Math.round(waitedMs), 0xffffffff) } } }, 0);
  }

  /** Resolves at the call's next 'drain'; rejects with the signal's reason if it aborts first. */
  drained(signal: AbortSignal): Promise<void> {
    return drained(this.call, signal);
  }

  /** Writes what is held, in order. */
  flush(): void {
    this.call.off("drain", this.flushHeld);
    if (this.held.length === 0) return;
    const messages = this.held.splice(0);
    this.heldChars = 0;
    for (const message of messages) this.write(message, sizeOf(message));
  }

  /** The stream is over: nothing more is flushed at a later 'drain'. */
  close(): void {
    this.call.off("drain", this.flushHeld);
  }

  private write(message: ChatResponse, size: number): void {
    this.sent?.(message);
    const out = this.presenter === undefined ? message : this.presenter.present(message);
    if (out === undefined) {
      this.buffered -= size;
      return;
    }
    if (!this.responding) {
      this.responding = true;
      this.call.sendMetadata(requestIdMetadata(this.requestId));
    }
    this.call.write(out, () => {
      this.buffered -= size;
    });
  }

  private hold(event: ContentEvent, size: number): void {
    this.heldChars += size;
    const message = messageOf(event);
    const last = this.held.length - 1;
    const merged = last >= 0 ? joined(this.held[last]!, message) : undefined;
    if (merged !== undefined) {
      this.held[last] = merged;
      return;
    }
    if (this.held.length === 0) this.call.on("drain", this.flushHeld);
    this.held.push(message);
  }
}

/** Resolves at `call`'s next 'drain'; rejects with the signal's reason if it aborts first. */
export function drained(call: AnyCall, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason as Error);
      else resolve();
    };
    call.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

export function messageOf(event: ContentEvent): ChatResponse {
  switch (event.type) {
    case "text":
      return { event: { $case: "delta", value: { text: event.text } } };
    case "reasoning":
      return { event: { $case: "reasoning", value: { text: event.text } } };
    case "refusal":
      return { event: { $case: "refusal", value: { text: event.text } } };
    case "tool_call":
      return {
        event: {
          $case: "toolCall",
          value: { index: event.index, id: event.id, name: event.name, arguments: event.arguments },
        },
      };
  }
}

/**
 * Two consecutive messages as one, when both are of one kind (and, for tool calls, one call); else
 * undefined: never text into reasoning, never pieces of two calls. The outbox merges what is held
 * for a caller behind; a resumable stream's reader merges what it replays (replay.ts).
 */
export function joined(a: ChatResponse, b: ChatResponse): ChatResponse | undefined {
  const x = a.event;
  const y = b.event;
  if (x === undefined || y === undefined) return undefined;
  if (x.$case === "delta" && y.$case === "delta")
    return { event: { $case: "delta", value: { text: x.value.text + y.value.text } } };
  if (x.$case === "reasoning" && y.$case === "reasoning")
    return { event: { $case: "reasoning", value: { text: x.value.text + y.value.text } } };
  if (x.$case === "refusal" && y.$case === "refusal")
    return { event: { $case: "refusal", value: { text: x.value.text + y.value.text } } };
  // A call's first piece (its id and name) is never merged into anything before it.
  if (
    x.$case === "toolCall" &&
    y.$case === "toolCall" &&
    x.value.index === y.value.index &&
    !y.value.id &&
    !y.value.name
  )
    return { event: { $case: "toolCall", value: { ...x.value, arguments: x.value.arguments + y.value.arguments } } };
  return undefined;
}

/** The characters a content message holds (for the buffer accounting). */
function sizeOf(message: ChatResponse): number {
  const event = message.event;
  if (event?.$case === "toolCall")
    return event.value.arguments.length + event.value.id.length + event.value.name.length;
  if (event?.$case === "delta" || event?.$case === "reasoning" || event?.$case === "refusal")
    return event.value.text.length;
  return 0;
}
