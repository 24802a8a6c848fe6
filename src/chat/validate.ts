// Turns a ChatRequest into an upstream request, or says exactly which field is wrong and why.
import type { UpstreamMessage, UpstreamRequest } from "../upstream/openai.js";
import { INVALID_UTF8, type DecodedChatRequest } from "./decode.js";

export interface RequestLimits {
  maxInputBytes: number;
  maxMessages: number;
  /** The largest `max_tokens` a request may ask for. */
  maxOutputTokens: number;
}

const ROLES = new Set<string>(["system", "developer", "user", "assistant"]);
const MAX_STOP_SEQUENCES = 4;
const MAX_MODEL_NAME = 256;

export type Validated = { ok: true; request: UpstreamRequest } | { ok: false; problem: string };

export function toUpstreamRequest(req: DecodedChatRequest, defaultModel: string, limits: RequestLimits): Validated {
  const fail = (problem: string): Validated => ({ ok: false, problem });

  const badText = req[INVALID_UTF8];
  if (badText !== undefined) return fail(`${badText}: not valid UTF-8`);

  const messages: UpstreamMessage[] = [];
  let bytes = 0;
  for (const [i, m] of req.messages.entries()) {
    if (!ROLES.has(m.role)) {
      return fail(`messages[${i}].role: "${m.role.slice(0, 32)}" is not one of system, developer, user, assistant`);
    }
    bytes += Buffer.byteLength(m.content);
    messages.push({ role: m.role as UpstreamMessage["role"], content: m.content });
  }
  if (req.text.trim() !== "") {
    bytes += Buffer.byteLength(req.text);
    messages.push({ role: "user", content: req.text });
  }
  if (!messages.some((m) => m.content.trim() !== "")) {
    return fail("text: must not be empty (send `text`, or `messages` with some content)");
  }
  if (messages.length > limits.maxMessages) {
    return fail(`messages: ${messages.length} messages, more than the limit of ${limits.maxMessages}`);
  }
  if (bytes > limits.maxInputBytes) {
    return fail(`text: input is ${bytes} bytes, more than the limit of ${limits.maxInputBytes}`);
  }
  if (req.model.length > MAX_MODEL_NAME || /[\u0000-\u001f]/.test(req.model)) {
    return fail(`model: not a model name`);
  }
  if (req.temperature !== undefined && !(req.temperature >= 0 && req.temperature <= 2)) {
    return fail(`temperature: ${req.temperature} is outside [0, 2]`);
  }
  if (req.topP !== undefined && !(req.topP > 0 && req.topP <= 1)) {
    return fail(`top_p: ${req.topP} is outside (0, 1]`);
  }
  if (req.maxTokens !== undefined && req.maxTokens < 1) {
    return fail("max_tokens: must be at least 1");
  }
  if (req.maxTokens !== undefined && req.maxTokens > limits.maxOutputTokens) {
    return fail(`max_tokens: ${req.maxTokens} is more than the limit of ${limits.maxOutputTokens}`);
  }
  if (req.stop.length > MAX_STOP_SEQUENCES) {
    return fail(`stop: ${req.stop.length} sequences, more than the limit of ${MAX_STOP_SEQUENCES}`);
  }

  return {
    ok: true,
    request: {
      model: req.model || defaultModel,
      messages,
      ...(req.temperature !== undefined && { temperature: req.temperature }),
      ...(req.topP !== undefined && { topP: req.topP }),
      ...(req.maxTokens !== undefined && { maxTokens: req.maxTokens }),
      ...(req.stop.length > 0 && { stop: req.stop }),
    },
  };
}
