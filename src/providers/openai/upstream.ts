// The upstream model, reached through the official openai SDK: any OpenAI-compatible
// chat-completions API (OpenAI, DeepSeek, Yi, vLLM, Ollama, llama.cpp server, ...).
import OpenAI from "openai";
import type { ChatCompletionChunk, ChatCompletionCreateParamsStreaming } from "openai/resources/chat/completions";
import { setTimeout as sleep } from "node:timers/promises";
import { UpstreamProtocolError, UpstreamUnreachable } from "../../upstream/errors.js";
import type { ChatUpstream, ListedModel, ModelLister, UpstreamBatch, UpstreamCall } from "../../upstream/port.js";
import type { UpstreamEvent, UpstreamRequest } from "../../upstream/port.js";
import { toOpenAIParams } from "./params.js";
import { statusOfStreamError } from "./stream-error.js";
import { toUpstreamError, UpstreamStreamError } from "./errors.js";
import { ChunkTranslator } from "./chunks.js";
import { SseChunkDecoder } from "./sse-chunks.js";
import { CALL_OPTION, retriesOf, upstreamFetch } from "./fetch.js";
import { HttpTransport, type BodyChunks } from "./http-transport.js";

const NO_CHUNKS: readonly unknown[] = [];

export interface OpenAIUpstreamOptions {
  baseURL: string;
  apiKey: string | undefined;
  /** Retries before the first token, the SDK's and the gateway's own (in-stream errors) together. */
  maxRetries: number;
  timeoutMs: number;
  /** Used instead of node:http (tests). */
  fetch?: typeof fetch;
}

export class OpenAIUpstream implements ChatUpstream, ModelLister {
  private readonly client: OpenAI;
  /** Cleared the first time the server refuses `stream_options`: some compatible servers do. */
  private sendStreamOptions = true;
  /** How many times the SDK had retried before each response it got (the request's retry-count header). */
  private readonly retriesBefore = new WeakMap<Response, number>();
  /** The connections to the upstream, and the reader of their bodies (http-transport.ts). */
  private readonly transport = new HttpTransport();

  constructor(private readonly options: OpenAIUpstreamOptions) {
    // Reports the SDK's own retries to the call that made them (see fetch.ts).
    const base = upstreamFetch(options.fetch ?? this.transport.fetch);
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
      fetch: async (input, init) => {
        const response = await base(input, init);
        this.retriesBefore.set(response, retriesOf(init));
        return response;
      },
    });
  }

  async *stream(request: UpstreamRequest, call: UpstreamCall): AsyncIterable<UpstreamBatch> {
    const { signal: parent, watch } = call;
    const progress: Progress = { retriesLeft: this.options.maxRetries, sent: false };
    // One generator for every attempt (not one per attempt behind `yield*`): each batch passes
    // through as few async layers as possible.
    for (let retry = 0; ; retry++) {
      if (retry > 0) {
        progress.retriesLeft--;
        call.observer.retried();
        await backoff(retryDelayMs(retry - 1), parent);
      }
      const signal = watch.begin(parent);
      try {
        // The SDK built, sent, authenticated and retried the request and mapped an error status;
        // the body it would decode through five async generators per event is read here, one
        // network read per await (see sse-chunks.ts), from Node's stream (http-transport.ts).
        const body = await this.connect(request, call, signal, progress);
        const decoder = new SseChunkDecoder(body);
        const translator = new ChunkTranslator(request.model);
        let ended = false;
        try {
          while (!decoder.done) {
            let chunks: readonly unknown[];
            try {
              const read = await body.next();
              if (read.done) ended = true;
              chunks = read.done ? decoder.end() : decoder.read(read.value);
            } catch (error: unknown) {
              // An abort (the caller's or a stall) errors the body: the reason is the signal's.
              if (signal.aborted) throw signal.reason;
              throw classifyStreamError(error, progress.sent);
            }
            let batch: UpstreamEvent[] | undefined;
            let failure = decoder.failure;
            for (let i = 0; i < chunks.length; i++) {
              let events: readonly UpstreamEvent[];
              try {
                // Valid JSON of the wrong shape is not a chat completion chunk: read() says the upstream is broken.
                events = translator.read(chunks[i] as ChatCompletionChunk);
              } catch (error: unknown) {
                failure = error as Error;
                break;
              }
              watch.chunk(events.length);
              if (events.length > 0) (batch ??= []).push(...events);
            }
            // The read's parsed chunks go now, not when the stream resumes: a caller that stopped
            // reading keeps this generator suspended at its batch (~100 KiB per stalled reader).
            chunks = NO_CHUNKS;
            // What came before a failure goes out first, as it did on the upstream's wire.
            if (batch !== undefined) {
              progress.sent = true;
              yield batch;
            }
            if (failure !== undefined) throw classifyStreamError(failure, progress.sent);
            if (signal.aborted) throw signal.reason;
            if (ended) break;
          }
          // [DONE] before the body's end: the connection goes back to the pool for the next request.
          if (!ended) {
            ended = true;
            await body.finish();
          }
        } finally {
          // Stopped early (an error, the caller gone): the connection is closed.
          if (!ended) body.close();
        }
        const last = [...translator.finish()];
        progress.sent = true;
        yield last;
        return;
      } catch (error: unknown) {
        // Before the first token an error the upstream put in its stream is retried like the same
        // error sent as an HTTP status (the SDK retries only those, before a response).
        if (progress.sent || parent.aborted || progress.retriesLeft <= 0 || !retryable(error))
          throw toUpstreamError(error);
      } finally {
        watch.end();
      }
    }
  }

  /**
   * The attempt's response, from which only its body's reads are kept: the Response (its Headers,
   * its web stream, the SDK's abort bookkeeping tied to it) is left to the collector once its
   * headers are in, rather than living as long as the stream does (issue 24).
   */
  private async connect(
    request: UpstreamRequest,
    call: UpstreamCall,
    signal: AbortSignal,
    progress: Progress,
  ): Promise<BodyChunks> {
    let response: Response;
    try {
      response = await this.open(request, call, signal, progress);
    } catch (error: unknown) {
      throw signal.aborted ? signal.reason : error;
    }
    call.watch.opened();
    if (response.body === null) throw new UpstreamProtocolError("cut");
    return this.transport.chunks(response);
  }

  /** Sends the request and waits for the response headers, through the SDK's timeout and retries. */
  private async open(
    request: UpstreamRequest,
    call: UpstreamCall,
    signal: AbortSignal,
    progress: Progress,
  ): Promise<Response> {
    const params: ChatCompletionCreateParamsStreaming = toOpenAIParams(request);
    // The call rides along in the SDK's per-request fetch options, to the fetch that counts retries.
    const fetchOptions = { [CALL_OPTION]: call } as object;
    const create = async (body: ChatCompletionCreateParamsStreaming) => {
      const response = await this.client.chat.completions
        .create(body, { signal, maxRetries: progress.retriesLeft, headers: call.headers, fetchOptions })
        .asResponse();
      progress.retriesLeft -= this.retriesBefore.get(response) ?? 0;
      return response;
    };
    if (!this.sendStreamOptions) return create(params);
    try {
      return await create({ ...params, stream_options: { include_usage: true } });
    } catch (error: unknown) {
      if (!(error instanceof OpenAI.BadRequestError && /stream_options/i.test(error.message))) throw error;
      this.sendStreamOptions = false;
      return create(params);
    }
  }

  /** The models this upstream lists on its `GET /models`: one attempt, within `timeoutMs`. */
  async listModels(timeoutMs: number): Promise<ListedModel[]> {
    // The SDK's timeout stops at the response headers; the signal also bounds reading the body.
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const response = await this.client.models
        .list({ timeout: timeoutMs, maxRetries: 0, signal: deadline })
        .asResponse();
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
      throw deadline.aborted ? new UpstreamUnreachable("timeout") : toUpstreamError(error);
    }
  }
}

interface Progress {
  /** Retries not yet used, by the SDK or by the gateway. */
  retriesLeft: number;
  /** Whether anything went to the caller: from then on nothing is retried. */
  sent: boolean;
}

/** Errors while reading the body: the SDK's own (an SSE error event) pass, the transport's are named. */
function classifyStreamError(error: unknown, sent: boolean): unknown {
  if (error instanceof UpstreamProtocolError) return error;
  if (error instanceof OpenAI.APIError) {
    // An error event before the first token, saying what it was, is that error.
    const status = !sent && error.status === undefined ? statusOfStreamError(error.error) : undefined;
    return status === undefined ? error : new UpstreamStreamError(status, error.error, undefined, error.headers);
  }
  if (error instanceof SyntaxError) return new UpstreamProtocolError("malformed");
  // undici reports a socket closed mid-body as `TypeError: terminated`.
  return new UpstreamProtocolError("cut");
}

/** What the SDK retries when it comes as an HTTP status: 408, 409, 429 and 5xx. */
function retryable(error: unknown): boolean {
  if (!(error instanceof UpstreamStreamError) || error.status === undefined) return false;
  return error.status === 408 || error.status === 409 || error.status === 429 || error.status >= 500;
}

/** The SDK's own backoff: 0.5 s doubling up to 8 s, less up to 25% jitter. */
function retryDelayMs(retry: number): number {
  return Math.min(0.5 * 2 ** retry, 8) * (1 - Math.random() * 0.25) * 1000;
}

async function backoff(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch {
    throw signal.reason;
  }
}
