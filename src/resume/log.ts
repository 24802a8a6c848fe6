// The event log of resumable streams, the port: each stream's events kept in order under its id,
// numbered from 1, with the caller key that started it, so a caller that lost its connection reads
// them again from where it was (ResumeChat) and then the live tail. One writer per stream (the
// generation, src/chat/service.ts), any number of readers (the calls attached to it). Two
// implementations: this process's memory (memory-log.ts), and Redis for replicas (see
// docs/resuming.md). Readers are stateless (they pass the position they are at), so a reader on
// another process than the writer's needs nothing from the writer but the log.
import type { ChatResponse } from "../contract/chat.js";

/** What an error event's call status needs beyond the in-band event (its google.rpc details). */
export interface LoggedFailure {
  code: number;
  details: string;
  /** The error table's row (ErrorInfo's reason). */
  cause: string;
  retryAfterSeconds?: number | undefined;
  /** The upstream the generation had reached (ErrorInfo's metadata). */
  upstream?: string | undefined;
}

export interface LoggedEvent {
  /** 1 for a stream's first event, +1 for each next one. */
  sequence: number;
  /** The event as written to a caller, without its position (the reader adds it). */
  message: ChatResponse;
  /** On the error event that ends a failed stream. */
  failure?: LoggedFailure | undefined;
}

export type ReadResult =
  /** Events after the position asked for, in order; `ended`: the last of them ends the stream. */
  | { kind: "events"; events: LoggedEvent[]; ended: boolean }
  /** Nothing new within the wait (the reader may send a heartbeat and ask again). */
  | { kind: "idle" }
  /** Events after the position asked for are no longer all kept: `oldest` is the first kept. */
  | { kind: "trimmed"; oldest: number }
  /** The stream is no longer kept (its retention window passed while reading). */
  | { kind: "gone" }
  /** Its generation stopped without ending it (the generating process died). */
  | { kind: "lost" };

export interface LogWriter {
  readonly streamId: string;
  /** Appends one event; returns its sequence number. */
  append(message: ChatResponse): number;
  /** Appends the stream's last event (its finish, or its error with `failure`); nothing comes after. */
  end(message: ChatResponse, failure?: LoggedFailure): number;
}

export interface LogReader {
  /**
   * The events after `after` (a sequence number; 0 for all), as soon as there is at least one,
   * waiting at most `waitMs`. Rejects with the signal's reason when it aborts.
   */
  read(after: number, waitMs: number, signal: AbortSignal): Promise<ReadResult>;
  /** The reader is done: what it holds (a connection) is given back. */
  close(): void;
}

/** A new stream could not be kept: the log is full or unreachable. */
export class LogRefused extends Error {
  constructor(
    readonly why: "full" | "unavailable",
    detail: string,
  ) {
    super(detail);
    this.name = "LogRefused";
  }
}

export interface EventLog {
  readonly kind: "memory" | "redis";
  /**
   * A new stream owned by `owner`; rejects with LogRefused when it cannot be kept. `onBroken`: an
   * append failed (the store went away), so what follows could not be kept without a gap; the
   * generation must stop. `id`: the stream's id when the caller chose it (a UUID: a background
   * response's id is its stream's, src/api/openai/background.ts); a new random one otherwise.
   */
  create(owner: string, onBroken: (error: Error) => void, id?: string): Promise<LogWriter>;
  /**
   * A reader of the stream, or undefined when there is none for `owner`: unknown, another owner's,
   * or forgotten (its retention window passed), one answer for all so no caller learns of another's.
   */
  open(streamId: string, owner: string): Promise<LogReader | undefined>;
  /** A reader of a stream this process just created (its owner known): no lookup. */
  reader(streamId: string): LogReader;
  /** Tells the process generating the stream, wherever it is, to stop it (see `onCancel`). */
  cancelElsewhere(streamId: string): Promise<void>;
  /** `listener` hears each stream another process was asked to cancel (cancelElsewhere). */
  onCancel(listener: (streamId: string) => void): void;
  /** Whether a reader in another process is attached to the stream now (it holds the grace). */
  attachedElsewhere(streamId: string): Promise<boolean>;
  close(): Promise<void>;
}

/** Bytes an event counts for against the bounds: its text, plus a fixed cost per event. */
export function sizeOf(message: ChatResponse): number {
  const event = message.event;
  switch (event?.$case) {
    case "delta":
    case "reasoning":
    case "refusal":
      return EVENT_OVERHEAD_BYTES + event.value.text.length;
    case "toolCall":
      return EVENT_OVERHEAD_BYTES + event.value.arguments.length + event.value.id.length + event.value.name.length;
    case "error":
      return EVENT_OVERHEAD_BYTES + event.value.message.length;
    default:
      return EVENT_OVERHEAD_BYTES;
  }
}

/** A kept event's own cost in memory besides its text (the objects around it), measured roughly. */
export const EVENT_OVERHEAD_BYTES = 128;
