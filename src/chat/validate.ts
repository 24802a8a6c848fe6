// Turns a ChatRequest into an upstream request, or says exactly which field is wrong and why.
import type { UpstreamMessage, UpstreamRequest } from "../upstream/port.js";
import { DECODE_PROBLEM, type DecodedChatRequest } from "./decode.js";
import { withDecimalFloats } from "./float32.js";
import { InputBudget, RequestProblem } from "./request-checks.js";
import { hasContent, toUpstreamMessage, type MessageLimits } from "./validate-messages.js";
import { checkExtraBodyClashes, toUpstreamOptions, type BodyKeys, type OptionLimits } from "./validate-options.js";

export type { BodyKeys } from "./validate-options.js";

export interface RequestLimits extends MessageLimits, OptionLimits {
  maxInputBytes: number;
  maxMessages: number;
  /** The largest `max_tokens` a request may ask for. */
  maxOutputTokens: number;
}

const MAX_STOP_SEQUENCES = 4;
const MAX_MODEL_NAME = 256;

export type Validated = { ok: true; request: UpstreamRequest } | { ok: false; problem: string };

export function toUpstreamRequest(
  req: DecodedChatRequest,
  defaultModel: string,
  limits: RequestLimits,
  bodyKeys: BodyKeys,
): Validated {
  try {
    return checkedRequest(req, defaultModel, limits, bodyKeys);
  } catch (error: unknown) {
    if (error instanceof RequestProblem) return { ok: false, problem: error.message };
    throw error;
  }
}

function checkedRequest(
  decoded: DecodedChatRequest,
  defaultModel: string,
  limits: RequestLimits,
  bodyKeys: BodyKeys,
): Validated {
  const req = withDecimalFloats(decoded);
  const fail = (problem: string): Validated => ({ ok: false, problem });

  const undecodable = decoded[DECODE_PROBLEM];
  if (undecodable !== undefined) return fail(undecodable);

  const input = new InputBudget(limits.maxInputBytes);
  const messages: UpstreamMessage[] = req.messages.map((m, i) => toUpstreamMessage(m, `messages[${i}]`, limits, input));
  if (req.text.trim() !== "") {
    input.add("text", Buffer.byteLength(req.text));
    messages.push({ role: "user", content: req.text });
  }
  if (!messages.some(hasContent)) {
    return fail("text: must not be empty (send `text`, or `messages` with some content)");
  }
  if (messages.length > limits.maxMessages) {
    return fail(`messages: ${messages.length} messages, more than the limit of ${limits.maxMessages}`);
  }
  const options = toUpstreamOptions(req, limits, input);
  const tooLarge = input.problem();
  if (tooLarge !== undefined) return fail(tooLarge);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
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

  const request: UpstreamRequest = {
    model: req.model || defaultModel,
    messages,
    ...(req.temperature !== undefined && { temperature: req.temperature }),
    ...(req.topP !== undefined && { topP: req.topP }),
    ...(req.maxTokens !== undefined && { maxTokens: req.maxTokens }),
    ...(req.stop.length > 0 && { stop: req.stop }),
    ...options,
  };
  checkExtraBodyClashes(request, bodyKeys);
  return { ok: true, request };
}
