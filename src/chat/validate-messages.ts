// One conversation turn: its role and the fields that role needs (a tool result answers a call id,
// an assistant turn may carry tool calls, a user turn may be parts with images), each checked
// before the upstream is called, with problems naming the field.
import type { ChatMessage, ContentPart, ToolCall } from "../contract/chat.js";
import type { ImageDetail, UpstreamContentPart, UpstreamMessage, UpstreamToolCall } from "../upstream/port.js";
import { parseImageUrl } from "./image-url.js";
import {
  checkFunctionName,
  checkFunctionType,
  checkOneOf,
  invalid,
  quote,
  utf8Bytes,
  type InputBudget,
} from "./request-checks.js";

export interface MessageLimits {
  /** Decoded bytes of one data: URL image. */
  maxImageBytes: number;
}

const ROLES = ["system", "developer", "user", "assistant", "tool"] as const;
const DETAILS = ["auto", "low", "high"] as const;
/** Parts of one user message, and tool calls of one assistant message. */
export const MAX_PARTS = 64;
export const MAX_TOOL_CALLS = 128;
/** Tool call ids are the upstream's own (`call_...`); this only bounds nonsense. */
const MAX_ID = 256;
/** OpenAI's rule for a participant's name. */
const PARTICIPANT_NAME = /^[^\s<|\\/>]{1,64}$/;

export function toUpstreamMessage(
  m: ChatMessage,
  field: string,
  limits: MessageLimits,
  input: InputBudget,
): UpstreamMessage {
  const role = checkOneOf(`${field}.role`, m.role, ROLES);
  if (m.parts.length > 0 && role !== "user") invalid(`${field}.parts`, "only user messages have parts");
  if (m.toolCalls.length > 0 && role !== "assistant")
    invalid(`${field}.tool_calls`, "only assistant messages carry tool calls");
  if (m.toolCallId !== "" && role !== "tool") invalid(`${field}.tool_call_id`, "only tool messages answer a tool call");
  if (m.name !== "") {
    if (role === "tool")
      invalid(`${field}.name`, "a tool message has no name (its tool_call_id says which call it answers)");
    if (!PARTICIPANT_NAME.test(m.name))
      invalid(`${field}.name`, `${quote(m.name)} is not a name (at most 64 characters, no spaces or <|\\/>)`);
  }
  input.add(`${field}.content`, utf8Bytes(m.content));
  const name = m.name !== "" && { name: m.name };

  switch (role) {
    case "system":
    case "developer":
      return { role, content: m.content, ...name };
    case "user":
      if (m.parts.length === 0) return { role, content: m.content, ...name };
      if (m.parts.length > MAX_PARTS)
        invalid(`${field}.parts`, `${m.parts.length} parts, more than the limit of ${MAX_PARTS}`);
      return {
        role,
        content: m.content,
        parts: m.parts.map((p, i) => toUpstreamPart(p, `${field}.parts[${i}]`, limits, input)),
        ...name,
      };
    case "assistant":
      if (m.toolCalls.length === 0) return { role, content: m.content, ...name };
      return {
        role,
        content: m.content,
        toolCalls: toUpstreamToolCalls(m.toolCalls, `${field}.tool_calls`, input),
        ...name,
      };
    case "tool":
      if (m.toolCallId === "") invalid(`${field}.tool_call_id`, "a tool message needs the id of the call it answers");
      if (m.toolCallId.length > MAX_ID) invalid(`${field}.tool_call_id`, `longer than ${MAX_ID} characters`);
      if (m.content === "") invalid(`${field}.content`, "a tool message needs the tool's result");
      return { role, content: m.content, toolCallId: m.toolCallId };
  }
}

/** Whether the model has something to read in this message. */
export function hasContent(m: UpstreamMessage): boolean {
  return (
    m.content.trim() !== "" ||
    (m.role === "user" && m.parts !== undefined && m.parts.length > 0) ||
    (m.role === "assistant" && m.toolCalls !== undefined && m.toolCalls.length > 0)
  );
}

function toUpstreamPart(
  part: ContentPart,
  field: string,
  limits: MessageLimits,
  input: InputBudget,
): UpstreamContentPart {
  const type = checkOneOf(`${field}.type`, part.type, ["text", "image_url"] as const);
  if (type === "text") {
    if (part.imageUrl !== undefined) invalid(`${field}.image_url`, 'only on a part of type "image_url"');
    if (part.text === "") invalid(`${field}.text`, "must not be empty");
    input.add(`${field}.text`, utf8Bytes(part.text));
    return { type, text: part.text };
  }
  if (part.text !== "") invalid(`${field}.text`, 'only on a part of type "text"');
  if (part.imageUrl === undefined) invalid(`${field}.image_url`, 'missing: an image_url part needs {"url": ...}');
  const { url, detail } = part.imageUrl;
  if (url === "") invalid(`${field}.image_url.url`, "must not be empty");
  const source = parseImageUrl(url);
  if (typeof source === "string") invalid(`${field}.image_url.url`, source);
  if (source.kind === "data") {
    if (source.bytes > limits.maxImageBytes) {
      invalid(
        `${field}.image_url.url`,
        `the image is ${source.bytes} bytes, more than the limit of ${limits.maxImageBytes}`,
      );
    }
    input.add(`${field}.image_url.url`, source.bytes);
  } else {
    input.add(`${field}.image_url.url`, utf8Bytes(url));
  }
  const checked = detail === "" ? undefined : checkOneOf<ImageDetail>(`${field}.image_url.detail`, detail, DETAILS);
  return { type, url, ...(checked !== undefined && { detail: checked }) };
}

function toUpstreamToolCalls(calls: ToolCall[], field: string, input: InputBudget): UpstreamToolCall[] {
  if (calls.length > MAX_TOOL_CALLS)
    invalid(field, `${calls.length} tool calls, more than the limit of ${MAX_TOOL_CALLS}`);
  const ids = new Set<string>();
  return calls.map((call, i) => {
    const at = `${field}[${i}]`;
    if (call.id === "") invalid(`${at}.id`, "must not be empty (the id the model gave the call)");
    if (call.id.length > MAX_ID) invalid(`${at}.id`, `longer than ${MAX_ID} characters`);
    if (ids.has(call.id)) invalid(`${at}.id`, `${quote(call.id)} is the id of an earlier call in this message`);
    ids.add(call.id);
    checkFunctionType(`${at}.type`, call.type);
    if (call.function === undefined) invalid(`${at}.function`, 'missing: a tool call needs {"name", "arguments"}');
    checkFunctionName(`${at}.function.name`, call.function.name);
    input.add(`${at}.function.arguments`, utf8Bytes(call.function.arguments));
    return { id: call.id, name: call.function.name, arguments: call.function.arguments };
  });
}
