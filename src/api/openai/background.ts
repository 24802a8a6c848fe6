// Background responses (`POST /v1/responses` with `background: true`): the generation runs as a
// resumable stream of the chat service (src/resume/), detached from the call, its events kept in
// the stream's log; its response row is written as it starts and rewritten as it ends.
//
// How `sequence_number` maps onto the log: the log keeps the chat service's events (chat.v1's
// ChatResponse, numbered from 1), not the Responses events. A reader, first or resumed, presents
// the log from its first event through a fresh ResponseEventPresenter, which numbers every
// Responses event it builds from 0; a resume with `starting_after=N` builds the same events and
// writes only those numbered after N. The numbers are the same in every reading because the
// presentation is a pure function of the logged events and of what the response row holds: the
// row's `created_at` and echoed settings, item ids derived from the response id (`idsFor`), and
// no merging of a slow reader's events (`numbersEvents`). The cost: a resume presents the events
// before N again (no bytes written for them), which is the log's size at most (RESUME_MAX_STREAM_BYTES).
import { createHash } from "node:crypto";
import type { UpstreamEvent } from "../../upstream/events.js";
import { messageOf } from "../../chat/outbox.js";
import { ResponseObjectPresenter, type ResponseOptions } from "./responses-events.js";
import type { ResponseEcho } from "./responses-request.js";

/** The log's stream id of a response: the id's 32 hex digits written as a UUID. */
export function streamIdOf(responseId: string): string {
  const hex = responseId.slice("resp_".length);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Item ids (`msg_`, `rs_`, `fc_`, `call_`) derived from the response id and their order, so each
 * reading of the stream names its items alike.
 */
export function idsFor(responseId: string): (prefix: string) => string {
  const counts = new Map<string, number>();
  return (prefix) => {
    const n = counts.get(prefix) ?? 0;
    counts.set(prefix, n + 1);
    const digest = createHash("sha256").update(`${responseId}/${prefix}/${n}`).digest("hex");
    return `${prefix}_${digest.slice(0, 32)}`;
  };
}

/** The presenter's options for a response its row describes (as `initial()` wrote it): a resume's. */
export function optionsOfRow(row: Record<string, unknown>, after: number): ResponseOptions {
  const id = String(row.id);
  const pick = <K extends keyof ResponseEcho>(key: K) => row[key] as ResponseEcho[K];
  const echo: ResponseEcho = {
    instructions: pick("instructions"),
    max_output_tokens: pick("max_output_tokens"),
    metadata: pick("metadata"),
    parallel_tool_calls: pick("parallel_tool_calls"),
    reasoning: pick("reasoning"),
    temperature: pick("temperature"),
    text: pick("text"),
    tool_choice: pick("tool_choice"),
    tools: pick("tools"),
    top_p: pick("top_p"),
    ...(typeof row.user === "string" && { user: row.user }),
  };
  const conversation = (row.conversation as { id?: unknown } | undefined)?.id;
  return {
    id,
    model: String(row.model),
    echo,
    newId: idsFor(id),
    storage: {
      store: row.store === true,
      ...(typeof row.previous_response_id === "string" && { previousResponseId: row.previous_response_id }),
      ...(typeof conversation === "string" && { conversation }),
    },
    background: { createdAt: Number(row.created_at) },
    after,
  };
}

/**
 * The response a background generation ends with, built from every event it made (the row's
 * `final`), whoever read the stream or not.
 */
export function followerOf(options: ResponseOptions) {
  const presenter = new ResponseObjectPresenter(options);
  return {
    presenter,
    follow(event: UpstreamEvent): void {
      if (event.type !== "finish") {
        presenter.present(messageOf(event));
        return;
      }
      const { finishReason, model, usage } = event;
      presenter.present({ event: { $case: "finish", value: { finishReason, model, usage } } });
    },
  };
}

/** Whether a stored response object is a background response still running (as far as its row says). */
export function running(row: Record<string, unknown>): boolean {
  return row.background === true && (row.status === "in_progress" || row.status === "queued");
}
