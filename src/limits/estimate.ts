// Tokens of a stream the upstream reported no usage for (the caller cancelled, the stream failed,
// or the upstream does not report usage): estimated from the bytes of text, at 4 bytes a token
// (OpenAI's rule of thumb for English, ~4 characters a token; counting UTF-8 bytes rather than
// characters keeps scripts whose characters are each about a token, such as CJK at 3 bytes a
// character, from being undercounted fourfold). The prompt is the request's text: `text`, message
// contents and text parts, tool-call arguments and tool results; images and tool definitions are
// not counted. The completion is the text the caller was sent: deltas, reasoning, refusals and
// tool-call names and arguments.
import type { ChatRequest, ChatResponse } from "../contract/chat.js";
import type { UpstreamUsage } from "../upstream/port.js";

export const BYTES_PER_TOKEN = 4;

export function estimateTokens(bytes: number): number {
  return Math.ceil(bytes / BYTES_PER_TOKEN);
}

/** UTF-8 bytes of the text the model reads from this request. */
export function promptBytes(request: ChatRequest): number {
  let bytes = Buffer.byteLength(request.text);
  for (const message of request.messages) {
    bytes += Buffer.byteLength(message.content);
    for (const part of message.parts) bytes += Buffer.byteLength(part.text);
    for (const call of message.toolCalls) bytes += Buffer.byteLength(call.function?.arguments ?? "");
  }
  return bytes;
}

/** UTF-8 bytes of model text one response message carries (0 for finish, error, heartbeat). */
export function sentBytes(message: ChatResponse): number {
  const event = message.event;
  switch (event?.$case) {
    case "delta":
    case "reasoning":
    case "refusal":
      return Buffer.byteLength(event.value.text);
    case "toolCall":
      return Buffer.byteLength(event.value.name) + Buffer.byteLength(event.value.arguments);
    default:
      return 0;
  }
}

export interface StreamTokens {
  promptTokens: number;
  completionTokens: number;
  estimated: boolean;
}

/**
 * What a finished stream is charged: the upstream's usage when it reported it; otherwise the
 * estimate, once the caller was sent any model text; nothing for a stream that ended before its
 * first token (the upstream refused or failed it, or the caller left before it answered).
 */
export function streamTokens(usage: UpstreamUsage | undefined, prompt: number, sent: number): StreamTokens | undefined {
  if (usage) return { promptTokens: usage.promptTokens, completionTokens: usage.completionTokens, estimated: false };
  if (sent === 0) return undefined;
  return { promptTokens: estimateTokens(prompt), completionTokens: estimateTokens(sent), estimated: true };
}
