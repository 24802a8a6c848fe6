// A resumable stream's events, read from its log (src/resume/), written to one call: from the
// position the caller asks for, each event once and in order with its sequence number, then the
// live tail, then the stream's one finish or error. A caller that keeps up gets one message per
// event; one that fell behind gets what accumulated meanwhile merged by kind (as the outbox merges),
// each merged message carrying the position of the last event it joins, so a resume from it never
// repeats text. The stream id goes on the first message the call writes only: it is what a
// resume needs, and on every delta it would cost more bytes than the delta's text (docs/resuming.md).
import { status } from "@grpc/grpc-js";
import type { ChatResponse } from "../contract/chat.js";
import type { LogReader, LoggedEvent, LoggedFailure } from "../resume/log.js";
import type { GatewayStatus } from "./errors.js";
import { drained, joined, type AnyCall, type Presenter } from "./outbox.js";
import { STREAM_ID_KEY, errorTrailers, requestIdMetadata } from "./status-details.js";

export interface ReplayOptions {
  streamId: string;
  /** The last sequence the caller saw (0: from the first event). */
  after: number;
  requestId: string;
  /** Silence after which the caller gets a heartbeat, and again every as long (0: none). */
  heartbeatMs: number;
  /** chat.v1's messages go out as they are without one. */
  presenter?: Presenter | undefined;
  /** Everything up to this position was written to the caller (it holds the generation back: Runs). */
  onProgress?: ((sequence: number) => void) | undefined;
  /** The log failed under the reader (the caller was told UNAVAILABLE). */
  onReadError?: (error: unknown) => void;
  /**
   * The caller left before anything was written to it: it never learned the stream's id (no
   * header, no event), so nobody can resume the stream.
   */
  onLeftUnanswered?: () => void;
}

/** Longest wait for the log when heartbeats are off: a read is cheap, and it notices a lost run. */
const IDLE_READ_MS = 5_000;

/** Writes the stream to `call` until its end, the caller leaving, or a failure to read it. */
export async function replay(call: AnyCall, reader: LogReader, options: ReplayOptions): Promise<void> {
  const cancelled = new AbortController();
  const onCancelled = () => cancelled.abort(new Error("caller left"));
  call.on("cancelled", onCancelled);
  const writer = new ReplayWriter(call, options);
  let after = options.after;
  let lastEventAt = performance.now();
  let behind = false;
  try {
    for (;;) {
      const waitMs = options.heartbeatMs > 0 ? options.heartbeatMs : IDLE_READ_MS;
      const result = await reader.read(after, waitMs, cancelled.signal);
      switch (result.kind) {
        case "idle":
          if (options.heartbeatMs > 0 && !call.writableNeedDrain) writer.heartbeat(performance.now() - lastEventAt);
          continue;
        case "trimmed":
          return writer.fail(trimmed(after, result.oldest));
        case "gone":
          return writer.fail({
            code: status.NOT_FOUND,
            details: "stream not found: its retention window passed",
            cause: "stream_expired",
          });
        case "lost":
          return writer.fail({
            code: status.UNAVAILABLE,
            details: "the generation was lost: the replica generating it stopped; start the request again",
            cause: "generation_lost",
          });
        case "events":
          break;
      }
      if (result.events.length === 0) return writer.endQuietly();
      lastEventAt = performance.now();
      const events = behind && !options.presenter?.numbersEvents ? merged(result.events) : result.events;
      for (const event of events) {
        if (event.failure) return writer.fail(event.failure, event);
        writer.write(event);
        if (event.message.event?.$case === "finish") return writer.end();
      }
      after = result.events[result.events.length - 1]!.sequence;
      options.onProgress?.(after);
      // Behind: wait for the transport to take what it holds, then take everything that arrived
      // meanwhile in one read, merged.
      behind = call.writableNeedDrain;
      if (behind) await drained(call, cancelled.signal);
    }
  } catch (error: unknown) {
    // The caller left: nothing to write to. Anything else is the log failing under the reader.
    if (cancelled.signal.aborted) {
      if (!writer.responding) options.onLeftUnanswered?.();
    } else {
      writer.fail({
        code: status.UNAVAILABLE,
        details: "resumable stream store unavailable; retry",
        cause: "resume_store",
      });
      options.onReadError?.(error);
    }
  } finally {
    call.off("cancelled", onCancelled);
    reader.close();
  }
}

function trimmed(after: number, oldest: number): GatewayStatus {
  return {
    code: status.OUT_OF_RANGE,
    details: `events after ${after} are no longer kept (the oldest kept is ${oldest}): start the request again`,
    cause: "resume_trimmed",
  };
}

class ReplayWriter {
  /** Something (headers, a heartbeat, an event) was written to the call. */
  responding = false;
  /** The stream id went on an event: the first positioned one, even when a heartbeat came before it. */
  private named = false;

  constructor(
    private readonly call: AnyCall,
    private readonly options: ReplayOptions,
  ) {}

  write(event: LoggedEvent): void {
    const message: ChatResponse = { ...event.message, sequence: event.sequence };
    if (!this.named) {
      message.streamId = this.options.streamId;
      this.named = true;
    }
    this.send(message);
  }

  heartbeat(waitedMs: number): void {
    this.send({ event: { $case: "heartbeat", value: { waitedMs: Math.min(Math.round(waitedMs), 0xffffffff) } } });
  }

  end(): void {
    this.call.end(requestIdMetadata(this.options.requestId));
  }

  /** The caller asked from the stream's end: it has seen everything. */
  endQuietly(): void {
    this.end();
  }

  /**
   * The stream's error: in-band (with its position when it is the log's) once something was
   * written, and as the call's status, as Chat's own errors (service.ts).
   */
  fail(failure: LoggedFailure, event?: LoggedEvent): void {
    if (this.call.cancelled) return;
    if (this.responding) {
      const value = { code: failure.code, status: status[failure.code] ?? "UNKNOWN", message: failure.details };
      this.send({
        event: { $case: "error", value },
        ...(event && { sequence: event.sequence }),
      });
      if (this.options.presenter?.errorsInBand) {
        this.end();
        return;
      }
    }
    const metadata = errorTrailers(failure, { requestId: this.options.requestId, upstream: failure.upstream });
    this.call.emit("error", { code: failure.code, details: failure.details, metadata });
  }

  private send(message: ChatResponse): void {
    const presenter = this.options.presenter;
    const out = presenter === undefined ? message : presenter.present(message);
    if (out === undefined) return;
    if (!this.responding) {
      this.responding = true;
      const metadata = requestIdMetadata(this.options.requestId);
      // Chat's own shape (not another API's presenter): the stream id as a header too, which is
      // what Envoy's http route looks for before it adds SSE `id:` lines (envoy.yaml).
      if (presenter === undefined) metadata.set(STREAM_ID_KEY, this.options.streamId);
      this.call.sendMetadata(metadata);
    }
    this.call.write(out);
  }
}

/** Consecutive events of one kind (and one tool call) joined, each carrying the last position it covers. */
export function merged(events: LoggedEvent[]): LoggedEvent[] {
  const out: LoggedEvent[] = [];
  for (const event of events) {
    const last = out[out.length - 1];
    const message = last && !last.failure && !event.failure ? joined(last.message, event.message) : undefined;
    if (message && last) out[out.length - 1] = { sequence: event.sequence, message };
    else out.push(event);
  }
  return out;
}
