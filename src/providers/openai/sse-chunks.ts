// The body of a streamed chat completion, decoded one network read at a time: every SSE event a read
// completes is parsed (eventsource-parser) and its JSON decoded synchronously, so a read of a hundred
// events costs one await, not a hundred passes through async generators.
//
// What it makes of the events is what the openai SDK's Stream makes of them (the gateway mapped
// those outcomes before it read the body itself, and errors.ts still maps the same classes):
// - `data: [DONE]` ends the stream; anything after it is ignored;
// - data that is not JSON → SyntaxError (the gateway's UpstreamProtocolError "malformed");
// - `event: error`, or data with an `error` member → OpenAI.APIError without a status, carrying the
//   error body and the response's headers (stream-error.ts reads what it stands for);
// - an event the body ends without its blank line is still dispatched (servers sometimes omit it).
// A failure is reported after the events before it in the same read: they reached the upstream's
// wire first, and the caller gets them first.
import { createParser, type EventSourceMessage, type EventSourceParser } from "eventsource-parser";
import OpenAI from "openai";

const NONE: readonly unknown[] = [];

export class SseChunkDecoder {
  /** The upstream sent `[DONE]`. */
  done = false;
  /** What stopped the stream, once something did; read it after handling the read's chunks. */
  failure: Error | undefined;
  private readonly text = new TextDecoder();
  private readonly parser: EventSourceParser;
  /** The chunks of the current read. */
  private out: unknown[] = [];

  /** `response`: the response's headers, asked for only by an error event (see APIError). */
  constructor(private readonly response: { headers(): Headers }) {
    this.parser = createParser({ onEvent: (event) => this.event(event) });
  }

  /** The JSON payloads of the events `bytes` completes, in order. */
  read(bytes: Uint8Array): readonly unknown[] {
    if (this.done || this.failure !== undefined) return NONE;
    // The bytes after the last line break are decoded on their own: the parser keeps an unfinished
    // line until the next read as a slice of the string it was fed, and V8's slice keeps that whole
    // string alive, so a stalled caller's stream would hold the whole read's text (up to 64 KiB)
    // for the sake of a few hundred bytes.
    const end = lastLineBreak(bytes) + 1;
    if (end === 0 || end === bytes.length) {
      this.parser.feed(this.text.decode(bytes, { stream: true }));
    } else {
      this.parser.feed(this.text.decode(bytes.subarray(0, end), { stream: true }));
      this.parser.feed(this.text.decode(bytes.subarray(end), { stream: true }));
    }
    return this.take();
  }

  /** The body has ended: what it still held (an event without its closing blank line). */
  end(): readonly unknown[] {
    if (!this.done && this.failure === undefined) this.parser.feed(`${this.text.decode()}\n\n`);
    return this.take();
  }

  /**
   * The read's chunks, which the decoder then forgets: kept, they would live until the next read,
   * a token's wait away (issue 24: the last read's parsed chunks, ~0.8 KiB per open stream).
   */
  private take(): readonly unknown[] {
    const out = this.out;
    if (out.length === 0) return NONE;
    this.out = [];
    return out;
  }

  private event(event: EventSourceMessage): void {
    if (this.done || this.failure !== undefined) return;
    if (event.data === "[DONE]") {
      this.done = true;
      return;
    }
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      this.failure = new SyntaxError("Error reading response: malformed server-sent event JSON.");
      return;
    }
    const body = data as { error?: unknown } | null;
    if (event.event === "error") {
      this.failure = new OpenAI.APIError(
        undefined,
        (body?.error ?? body) as object,
        undefined,
        this.response.headers(),
      );
    } else if (body?.error) {
      this.failure = new OpenAI.APIError(undefined, body.error as object, undefined, this.response.headers());
    } else {
      this.out.push(data);
    }
  }
}

/** The index of the last LF or CR in `bytes`, -1 if there is none. */
function lastLineBreak(bytes: Uint8Array): number {
  // From the end: a read usually ends within an event's length of its last line break.
  let i = bytes.length - 1;
  while (i >= 0 && bytes[i] !== 0x0a && bytes[i] !== 0x0d) i--;
  return i;
}
