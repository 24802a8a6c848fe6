// The upstream model, reached through the official openai SDK: any OpenAI-compatible
// chat-completions API (OpenAI, DeepSeek, Yi, vLLM, Ollama, llama.cpp server, ...).
import OpenAI from "openai";
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming } from "openai/resources/chat/completions";
import { UpstreamProtocolError } from "../errors.js";
import { toOpenAIParams } from "./openai-params.js";
import type { UpstreamRequest } from "./request.js";

export type { UpstreamMessage, UpstreamRequest } from "./request.js";

export interface UpstreamUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export type UpstreamEvent =
  | { type: "delta"; text: string }
  | { type: "finish"; finishReason: string; model: string; usage: UpstreamUsage | undefined };

/** One streamed completion: deltas as they arrive, then exactly one finish. Aborting `signal` ends it. */
export interface ChatUpstream {
  stream(request: UpstreamRequest, signal: AbortSignal): AsyncIterable<UpstreamEvent>;
}

export interface OpenAIUpstreamOptions {
  baseURL: string;
  apiKey: string | undefined;
  maxRetries: number;
  timeoutMs: number;
  /** Used instead of the global fetch (tracing headers, retry counting). */
  fetch?: typeof fetch;
}

export class OpenAIUpstream implements ChatUpstream {
  private readonly client: OpenAI;
  /** Cleared the first time the server refuses `stream_options`: some compatible servers do. */
  private sendStreamOptions = true;

  constructor(options: OpenAIUpstreamOptions) {
    this.client = new OpenAI({
      baseURL: options.baseURL,
      // The SDK insists on a key; local servers (Ollama, llama.cpp) ignore whatever is sent.
      apiKey: options.apiKey ?? "no-key",
      maxRetries: options.maxRetries,
      timeout: options.timeoutMs,
      logLevel: "off",
      // Not the SDK's OPENAI_ORG_ID / OPENAI_PROJECT_ID: they would go to every upstream.
      organization: null,
      project: null,
      ...(options.fetch && { fetch: options.fetch }),
    });
  }

  async *stream(request: UpstreamRequest, signal: AbortSignal): AsyncIterable<UpstreamEvent> {
    const chunks = await this.open(request, signal);
    let finishReason = "";
    let model = request.model;
    let usage: UpstreamUsage | undefined;
    try {
      for await (const chunk of chunks) {
        model = chunk.model || model;
        const choice = chunk.choices[0];
        if (choice) {
          const text = choice.delta?.content;
          if (text) yield { type: "delta", text };
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
        if (chunk.usage) {
          usage = {
            promptTokens: chunk.usage.prompt_tokens,
            completionTokens: chunk.usage.completion_tokens,
            totalTokens: chunk.usage.total_tokens,
          };
        }
      }
    } catch (error: unknown) {
      if (signal.aborted) throw signal.reason;
      throw classifyStreamError(error);
    }
    // An abort mid-stream ends the SDK's iterator quietly; the caller reads signal.reason.
    if (signal.aborted) throw signal.reason;
    // A stream that stops without saying why was cut, even if the connection closed cleanly.
    if (!finishReason) throw new UpstreamProtocolError("unfinished");
    yield { type: "finish", finishReason, model, usage };
  }

  private async open(request: UpstreamRequest, signal: AbortSignal): Promise<AsyncIterable<ChatCompletionChunk>> {
    const params: ChatCompletionCreateParamsStreaming = toOpenAIParams(request);
    if (!this.sendStreamOptions) return this.client.chat.completions.create(params, { signal });
    try {
      return await this.client.chat.completions.create(
        { ...params, stream_options: { include_usage: true } },
        { signal },
      );
    } catch (error: unknown) {
      if (!(error instanceof OpenAI.BadRequestError && /stream_options/i.test(error.message))) throw error;
      this.sendStreamOptions = false;
      return this.client.chat.completions.create(params, { signal });
    }
  }

  /** The models this upstream lists on its `GET /models`: one attempt, within `timeoutMs`. */
  async listModels(timeoutMs: number): Promise<ListedModel[]> {
    // The SDK's timeout stops at the response headers; the signal also bounds reading the body.
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const response = await this.client.models.list({ timeout: timeoutMs, maxRetries: 0, signal: deadline }).asResponse();
      // Read here rather than through the SDK's page, which takes a body without `data` for an
      // empty list.
      const body = (await response.json().catch(() => undefined)) as { data?: unknown } | undefined;
      if (!Array.isArray(body?.data)) throw new UpstreamProtocolError("malformed");
      return body.data.flatMap((entry: { id?: unknown; owned_by?: unknown } | null) =>
        typeof entry?.id === "string" && entry.id !== ""
          ? [{ id: entry.id, ownedBy: typeof entry.owned_by === "string" ? entry.owned_by : "" }]
          : [],
      );
    } catch (error: unknown) {
      if (deadline.aborted) throw new OpenAI.APIConnectionTimeoutError();
      throw error;
    }
  }
}

export interface ListedModel {
  id: string;
  /** Empty when the upstream does not say. */
  ownedBy: string;
}

/** Errors while reading the body: the SDK's own (an SSE error event) pass, the transport's are named. */
function classifyStreamError(error: unknown): unknown {
  if (error instanceof OpenAI.APIError) return error;
  if (error instanceof SyntaxError) return new UpstreamProtocolError("malformed");
  // undici reports a socket closed mid-body as `TypeError: terminated`.
  return new UpstreamProtocolError("cut");
}
