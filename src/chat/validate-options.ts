// The request's options beyond the conversation: tools and tool_choice, response_format,
// reasoning_effort, the sampling knobs and extra_body. Each is checked before the upstream is
// called, with problems naming the field; unset options stay absent so the upstream's defaults apply.
import type { ChatRequest, ResponseFormat, Tool, ToolChoice } from "../contract/chat.js";
import type {
  ReasoningEffort,
  UpstreamRequest,
  UpstreamResponseFormat,
  UpstreamTool,
  UpstreamToolChoice,
} from "../upstream/port.js";
import {
  checkFunctionName,
  checkFunctionType,
  checkNesting,
  checkOneOf,
  invalid,
  jsonBytes,
  quote,
  utf8Bytes,
  type InputBudget,
} from "./request-checks.js";

/**
 * The keys of the upstream's request body that a request's own fields fill: the provider's to say
 * (src/providers/openai/params.ts), since extra_body is merged into that body as it is.
 */
export type BodyKeys = (request: UpstreamRequest) => Iterable<string>;

export interface OptionLimits {
  maxTools: number;
}

type Options = Omit<UpstreamRequest, "model" | "messages" | "temperature" | "topP" | "maxTokens" | "stop">;

const REASONING_EFFORTS = ["none", "minimal", "low", "medium", "high", "xhigh"] as const;
const TOOL_CHOICE_MODES = ["auto", "none", "required"] as const;
const RESPONSE_FORMATS = ["text", "json_object", "json_schema"] as const;
/** OpenAI accepts at most this many logit_bias entries. */
export const MAX_LOGIT_BIAS = 300;
const MAX_USER = 256;
/** Body keys only the gateway sets: which model, the conversation, and one streamed choice with usage. */
const GATEWAY_KEYS = ["model", "messages", "stream", "stream_options", "n"];

export function toUpstreamOptions(req: ChatRequest, limits: OptionLimits, input: InputBudget): Options {
  const tools = toUpstreamTools(req.tools, limits, input);
  if (req.toolChoice !== undefined && tools === undefined) invalid("tool_choice", "only with tools");
  if (req.parallelToolCalls !== undefined && tools === undefined) invalid("parallel_tool_calls", "only with tools");
  const toolChoice = req.toolChoice && toUpstreamToolChoice(req.toolChoice, tools ?? []);
  const reasoningEffort =
    req.reasoningEffort === ""
      ? undefined
      : checkOneOf<ReasoningEffort>("reasoning_effort", req.reasoningEffort, REASONING_EFFORTS);
  const responseFormat = req.responseFormat && toUpstreamResponseFormat(req.responseFormat, input);
  for (const [field, value] of [
    ["presence_penalty", req.presencePenalty],
    ["frequency_penalty", req.frequencyPenalty],
  ] as const) {
    if (value !== undefined && !(value >= -2 && value <= 2)) invalid(field, `${value} is outside [-2, 2]`);
  }
  const seed = req.seed === undefined ? undefined : checkSeed(req.seed);
  const logitBias = Object.keys(req.logitBias).length === 0 ? undefined : checkLogitBias(req.logitBias);
  if (req.user.length > MAX_USER) invalid("user", `longer than ${MAX_USER} characters`);
  if (req.extraBody !== undefined) {
    for (const key of Object.keys(req.extraBody)) {
      if (GATEWAY_KEYS.includes(key)) {
        invalid(`extra_body.${key}`, `may not be set: the gateway sets ${GATEWAY_KEYS.join(", ")} itself`);
      }
    }
    checkNesting("extra_body", req.extraBody);
    input.add("extra_body", jsonBytes(req.extraBody));
  }

  return {
    ...(tools !== undefined && { tools }),
    ...(toolChoice !== undefined && { toolChoice }),
    ...(req.parallelToolCalls !== undefined && { parallelToolCalls: req.parallelToolCalls }),
    ...(reasoningEffort !== undefined && { reasoningEffort }),
    ...(responseFormat !== undefined && { responseFormat }),
    ...(seed !== undefined && { seed }),
    ...(req.presencePenalty !== undefined && { presencePenalty: req.presencePenalty }),
    ...(req.frequencyPenalty !== undefined && { frequencyPenalty: req.frequencyPenalty }),
    ...(logitBias !== undefined && { logitBias }),
    ...(req.user !== "" && { user: req.user }),
    ...(req.extraBody !== undefined && Object.keys(req.extraBody).length > 0 && { extraBody: req.extraBody }),
  };
}

/**
 * extra_body may not repeat what the request's own fields already put in the body: which of the
 * two should win would be a guess.
 */
export function checkExtraBodyClashes(request: UpstreamRequest, bodyKeys: BodyKeys): void {
  const { extraBody, ...typedOnly } = request;
  if (extraBody === undefined) return;
  const typed = new Set(bodyKeys(typedOnly));
  for (const key of Object.keys(extraBody)) {
    if (typed.has(key))
      invalid(`extra_body.${key}`, `the request sets "${key}" with its own field already; set it once`);
  }
}

function toUpstreamTools(tools: Tool[], limits: OptionLimits, input: InputBudget): UpstreamTool[] | undefined {
  if (tools.length === 0) return undefined;
  if (tools.length > limits.maxTools)
    invalid("tools", `${tools.length} tools, more than the limit of ${limits.maxTools}`);
  const names = new Map<string, number>();
  return tools.map((tool, i) => {
    const field = `tools[${i}]`;
    checkFunctionType(`${field}.type`, tool.type);
    const fn = tool.function;
    if (fn === undefined) invalid(`${field}.function`, 'missing: a tool needs {"name", "description", "parameters"}');
    checkFunctionName(`${field}.function.name`, fn.name);
    const earlier = names.get(fn.name);
    if (earlier !== undefined)
      invalid(`${field}.function.name`, `${quote(fn.name)} is already the name of tools[${earlier}]`);
    names.set(fn.name, i);
    checkNesting(`${field}.function.parameters`, fn.parameters);
    input.add(`${field}.function`, utf8Bytes(fn.name) + utf8Bytes(fn.description) + jsonBytes(fn.parameters));
    return {
      name: fn.name,
      ...(fn.description !== "" && { description: fn.description }),
      ...(fn.parameters !== undefined && { parameters: fn.parameters as Record<string, unknown> }),
      ...(fn.strict !== undefined && { strict: fn.strict }),
    };
  });
}

function toUpstreamToolChoice(choice: ToolChoice, tools: UpstreamTool[]): UpstreamToolChoice {
  switch (choice.choice?.$case) {
    case undefined:
      return invalid("tool_choice", 'set "mode" (auto, none, required) or "function" (a tool\'s name)');
    case "mode":
      return checkOneOf("tool_choice.mode", choice.choice.value, TOOL_CHOICE_MODES);
    case "function": {
      const name = choice.choice.value;
      if (!tools.some((t) => t.name === name))
        invalid("tool_choice.function", `${quote(name)} is not the name of one of the tools`);
      return { function: name };
    }
  }
}

function toUpstreamResponseFormat(format: ResponseFormat, input: InputBudget): UpstreamResponseFormat {
  const type = checkOneOf("response_format.type", format.type, RESPONSE_FORMATS);
  if (type !== "json_schema") {
    if (format.jsonSchema !== undefined) invalid("response_format.json_schema", 'only with type "json_schema"');
    return { type };
  }
  const schema = format.jsonSchema;
  if (schema === undefined)
    invalid("response_format.json_schema", 'missing: type "json_schema" needs {"name", "schema"}');
  checkFunctionName("response_format.json_schema.name", schema.name);
  checkNesting("response_format.json_schema.schema", schema.schema);
  input.add("response_format.json_schema", utf8Bytes(schema.description) + jsonBytes(schema.schema));
  return {
    type,
    name: schema.name,
    ...(schema.description !== "" && { description: schema.description }),
    ...(schema.schema !== undefined && { schema: schema.schema as Record<string, unknown> }),
    ...(schema.strict !== undefined && { strict: schema.strict }),
  };
}

/** int64 in the proto; the upstream's JSON body carries integers exactly only up to 2^53 - 1. */
function checkSeed(seed: bigint): number {
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (seed > max || seed < -max)
    invalid("seed", `${seed} is outside [-${max}, ${max}], the integers JSON carries exactly`);
  return Number(seed);
}

function checkLogitBias(bias: Record<string, number>): Record<string, number> {
  const entries = Object.entries(bias);
  if (entries.length > MAX_LOGIT_BIAS)
    invalid("logit_bias", `${entries.length} entries, more than the limit of ${MAX_LOGIT_BIAS}`);
  for (const [token, value] of entries) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(token))
      invalid("logit_bias", `key ${quote(token)} is not a token id (a non-negative integer)`);
    if (!(value >= -100 && value <= 100)) invalid(`logit_bias.${token}`, `${value} is outside [-100, 100]`);
  }
  return bias;
}
