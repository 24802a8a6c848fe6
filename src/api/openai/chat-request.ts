// A Chat Completions request body (`POST /v1/chat/completions`, as the OpenAI SDKs send it) → chat.v1's
// ChatRequest, which the chat service then validates as it validates Chat's: one set of checks and
// limits for both. What chat.v1 has no field for is either passed to the upstream as it is (fields
// the upstream honours: OpenAI's own extras, and any server-specific option an SDK's `extra_body`
// put at the top level) or refused by name, when the gateway could not give back what it asks for.
import { ChatRequest, type ChatMessage, type ContentPart, type Tool, type ToolCall } from "../../contract/chat.js";
import { fail, integer, isObject, numberField, optionalObject, optionalString, Problem } from "./fields.js";

export interface DecodedChatCompletion {
  request: ChatRequest;
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with the usage. */
  includeUsage: boolean;
  /** Set when the body cannot become a request: the caller-facing reason, naming the field. */
  problem?: string;
}

/** Fields the gateway cannot honour: each is refused by name, never dropped. */
const REFUSED: Record<string, string> = {
  n: "one choice per request only (n must be 1)",
  logprobs: "log probabilities are not passed on",
  top_logprobs: "log probabilities are not passed on",
  audio: "audio output is not supported",
  modalities: "only text output is supported",
  prediction: "predicted outputs are not supported",
  functions: "deprecated: use tools",
  function_call: "deprecated: use tool_choice",
  web_search_options: "web search is not supported",
};

/** Fields read into the ChatRequest (or used by the gateway itself); anything else goes to the upstream as it is. */
const KNOWN = new Set([
  "model",
  "messages",
  "temperature",
  "top_p",
  "max_tokens",
  "max_completion_tokens",
  "stop",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "reasoning_effort",
  "response_format",
  "seed",
  "presence_penalty",
  "frequency_penalty",
  "logit_bias",
  "user",
  "stream",
  "stream_options",
]);

export function decodeChatCompletion(data: Uint8Array): DecodedChatCompletion {
  const empty = { request: ChatRequest.fromPartial({}), stream: false, includeUsage: false };
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch {
    return { ...empty, problem: "request body: not valid JSON" };
  }
  try {
    if (!isObject(body)) fail("request body", "must be a JSON object");
    return translate(body as Record<string, unknown>);
  } catch (error) {
    if (error instanceof Problem) {
      const b = (isObject(body) ? body : {}) as Record<string, unknown>;
      return { ...empty, stream: b.stream === true, problem: error.message };
    }
    throw error;
  }
}

function translate(body: Record<string, unknown>): DecodedChatCompletion {
  for (const key of Object.keys(body)) {
    const why = REFUSED[key];
    if (why !== undefined && !(key === "n" && body.n === 1) && body[key] !== null && body[key] !== false)
      fail(key, why);
  }
  const extra = Object.fromEntries(Object.entries(body).filter(([key]) => !KNOWN.has(key) && !(key in REFUSED)));
  if (body.max_tokens !== undefined && body.max_completion_tokens !== undefined) {
    fail("max_completion_tokens", "set max_tokens or max_completion_tokens, not both");
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  const streamOptions = optionalObject(body.stream_options, "stream_options");
  const request = ChatRequest.fromPartial({
    model: optionalString(body.model, "model") ?? "",
    messages: messagesOf(body.messages),
    ...numberField("temperature", body.temperature),
    ...numberField("topP", body.top_p, "top_p"),
    ...(maxTokens !== undefined && maxTokens !== null && { maxTokens: integer(maxTokens, "max_completion_tokens") }),
    stop: stopOf(body.stop),
    tools: toolsOf(body.tools),
    ...(body.tool_choice !== undefined && body.tool_choice !== null && { toolChoice: toolChoiceOf(body.tool_choice) }),
    ...(typeof body.parallel_tool_calls === "boolean" && { parallelToolCalls: body.parallel_tool_calls }),
    reasoningEffort: optionalString(body.reasoning_effort, "reasoning_effort") ?? "",
    ...(body.response_format !== undefined &&
      body.response_format !== null && {
        responseFormat: responseFormatOf(body.response_format),
      }),
    ...(body.seed !== undefined && body.seed !== null && { seed: BigInt(integer(body.seed, "seed")) }),
    ...numberField("presencePenalty", body.presence_penalty, "presence_penalty"),
    ...numberField("frequencyPenalty", body.frequency_penalty, "frequency_penalty"),
    logitBias: logitBiasOf(body.logit_bias),
    user: optionalString(body.user, "user") ?? "",
    ...(Object.keys(extra).length > 0 && { extraBody: extra }),
  });
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
    fail("stream", "must be a boolean");
  return { request, stream: body.stream === true, includeUsage: streamOptions?.include_usage === true };
}

function messagesOf(value: unknown): ChatMessage[] {
  if (!Array.isArray(value)) return fail("messages", "required: an array of messages");
  return value.map((m, i) => {
    const field = `messages[${i}]`;
    if (!isObject(m)) fail(field, "must be an object");
    const message = m as Record<string, unknown>;
    const role = optionalString(message.role, `${field}.role`) ?? fail(`${field}.role`, "required");
    const { content, parts } = contentOf(message.content, `${field}.content`);
    return {
      role,
      content,
      parts,
      toolCalls: toolCallsOf(message.tool_calls, `${field}.tool_calls`),
      toolCallId: optionalString(message.tool_call_id, `${field}.tool_call_id`) ?? "",
      name: optionalString(message.name, `${field}.name`) ?? "",
    };
  });
}

/** A message's content: a string, null (beside tool calls), or parts (text and images). */
function contentOf(value: unknown, field: string): { content: string; parts: ContentPart[] } {
  if (value === undefined || value === null) return { content: "", parts: [] };
  if (typeof value === "string") return { content: value, parts: [] };
  if (!Array.isArray(value)) return fail(field, "must be a string or an array of content parts");
  const parts = value.map((p, i): ContentPart => {
    const at = `${field}[${i}]`;
    if (!isObject(p)) fail(at, "must be an object");
    const part = p as Record<string, unknown>;
    if (part.type === "text")
      return { type: "text", text: optionalString(part.text, `${at}.text`) ?? "", imageUrl: undefined };
    if (part.type === "image_url") {
      const image = optionalObject(part.image_url, `${at}.image_url`) ?? fail(`${at}.image_url`, "required");
      return {
        type: "image_url",
        text: "",
        imageUrl: {
          url: optionalString(image.url, `${at}.image_url.url`) ?? "",
          detail: optionalString(image.detail, `${at}.image_url.detail`) ?? "",
        },
      };
    }
    return fail(`${at}.type`, `${JSON.stringify(part.type)} is not supported (text and image_url are)`);
  });
  return { content: "", parts };
}

function toolCallsOf(value: unknown, field: string): ToolCall[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail(field, "must be an array");
  return value.map((c, i) => {
    const at = `${field}[${i}]`;
    const call = optionalObject(c, at) ?? fail(at, "must be an object");
    const fn = optionalObject(call.function, `${at}.function`) ?? fail(`${at}.function`, "required");
    return {
      id: optionalString(call.id, `${at}.id`) ?? "",
      type: optionalString(call.type, `${at}.type`) ?? "function",
      function: {
        name: optionalString(fn.name, `${at}.function.name`) ?? "",
        arguments: optionalString(fn.arguments, `${at}.function.arguments`) ?? "",
      },
    };
  });
}

function toolsOf(value: unknown): Tool[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail("tools", "must be an array");
  return value.map((t, i) => {
    const at = `tools[${i}]`;
    const tool = optionalObject(t, at) ?? fail(at, "must be an object");
    const fn = optionalObject(tool.function, `${at}.function`) ?? fail(`${at}.function`, "required");
    return {
      type: optionalString(tool.type, `${at}.type`) ?? "",
      function: {
        name: optionalString(fn.name, `${at}.function.name`) ?? "",
        description: optionalString(fn.description, `${at}.function.description`) ?? "",
        parameters: optionalObject(fn.parameters, `${at}.function.parameters`),
        ...(typeof fn.strict === "boolean" && { strict: fn.strict }),
      },
    };
  });
}

function toolChoiceOf(value: unknown) {
  if (typeof value === "string") return { choice: { $case: "mode" as const, value } };
  const choice = optionalObject(value, "tool_choice") ?? fail("tool_choice", "must be a string or an object");
  const fn = optionalObject(choice.function, "tool_choice.function") ?? fail("tool_choice.function", "required");
  const name = optionalString(fn.name, "tool_choice.function.name") ?? fail("tool_choice.function.name", "required");
  return { choice: { $case: "function" as const, value: name } };
}

function responseFormatOf(value: unknown) {
  const format = optionalObject(value, "response_format") ?? fail("response_format", "must be an object");
  const type = optionalString(format.type, "response_format.type") ?? "";
  const schema = optionalObject(format.json_schema, "response_format.json_schema");
  return {
    type,
    jsonSchema: schema && {
      name: optionalString(schema.name, "response_format.json_schema.name") ?? "",
      description: optionalString(schema.description, "response_format.json_schema.description") ?? "",
      schema: optionalObject(schema.schema, "response_format.json_schema.schema"),
      ...(typeof schema.strict === "boolean" && { strict: schema.strict }),
    },
  };
}

function stopOf(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.every((s) => typeof s === "string")) return value;
  return fail("stop", "must be a string or an array of strings");
}

function logitBiasOf(value: unknown): Record<string, number> {
  const bias = optionalObject(value, "logit_bias") ?? {};
  return Object.fromEntries(Object.entries(bias).map(([token, b]) => [token, integer(b, `logit_bias.${token}`)]));
}
