// A Responses request body (`POST /v1/responses`, as the OpenAI SDKs send it) → chat.v1's
// ChatRequest, for what Chat Completions can express: the input (a string, or items: messages,
// the model's function calls and their outputs) becomes the conversation, `instructions` its first
// system message, function tools and `text.format` Chat's tools and response format. The chat
// service then validates it as it validates Chat's: one set of checks and limits for all three.
// `store`, `previous_response_id`, `conversation` and `background` are read here and acted on by
// the service (stored.ts, background.ts); hosted tools, and what the gateway could not give back,
// are refused by name, never dropped.
import { ChatRequest, type ChatMessage, type ContentPart, type Tool } from "../../contract/chat.js";
import { fail, integer, numberField, optionalObject, optionalString, parseBody, Problem } from "./fields.js";
import { conversationUuid, isResponseId } from "./items.js";

export interface DecodedResponseRequest {
  request: ChatRequest;
  stream: boolean;
  /** The request's settings as the `response` object repeats them. */
  echo: ResponseEcho;
  /** Set when the body cannot become a request: the caller-facing reason, naming the field. */
  problem?: string;
  /** Whether the response is kept (`store`, true unless false, as OpenAI's default). */
  store: boolean;
  previousResponseId?: string;
  /** The conversation named (`conversation`, as `conv_...` or `{id}`): its OpenAI id and the store's. */
  conversation?: { id: string; uuid: string };
  /** Whether `instructions` is the request's first message (never carried to the next response). */
  hasInstructions: boolean;
  /** `background: true`: the generation runs detached, resumable (background.ts); needs `store`. */
  background: boolean;
}

/** What a `response` object says about the request that made it (OpenAI's fields, as sent or their defaults). */
export interface ResponseEcho {
  instructions: string | null;
  max_output_tokens: number | null;
  metadata: Record<string, unknown>;
  parallel_tool_calls: boolean;
  reasoning: { effort: string | null; summary: string | null };
  temperature: number | null;
  text: { format: Record<string, unknown> };
  tool_choice: unknown;
  tools: Record<string, unknown>[];
  top_p: number | null;
  user?: string;
}

const NEEDS_STORAGE = "needs stored items by reference, which the gateway does not serve";

/**
 * Fields the gateway cannot honour, each refused by name when set (`refuse` says which values ask
 * for something; the others, the SDKs' defaults, are accepted).
 */
const REFUSED: Record<string, { why: string; refuse: (value: unknown) => boolean }> = {
  prompt: { why: "stored prompt templates are not served", refuse: (v) => v !== null && v !== undefined },
  include: {
    why: "extra output (encrypted reasoning, log probabilities, hosted tools' results) is not available",
    refuse: (v) => !(v === null || v === undefined || (Array.isArray(v) && v.length === 0)),
  },
  top_logprobs: { why: "log probabilities are not passed on", refuse: (v) => v !== null && v !== undefined && v !== 0 },
  max_tool_calls: { why: "the number of tool calls cannot be capped", refuse: (v) => v !== null && v !== undefined },
  truncation: {
    why: 'the gateway does not truncate the conversation (only "disabled")',
    refuse: (v) => v !== null && v !== undefined && v !== "disabled",
  },
  context_management: { why: "context compaction is not served", refuse: (v) => v !== null && v !== undefined },
};

/** Fields read into the ChatRequest (or used by the gateway itself); anything else goes to the upstream as it is. */
const KNOWN = new Set([
  "model",
  "input",
  "instructions",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "reasoning",
  "text",
  "max_output_tokens",
  "temperature",
  "top_p",
  "user",
  "metadata",
  "stream",
  "stream_options",
  "store",
  "previous_response_id",
  "conversation",
  "background",
]);

const DEFAULT_ECHO: ResponseEcho = {
  instructions: null,
  max_output_tokens: null,
  metadata: {},
  parallel_tool_calls: true,
  reasoning: { effort: null, summary: null },
  temperature: null,
  text: { format: { type: "text" } },
  tool_choice: "auto",
  tools: [],
  top_p: null,
};

export function decodeResponseRequest(data: Uint8Array): DecodedResponseRequest {
  const empty = {
    request: ChatRequest.fromPartial({}),
    stream: false,
    echo: DEFAULT_ECHO,
    store: false,
    hasInstructions: false,
    background: false,
  };
  const body = parseBody(data);
  if (typeof body === "string") return { ...empty, problem: body };
  try {
    return translate(body);
  } catch (error) {
    if (error instanceof Problem) return { ...empty, stream: body.stream === true, problem: error.message };
    throw error;
  }
}

function translate(body: Record<string, unknown>): DecodedResponseRequest {
  for (const [key, { why, refuse }] of Object.entries(REFUSED)) {
    if (refuse(body[key])) fail(key, why);
  }
  const extra: Record<string, unknown> = Object.fromEntries(
    Object.entries(body).filter(([key]) => !KNOWN.has(key) && !(key in REFUSED)),
  );
  const instructions = optionalString(body.instructions, "instructions");
  const reasoning = optionalObject(body.reasoning, "reasoning");
  const effort = optionalString(reasoning?.effort, "reasoning.effort");
  // A summary is a request, not a promise (OpenAI's "auto" may give none): the reasoning the
  // upstream streams comes back whole, as reasoning_text, rather than summarized.
  const summary = optionalString(reasoning?.summary, "reasoning.summary");
  const text = optionalObject(body.text, "text");
  const format = formatOf(text?.format);
  const verbosity = optionalString(text?.verbosity, "text.verbosity");
  if (verbosity !== undefined) extra.verbosity = verbosity; // Chat Completions' name for it
  const maxTokens =
    body.max_output_tokens === undefined || body.max_output_tokens === null
      ? undefined
      : integer(body.max_output_tokens, "max_output_tokens");
  const tools = toolsOf(body.tools);
  const toolChoice =
    body.tool_choice === undefined || body.tool_choice === null ? undefined : toolChoiceOf(body.tool_choice);
  const messages = [
    ...(instructions === undefined || instructions === "" ? [] : [message("system", instructions)]),
    ...inputOf(body.input),
  ];
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== "boolean")
    fail("stream", "must be a boolean");
  const metadata = optionalObject(body.metadata, "metadata") ?? {};
  const user = optionalString(body.user, "user");
  const request = ChatRequest.fromPartial({
    model: optionalString(body.model, "model") ?? "",
    messages,
    ...numberField("temperature", body.temperature),
    ...numberField("topP", body.top_p, "top_p"),
    ...(maxTokens !== undefined && { maxTokens }),
    tools: tools.map(({ tool }) => tool),
    ...(toolChoice !== undefined && { toolChoice: toolChoice.choice }),
    ...(typeof body.parallel_tool_calls === "boolean" && { parallelToolCalls: body.parallel_tool_calls }),
    reasoningEffort: effort ?? "",
    ...(format.responseFormat !== undefined && { responseFormat: format.responseFormat }),
    user: user ?? "",
    ...(Object.keys(extra).length > 0 && { extraBody: extra }),
  });
  const echo: ResponseEcho = {
    instructions: instructions ?? null,
    max_output_tokens: maxTokens ?? null,
    metadata,
    parallel_tool_calls: typeof body.parallel_tool_calls === "boolean" ? body.parallel_tool_calls : true,
    reasoning: { effort: effort ?? null, summary: summary ?? null },
    temperature: request.temperature ?? null,
    text: { format: format.echo },
    tool_choice: toolChoice?.echo ?? "auto",
    tools: tools.map(({ echo }) => echo),
    top_p: request.topP ?? null,
    ...(user !== undefined && { user }),
  };
  const storage = storageOf(body);
  const background = optionalBoolean(body.background, "background") === true;
  // As OpenAI: a background response is kept, so it can be polled, resumed and cancelled.
  if (background && !storage.store) fail("background", "requires store to be true (a background response is kept)");
  if (background) request.resumable = true;
  return { request, stream: body.stream === true, echo, ...storage, hasInstructions: !!instructions, background };
}

function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === "boolean" ? value : fail(field, "must be a boolean");
}

/** `store`, `previous_response_id` and `conversation`: what the response is kept with. */
function storageOf(body: Record<string, unknown>) {
  if (body.store !== undefined && body.store !== null && typeof body.store !== "boolean")
    fail("store", "must be a boolean");
  const previous = optionalString(body.previous_response_id, "previous_response_id");
  if (previous !== undefined && !isResponseId(previous))
    fail("previous_response_id", "must be a response's id (resp_ and 32 hex digits)");
  const named = body.conversation;
  const id =
    typeof named === "object" && named !== null && !Array.isArray(named)
      ? (optionalString((named as Record<string, unknown>).id, "conversation.id") ??
        fail("conversation.id", "required"))
      : optionalString(named, "conversation");
  if (id !== undefined && previous !== undefined)
    fail("conversation", "cannot be used with previous_response_id: send one of them");
  const uuid =
    id === undefined
      ? undefined
      : (conversationUuid(id) ?? fail("conversation", "must be a conversation's id (conv_...)"));
  return {
    store: body.store !== false,
    ...(previous !== undefined && { previousResponseId: previous }),
    ...(id !== undefined && uuid !== undefined && { conversation: { id, uuid } }),
  };
}

function message(role: string, content: string): ChatMessage {
  return { role, content, parts: [], toolCalls: [], toolCallId: "", name: "" };
}

/** The input: one user message, or its items in order as Chat's messages. */
export function inputOf(value: unknown, field = "input"): ChatMessage[] {
  if (typeof value === "string") return [message("user", value)];
  if (!Array.isArray(value)) return fail(field, "required: a string or an array of input items");
  const messages: ChatMessage[] = [];
  value.forEach((it, i) => {
    const at = `${field}[${i}]`;
    const item = optionalObject(it, at) ?? fail(at, "must be an object");
    const type = optionalString(item.type, `${at}.type`) ?? (item.role !== undefined ? "message" : undefined);
    switch (type) {
      case "message":
        messages.push(messageOf(item, at));
        return;
      case "function_call": {
        // The model's calls join the assistant turn they follow (Chat Completions writes a turn's
        // text and its parallel calls as one message), or begin one.
        const call = {
          id: optionalString(item.call_id, `${at}.call_id`) ?? fail(`${at}.call_id`, "required"),
          type: "function",
          function: {
            name: optionalString(item.name, `${at}.name`) ?? fail(`${at}.name`, "required"),
            arguments: optionalString(item.arguments, `${at}.arguments`) ?? "",
          },
        };
        const last = messages[messages.length - 1];
        if (last?.role === "assistant") last.toolCalls.push(call);
        else messages.push({ ...message("assistant", ""), toolCalls: [call] });
        return;
      }
      case "function_call_output":
        messages.push({
          ...message("tool", toolOutputOf(item.output, `${at}.output`)),
          toolCallId: optionalString(item.call_id, `${at}.call_id`) ?? fail(`${at}.call_id`, "required"),
        });
        return;
      // The model's reasoning from an earlier response, handed back with its output: Chat
      // Completions has no place for it in a request (DeepSeek's API refuses it), so it is left out.
      case "reasoning":
        return;
      case "item_reference":
        return fail(`${at}.type`, `"item_reference" ${NEEDS_STORAGE}`);
      default:
        return fail(
          `${at}.type`,
          `${JSON.stringify(type ?? null)} items are not supported (message, function_call, function_call_output and reasoning are)`,
        );
    }
  });
  return messages;
}

const ROLES = new Set(["user", "assistant", "system", "developer"]);

function messageOf(item: Record<string, unknown>, at: string): ChatMessage {
  const role = optionalString(item.role, `${at}.role`) ?? fail(`${at}.role`, "required");
  if (!ROLES.has(role))
    fail(`${at}.role`, `${JSON.stringify(role)} is not a role (user, assistant, system, developer)`);
  const content = item.content;
  if (typeof content === "string") return message(role, content);
  if (!Array.isArray(content)) return fail(`${at}.content`, "required: a string or an array of content parts");
  const parts = content.map((p, i) => partOf(p, `${at}.content[${i}]`));
  // Chat's parts are a user message's; another role's text parts are one string, as written.
  if (role === "user") return { ...message(role, ""), parts };
  const image = parts.findIndex((p) => p.type !== "text");
  if (image >= 0) fail(`${at}.content[${image}]`, `only user messages carry images`);
  return message(role, parts.map((p) => p.text).join(""));
}

function partOf(value: unknown, at: string): ContentPart {
  const part = optionalObject(value, at) ?? fail(at, "must be an object");
  switch (part.type) {
    case "input_text":
    case "output_text":
      return { type: "text", text: optionalString(part.text, `${at}.text`) ?? "", imageUrl: undefined };
    case "refusal":
      return { type: "text", text: optionalString(part.refusal, `${at}.refusal`) ?? "", imageUrl: undefined };
    case "input_image": {
      if (part.file_id !== undefined && part.file_id !== null) fail(`${at}.file_id`, "stored files are not served");
      const url = optionalString(part.image_url, `${at}.image_url`) ?? fail(`${at}.image_url`, "required");
      const detail = optionalString(part.detail, `${at}.detail`) ?? "";
      return { type: "image_url", text: "", imageUrl: { url, detail } };
    }
    default:
      return fail(
        `${at}.type`,
        `${JSON.stringify(part.type ?? null)} is not supported (input_text, input_image, output_text and refusal are)`,
      );
  }
}

/** A function call's output: a string, or text parts (read as one string). */
function toolOutputOf(value: unknown, at: string): string {
  if (typeof value === "string") return value;
  if (!Array.isArray(value)) return fail(at, "required: a string or an array of input_text parts");
  return value
    .map((p, i) => {
      const part = optionalObject(p, `${at}[${i}]`) ?? fail(`${at}[${i}]`, "must be an object");
      if (part.type !== "input_text")
        fail(`${at}[${i}].type`, "only input_text parts are supported in a tool's output");
      return optionalString(part.text, `${at}[${i}].text`) ?? "";
    })
    .join("");
}

/** Function tools, flat as the Responses API writes them; hosted tools are refused by name. */
function toolsOf(value: unknown): { tool: Tool; echo: Record<string, unknown> }[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail("tools", "must be an array");
  return value.map((t, i) => {
    const at = `tools[${i}]`;
    const tool = optionalObject(t, at) ?? fail(at, "must be an object");
    const type = optionalString(tool.type, `${at}.type`) ?? fail(`${at}.type`, "required");
    if (type !== "function") fail(`${at}.type`, `${JSON.stringify(type)} tools are not supported (function tools are)`);
    const name = optionalString(tool.name, `${at}.name`) ?? fail(`${at}.name`, "required");
    const description = optionalString(tool.description, `${at}.description`);
    const parameters = optionalObject(tool.parameters, `${at}.parameters`);
    const strict = typeof tool.strict === "boolean" ? tool.strict : undefined;
    return {
      tool: {
        type: "function",
        function: {
          name,
          description: description ?? "",
          parameters,
          ...(strict !== undefined && { strict }),
        },
      },
      echo: {
        type: "function",
        name,
        description: description ?? null,
        parameters: parameters ?? null,
        strict: strict ?? null,
      },
    };
  });
}

function toolChoiceOf(value: unknown) {
  if (typeof value === "string") return { choice: { choice: { $case: "mode" as const, value } }, echo: value };
  const choice = optionalObject(value, "tool_choice") ?? fail("tool_choice", "must be a string or an object");
  if (choice.type !== "function")
    fail("tool_choice.type", `${JSON.stringify(choice.type ?? null)} is not supported (a mode, or "function")`);
  const name = optionalString(choice.name, "tool_choice.name") ?? fail("tool_choice.name", "required");
  return { choice: { choice: { $case: "function" as const, value: name } }, echo: { type: "function", name } };
}

/** `text.format`: plain text (Chat's default, so nothing is sent), JSON, or a JSON schema (flat here, nested in Chat). */
function formatOf(value: unknown) {
  const format = optionalObject(value, "text.format");
  const type = optionalString(format?.type, "text.format.type") ?? "text";
  switch (type) {
    case "text":
      return { responseFormat: undefined, echo: { type } };
    case "json_object":
      return { responseFormat: { type }, echo: { type } };
    case "json_schema": {
      const name = optionalString(format?.name, "text.format.name") ?? fail("text.format.name", "required");
      const description = optionalString(format?.description, "text.format.description");
      const schema = optionalObject(format?.schema, "text.format.schema") ?? fail("text.format.schema", "required");
      const strict = typeof format?.strict === "boolean" ? format.strict : undefined;
      return {
        responseFormat: {
          type,
          jsonSchema: { name, description: description ?? "", schema, ...(strict !== undefined && { strict }) },
        },
        echo: {
          type,
          name,
          schema,
          strict: strict ?? null,
          ...(description !== undefined && { description }),
        },
      };
    }
    default:
      return fail("text.format.type", `${JSON.stringify(type)} is not supported (text, json_object, json_schema)`);
  }
}
