// OpenAI's streamed chat-completion chunks → the gateway's events (see events.ts). One translator
// per upstream attempt (it is stateful and not shared), pure otherwise: no I/O, no clock.
//
// What real servers send, and what is made of it:
// - `delta.content` → text; `delta.reasoning_content` (DeepSeek, vLLM, QwQ) or `delta.reasoning`
//   (OpenRouter, newer vLLM, Ollama) → reasoning, from one of the two only, so a server that fills
//   both with the same text is not forwarded twice; `delta.refusal` → refusal. In one chunk, in
//   that order (reasoning comes before the answer).
// - `delta.tool_calls[]` → tool call pieces. Calls are keyed by `id` when there is one, and given
//   the gateway's own index in order of first appearance: Gemini's compatible endpoint omits
//   `index`, DeepSeek has reused an index for a new call id, and parallel calls may interleave. A
//   piece without an id belongs to the call its upstream `index` last named, or, without either,
//   to the latest call.
// - role-only, empty and usage-only chunks carry nothing to forward (they still count as activity
//   for the watchdog, which the caller of this module tells).
// - `finish_reason` (the last one seen wins), `model`, and `usage` with
//   `completion_tokens_details.reasoning_tokens` and `prompt_tokens_details.cached_tokens` (or
//   DeepSeek's `prompt_cache_hit_tokens`) → the finish event, built once the stream has ended.
import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import { UpstreamProtocolError } from "../../upstream/errors.js";
import type { UpstreamEvent, UpstreamFinish, UpstreamUsage } from "../../upstream/port.js";

/** A chunk's delta with the fields compatible servers add to OpenAI's. */
interface WireDelta {
  content?: string | null;
  reasoning_content?: string | null;
  reasoning?: string | null;
  refusal?: string | null;
  tool_calls?: WireToolCall[] | null;
}

interface WireToolCall {
  index?: number;
  id?: string | null;
  function?: { name?: string | null; arguments?: string | null } | null;
}

interface WireUsage {
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  total_tokens?: number | null;
  completion_tokens_details?: { reasoning_tokens?: number | null } | null;
  prompt_tokens_details?: { cached_tokens?: number | null } | null;
  prompt_cache_hit_tokens?: number | null;
}

interface Call {
  index: number;
  id: string;
}

export class ChunkTranslator {
  private finishReason = "";
  private model: string;
  private usage: UpstreamUsage | undefined;
  /** Calls by the upstream's id, and by the upstream's index (the call that index last named). */
  private readonly callsById = new Map<string, Call>();
  private readonly callsByUpstreamIndex = new Map<number, Call>();
  private latestCall: Call | undefined;
  private calls = 0;
  /**
   * The events of the last chunk read. Reused from chunk to chunk, so a chunk costs no allocation
   * beyond its events: read them before reading the next chunk.
   */
  private readonly out: UpstreamEvent[] = [];

  /** `model`: the model asked for, until the upstream names the one that answered. */
  constructor(model: string) {
    this.model = model;
  }

  /** The events one chunk carries, in order; throws UpstreamProtocolError for JSON that is no chunk. */
  read(chunk: ChatCompletionChunk): readonly UpstreamEvent[] {
    const out = this.out;
    out.length = 0;
    if (!Array.isArray(chunk?.choices)) throw new UpstreamProtocolError("malformed");
    if (chunk.model) this.model = chunk.model;
    const choice = chunk.choices[0];
    if (choice) {
      const delta = choice.delta as WireDelta | undefined;
      if (delta) {
        const reasoning = nonEmpty(delta.reasoning_content) ?? nonEmpty(delta.reasoning);
        if (reasoning !== undefined) out.push({ type: "reasoning", text: reasoning });
        const text = nonEmpty(delta.content);
        if (text !== undefined) out.push({ type: "text", text });
        const refusal = nonEmpty(delta.refusal);
        if (refusal !== undefined) out.push({ type: "refusal", text: refusal });
        if (Array.isArray(delta.tool_calls)) for (const call of delta.tool_calls) this.toolCall(call);
      }
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    if (chunk.usage) this.usage = usageOf(chunk.usage as WireUsage);
    return out;
  }

  /** The stream's finish, once it has ended; throws UpstreamProtocolError when it never said why it stopped. */
  finish(): UpstreamFinish {
    // A stream that stops without saying why was cut, even if the connection closed cleanly.
    if (!this.finishReason) throw new UpstreamProtocolError("unfinished");
    return { type: "finish", finishReason: this.finishReason, model: this.model, usage: this.usage };
  }

  private toolCall(wire: WireToolCall | null | undefined): void {
    if (typeof wire !== "object" || wire === null) return;
    const id = typeof wire.id === "string" ? wire.id : "";
    const upstreamIndex = typeof wire.index === "number" ? wire.index : undefined;
    const name = nonEmpty(wire.function?.name) ?? "";
    const args = nonEmpty(wire.function?.arguments) ?? "";
    let call =
      id !== ""
        ? this.callsById.get(id)
        : upstreamIndex !== undefined
          ? this.callsByUpstreamIndex.get(upstreamIndex)
          : this.latestCall;
    const first = call === undefined;
    if (call === undefined) {
      call = { index: this.calls++, id };
      if (id !== "") this.callsById.set(id, call);
    }
    if (upstreamIndex !== undefined) this.callsByUpstreamIndex.set(upstreamIndex, call);
    this.latestCall = call;
    // A call's id and name go out once, on its first event; servers that repeat them on every
    // piece are not echoed. A later piece with nothing new is dropped.
    if (first) this.out.push({ type: "tool_call", index: call.index, id: call.id, name, arguments: args });
    else if (args !== "") this.out.push({ type: "tool_call", index: call.index, id: "", name: "", arguments: args });
  }
}

function nonEmpty(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function usageOf(wire: WireUsage): UpstreamUsage {
  return {
    promptTokens: count(wire.prompt_tokens),
    completionTokens: count(wire.completion_tokens),
    totalTokens: count(wire.total_tokens),
    reasoningTokens: count(wire.completion_tokens_details?.reasoning_tokens),
    cachedPromptTokens: count(wire.prompt_tokens_details?.cached_tokens ?? wire.prompt_cache_hit_tokens),
  };
}

/** A token count as a uint32: 0 for anything that is not a non-negative number. */
function count(value: unknown): number {
  return typeof value === "number" && value > 0 ? Math.min(Math.floor(value), 0xffffffff) : 0;
}
