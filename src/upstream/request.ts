// A chat request as the gateway hands it to an upstream: validated (src/chat/validate.ts), with
// defaults applied, in no provider's wire format yet (src/providers/openai/params.ts writes OpenAI's).
// Optional fields are absent when the caller left them unset, so the upstream's defaults apply.

export type UpstreamContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; url: string; detail?: ImageDetail };

export type ImageDetail = "auto" | "low" | "high";

export interface UpstreamToolCall {
  id: string;
  name: string;
  /** The arguments as the model wrote them: JSON text, passed back unparsed. */
  arguments: string;
}

export type UpstreamMessage =
  | { role: "system" | "developer"; content: string; name?: string }
  /** `parts` follow `content` (sent as a first text part when both are set). */
  | { role: "user"; content: string; parts?: UpstreamContentPart[]; name?: string }
  | { role: "assistant"; content: string; toolCalls?: UpstreamToolCall[]; name?: string }
  | { role: "tool"; content: string; toolCallId: string };

export interface UpstreamTool {
  name: string;
  description?: string;
  /** The arguments' JSON schema. */
  parameters?: Record<string, unknown>;
  strict?: boolean;
}

export type UpstreamToolChoice = "auto" | "none" | "required" | { function: string };

export type ReasoningEffort = "none" | "minimal" | "low" | "medium" | "high" | "xhigh";

export type UpstreamResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean };

export interface UpstreamRequest {
  model: string;
  messages: UpstreamMessage[];
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  tools?: UpstreamTool[];
  toolChoice?: UpstreamToolChoice;
  parallelToolCalls?: boolean;
  reasoningEffort?: ReasoningEffort;
  responseFormat?: UpstreamResponseFormat;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Token id (decimal) → bias in [-100, 100]. */
  logitBias?: Record<string, number>;
  user?: string;
  /** Server-specific options merged into the upstream body as they are. */
  extraBody?: Record<string, unknown>;
}
