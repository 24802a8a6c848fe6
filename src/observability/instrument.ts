// Wraps the chat service's handler so each call runs inside its StreamContext (request id, caller,
// trace span; see stream-context.ts). The streaming loop itself is untouched.
import { randomUUID } from "node:crypto";
import type { ServerWritableStream } from "@grpc/grpc-js";
import type { ChatRequest, ChatResponse } from "../gen/chat/v1/chat.js";
import type { ChatService } from "../chat/service.js";
import { CALLER_METADATA_KEY, streamContext, type StreamContext } from "../server/stream-context.js";
import { metadataText, type Tracing } from "./tracing.js";
import { promptBytes, sentBytes } from "../limits/estimate.js";

export interface InstrumentOptions {
  tracing: Tracing;
  defaultModel: string;
  /** Whether the caller-name metadata was set by the auth interceptor (caller keys on). */
  callerFromMetadata: boolean;
  /** Collect the prompt and the reply for the log line (LOG_PROMPTS). */
  logPrompts: boolean;
}

/** Longest prompt or reply kept for the log, in characters. */
const MAX_LOGGED_TEXT = 16 * 1024;

export function instrumentChatService(chat: ChatService, options: InstrumentOptions): ChatService {
  const handle = chat.implementation.chat;
  return {
    implementation: {
      chat(call: ServerWritableStream<ChatRequest, ChatResponse>) {
        const model = call.request.model || options.defaultModel;
        const context: StreamContext = {
          requestId: metadataText(call.metadata, "x-request-id")?.slice(0, 128) || randomUUID(),
          caller: (options.callerFromMetadata && metadataText(call.metadata, CALLER_METADATA_KEY)) || "anonymous",
          span: options.tracing.start(call.metadata, model),
          upstream: "default",
          retries: 0,
          promptBytes: promptBytes(call.request),
          sentBytes: 0,
        };
        countSent(call, context);
        if (options.logPrompts) collectText(call, context);
        streamContext.run(context, () => handle(call));
      },
    },
    get active() {
      return chat.active;
    },
    drain: (graceMs) => chat.drain(graceMs),
  };
}

/** Counts the model text written to the caller, for the tokens estimate of a stream without usage. */
function countSent(call: ServerWritableStream<ChatRequest, ChatResponse>, context: StreamContext): void {
  const write = call.write.bind(call) as (m: ChatResponse, ...r: unknown[]) => boolean;
  call.write = ((message: ChatResponse, ...rest: unknown[]) => {
    context.sentBytes += sentBytes(message);
    return write(message, ...rest);
  }) as typeof call.write;
}

function collectText(call: ServerWritableStream<ChatRequest, ChatResponse>, context: StreamContext): void {
  const { text, messages } = call.request;
  const turns = [...messages.map((m) => `${m.role}: ${m.content}`), ...(text ? [`user: ${text}`] : [])];
  context.prompt = turns.join("\n").slice(0, MAX_LOGGED_TEXT);
  context.reply = "";
  const write = call.write.bind(call);
  call.write = ((message: ChatResponse, ...rest: unknown[]) => {
    if (message.event?.$case === "delta" && context.reply !== undefined && context.reply.length < MAX_LOGGED_TEXT) {
      context.reply += message.event.value.text;
    }
    return (write as (m: ChatResponse, ...r: unknown[]) => boolean)(message, ...rest);
  }) as typeof call.write;
}
