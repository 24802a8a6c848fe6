// The gateway's upstream request → the body of OpenAI's `POST /chat/completions`, as the openai SDK
// sends it. Pure: no client, no I/O, so every field's translation is tested on its own
// (test/unit/providers/openai/params.test.ts). A text-only request gives exactly the body it always gave.
import type {
  ChatCompletionContentPart,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
  ChatCompletionTool,
  ChatCompletionToolChoiceOption,
} from "openai/resources/chat/completions";
import type { ResponseFormatJSONSchema } from "openai/resources/shared";
import type {
  UpstreamMessage,
  UpstreamRequest,
  UpstreamResponseFormat,
  UpstreamTool,
  UpstreamToolChoice,
} from "../../upstream/port.js";

export function toOpenAIParams(request: UpstreamRequest): ChatCompletionCreateParamsStreaming {
  const params: ChatCompletionCreateParamsStreaming = {
    model: request.model,
    messages: request.messages.map(toOpenAIMessage),
    stream: true,
    ...(request.temperature !== undefined && { temperature: request.temperature }),
    ...(request.topP !== undefined && { top_p: request.topP }),
    ...(request.maxTokens !== undefined && { max_tokens: request.maxTokens }),
    ...(request.stop !== undefined && request.stop.length > 0 && { stop: request.stop }),
    ...(request.tools !== undefined && { tools: request.tools.map(toOpenAITool) }),
    ...(request.toolChoice !== undefined && { tool_choice: toOpenAIToolChoice(request.toolChoice) }),
    ...(request.parallelToolCalls !== undefined && { parallel_tool_calls: request.parallelToolCalls }),
    ...(request.reasoningEffort !== undefined && { reasoning_effort: request.reasoningEffort }),
    ...(request.responseFormat !== undefined && { response_format: toOpenAIResponseFormat(request.responseFormat) }),
    ...(request.seed !== undefined && { seed: request.seed }),
    ...(request.presencePenalty !== undefined && { presence_penalty: request.presencePenalty }),
    ...(request.frequencyPenalty !== undefined && { frequency_penalty: request.frequencyPenalty }),
    ...(request.logitBias !== undefined && { logit_bias: request.logitBias }),
    ...(request.user !== undefined && { user: request.user }),
  };
  // The SDK sends properties it does not know as they are, in the JSON body (its README's
  // "Undocumented request params"); its `body` request option would replace the body instead.
  // Validation has made sure these keys set nothing the gateway sets itself.
  return request.extraBody === undefined ? params : { ...params, ...request.extraBody };
}

function toOpenAIMessage(message: UpstreamMessage): ChatCompletionMessageParam {
  switch (message.role) {
    case "system":
    case "developer":
      return {
        role: message.role,
        content: message.content,
        ...(message.name !== undefined && { name: message.name }),
      };
    case "user": {
      const name = message.name !== undefined && { name: message.name };
      if (message.parts === undefined) return { role: "user", content: message.content, ...name };
      const parts: ChatCompletionContentPart[] = message.parts.map((part) =>
        part.type === "text"
          ? { type: "text", text: part.text }
          : {
              type: "image_url",
              image_url: { url: part.url, ...(part.detail !== undefined && { detail: part.detail }) },
            },
      );
      if (message.content !== "") parts.unshift({ type: "text", text: message.content });
      return { role: "user", content: parts, ...name };
    }
    case "assistant": {
      const name = message.name !== undefined && { name: message.name };
      if (message.toolCalls === undefined) return { role: "assistant", content: message.content, ...name };
      return {
        role: "assistant",
        // What OpenAI itself returns beside tool calls, and what its clients send back.
        content: message.content === "" ? null : message.content,
        tool_calls: message.toolCalls.map((call) => ({
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: call.arguments },
        })),
        ...name,
      };
    }
    case "tool":
      return { role: "tool", content: message.content, tool_call_id: message.toolCallId };
  }
}

function toOpenAITool(tool: UpstreamTool): ChatCompletionTool {
  return {
    type: "function",
    function: {
      name: tool.name,
      ...(tool.description !== undefined && { description: tool.description }),
      ...(tool.parameters !== undefined && { parameters: tool.parameters }),
      ...(tool.strict !== undefined && { strict: tool.strict }),
    },
  };
}

function toOpenAIToolChoice(choice: UpstreamToolChoice): ChatCompletionToolChoiceOption {
  return typeof choice === "string" ? choice : { type: "function", function: { name: choice.function } };
}

function toOpenAIResponseFormat(
  format: UpstreamResponseFormat,
): NonNullable<ChatCompletionCreateParamsStreaming["response_format"]> {
  if (format.type !== "json_schema") return { type: format.type };
  const jsonSchema: ResponseFormatJSONSchema.JSONSchema = {
    name: format.name,
    ...(format.description !== undefined && { description: format.description }),
    ...(format.schema !== undefined && { schema: format.schema }),
    ...(format.strict !== undefined && { strict: format.strict }),
  };
  return { type: "json_schema", json_schema: jsonSchema };
}

/** The body keys a request's own fields fill (extra_body may not set them as well). */
export function bodyKeys(request: UpstreamRequest): string[] {
  return Object.keys(toOpenAIParams(request));
}
