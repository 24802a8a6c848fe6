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
// - a character cut between two chunks: servers that cut text by UTF-16 code units (as JavaScript
//   ones do, `@dwmkerr/mock-llm` with `chunkSize: 7`) send each half of a surrogate pair on its own,
//   JSON-escaped (`"\ud83d"`, then `"\ude00"`). A lone half cannot be encoded in protobuf's UTF-8
//   (it becomes U+FFFD, so the caller would join two of them), so a piece's trailing high surrogate
//   is held and put before the next piece of the same kind (text, reasoning, refusal, each tool
//   call's arguments), and what is still held when the stream ends goes out then, as it was sent. A
//   piece that was only that half sends nothing.
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
  /** A high surrogate that ended the call's last piece of arguments, or "". */
  held: string;
}

type TextKind = "reasoning" | "text" | "refusal";

interface ToolCalls {
  /** Calls by the upstream's id, and by the upstream's index (the call that index last named). */
  byId: Map<string, Call>;
  byUpstreamIndex: Map<number, Call>;
  latest: Call | undefined;
  /** In the order they came: a call's gateway index is its place here. */
  inOrder: Call[];
}

export class ChunkTranslator {
  private finishReason = "";
  private model: string;
  private usage: UpstreamUsage | undefined;
  /**
   * The tool calls, made at the first: most replies have none, and a translator lives as long as
   * its stream (issue 24: thousands open at once).
   */
  private tools: ToolCalls | undefined;
  /** Per kind, a high surrogate that ended the kind's last piece, or "": see the header. */
  private readonly held: Record<TextKind, string> = { reasoning: "", text: "", refusal: "" };
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
        this.text("reasoning", nonEmpty(delta.reasoning_content) ?? nonEmpty(delta.reasoning));
        this.text("text", nonEmpty(delta.content));
        this.text("refusal", nonEmpty(delta.refusal));
        if (Array.isArray(delta.tool_calls)) for (const call of delta.tool_calls) this.toolCall(call);
      }
      if (choice.finish_reason) this.finishReason = choice.finish_reason;
    }
    if (chunk.usage) this.usage = usageOf(chunk.usage as WireUsage);
    return out;
  }

  /**
   * The events that end the stream, once it has ended: what is still held (half a character the
   * upstream never completed, sent as it came), then the finish. Throws UpstreamProtocolError when
   * it never said why it stopped (then what is held is dropped with the rest of the cut reply).
   */
  finish(): readonly UpstreamEvent[] {
    // A stream that stops without saying why was cut, even if the connection closed cleanly.
    if (!this.finishReason) throw new UpstreamProtocolError("unfinished");
    const out = this.out;
    out.length = 0;
    for (const kind of ["reasoning", "text", "refusal"] as const) {
      if (this.held[kind] !== "") out.push({ type: kind, text: this.held[kind] });
    }
    for (const call of this.tools?.inOrder ?? []) {
      if (call.held !== "") out.push({ type: "tool_call", index: call.index, id: "", name: "", arguments: call.held });
    }
    const finish: UpstreamFinish = {
      type: "finish",
      finishReason: this.finishReason,
      model: this.model,
      usage: this.usage,
    };
    out.push(finish);
    return out;
  }

  /** A piece of text of one kind, after what was held of that kind, less a high surrogate it ends on. */
  private text(kind: TextKind, piece: string | undefined): void {
    if (piece === undefined) return;
    const [whole, held] = holdHalf(this.held[kind] + piece);
    this.held[kind] = held;
    if (whole !== "") this.out.push({ type: kind, text: whole });
  }

  private toolCall(wire: WireToolCall | null | undefined): void {
    if (typeof wire !== "object" || wire === null) return;
    const id = typeof wire.id === "string" ? wire.id : "";
    const upstreamIndex = typeof wire.index === "number" ? wire.index : undefined;
    const name = nonEmpty(wire.function?.name) ?? "";
    const piece = nonEmpty(wire.function?.arguments) ?? "";
    this.tools ??= { byId: new Map(), byUpstreamIndex: new Map(), latest: undefined, inOrder: [] };
    const tools = this.tools;
    let call =
      id !== ""
        ? tools.byId.get(id)
        : upstreamIndex !== undefined
          ? tools.byUpstreamIndex.get(upstreamIndex)
          : tools.latest;
    const first = call === undefined;
    if (call === undefined) {
      call = { index: tools.inOrder.length, id, held: "" };
      tools.inOrder.push(call);
      if (id !== "") tools.byId.set(id, call);
    }
    if (upstreamIndex !== undefined) tools.byUpstreamIndex.set(upstreamIndex, call);
    tools.latest = call;
    let args = "";
    if (piece !== "") [args, call.held] = holdHalf(call.held + piece);
    // A call's id and name go out once, on its first event; servers that repeat them on every
    // piece are not echoed. A later piece with nothing new is dropped.
    if (first) this.out.push({ type: "tool_call", index: call.index, id: call.id, name, arguments: args });
    else if (args !== "") this.out.push({ type: "tool_call", index: call.index, id: "", name: "", arguments: args });
  }
}

/** `text` split before a high surrogate it ends on (half a character, the rest in the next piece). */
function holdHalf(text: string): [whole: string, held: string] {
  const last = text.charCodeAt(text.length - 1);
  return last >= 0xd800 && last <= 0xdbff ? [text.slice(0, -1), text.slice(-1)] : [text, ""];
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
