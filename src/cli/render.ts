// How a reply looks in the terminal. Text mode: the answer on stdout, as it arrives; reasoning
// (dimmed), tool calls and the closing usage line on stderr, so `> answer.txt` keeps the answer
// alone while a terminal shows everything in order. JSON mode: one event per line on stdout, in
// the proto's JSON form (the same objects as the `data:` lines of POST /chat).
import { styleText } from "node:util";
import { ChatResponse, type Finish } from "../contract/web.js";
import { statusName } from "./exit-codes.js";
import type { CallFailed, ChatEvent } from "./call.js";

export interface Renderer {
  event(event: ChatEvent): void;
  /** The call failed; `inBand` when the failure already arrived as an `error` event. */
  failed(failure: CallFailed): void;
  /** Ends any line left open (after a finish, a failure or an interruption). */
  close(): void;
}

type Stream = NodeJS.WritableStream & { isTTY?: boolean };

/** The line shown for a failed call: `INVALID_ARGUMENT (HTTP 400): text: must not be empty`. */
export function describeFailure(failure: CallFailed): string {
  const http = failure.httpStatus ? ` (HTTP ${failure.httpStatus})` : "";
  // The gateway's own message names the wait already ("retry after 7s"); others may not.
  const retry =
    failure.retryAfter && !/retry after/i.test(failure.message) ? `; retry after ${failure.retryAfter}s` : "";
  return `${statusName(failure.code)}${http}: ${failure.message}${retry}`;
}

export function textRenderer(out: Stream, err: Stream): Renderer {
  // Which stream has a line without its newline yet, and what is being written on it.
  let open: { stream: Stream; kind: string } | undefined;
  const style = (format: Parameters<typeof styleText>[0], text: string, stream: Stream) =>
    styleText(format, text, { stream: stream as NodeJS.WriteStream });

  const write = (stream: Stream, kind: string, text: string) => {
    if (open && (open.stream !== stream || open.kind !== kind)) endLine();
    if (text === "") return;
    stream.write(text);
    open = text.endsWith("\n") ? undefined : { stream, kind };
  };
  const endLine = () => {
    if (open) open.stream.write("\n");
    open = undefined;
  };

  return {
    event(event) {
      switch (event.$case) {
        case "delta":
          write(out, "answer", event.value.text);
          break;
        case "refusal":
          write(out, "answer", event.value.text);
          break;
        case "reasoning":
          write(err, "reasoning", style("dim", event.value.text, err));
          break;
        case "toolCall": {
          const { index, id, name, arguments: args } = event.value;
          const kind = `tool ${index}`;
          // A call's first event names it; a fragment of a call interleaved with another's gets
          // its index again.
          if (name || id || open?.kind !== kind) {
            endLine();
            const title = [name, id && style("dim", `(${id})`, err)].filter(Boolean).join(" ");
            write(err, kind, `${style("cyan", `[tool call ${index}]`, err)} ${title}${title ? " " : ""}`);
          }
          write(err, kind, args);
          break;
        }
        case "finish":
          endLine();
          err.write(`${style("dim", usageLine(event.value), err)}\n`);
          break;
        case "error":
          // Reported by failed(), which follows with the call's status.
          break;
        case "heartbeat":
          break;
      }
    },
    failed(failure) {
      endLine();
      err.write(`${style("red", "error:", err)} ${describeFailure(failure)}\n`);
    },
    close: endLine,
  };
}

/** `stop · gpt-4o-mini · 12 prompt + 41 completion = 53 tokens (20 reasoning, 8 cached)` */
export function usageLine(finish: Finish): string {
  const parts = [finish.finishReason || "finished", finish.model].filter(Boolean);
  const u = finish.usage;
  if (u) {
    const extra = [
      u.reasoningTokens && `${u.reasoningTokens} reasoning`,
      u.cachedPromptTokens && `${u.cachedPromptTokens} cached`,
    ].filter(Boolean);
    parts.push(
      `${u.promptTokens} prompt + ${u.completionTokens} completion = ${u.totalTokens} tokens` +
        (extra.length ? ` (${extra.join(", ")})` : ""),
    );
  }
  return parts.join(" · ");
}

export function jsonRenderer(out: Stream, err: Stream): Renderer {
  let sawError = false;
  return {
    event(event) {
      if (event.$case === "error") sawError = true;
      out.write(`${JSON.stringify(ChatResponse.toJSON({ event }))}\n`);
    },
    failed(failure) {
      // A failure before the first event has no `error` event: write one, so a reader of the lines
      // always sees exactly one `finish` or `error`.
      if (!sawError) {
        const error = { code: failure.code, status: statusName(failure.code), message: failure.message };
        out.write(`${JSON.stringify({ error })}\n`);
      }
      err.write(`error: ${describeFailure(failure)}\n`);
    },
    close() {},
  };
}
