// What an upstream streams, in the gateway's own terms: whatever the provider's wire format, a reply
// is these events in order, then exactly one finish. The chat service writes each as one chat.v1
// ChatResponse event (`text` as `delta`).

export interface UpstreamUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Of completionTokens, those spent reasoning; 0 when the upstream does not say. */
  reasoningTokens: number;
  /** Of promptTokens, those served from the upstream's prompt cache; 0 when it does not say. */
  cachedPromptTokens: number;
}

/**
 * A piece of a tool call. `index` is the gateway's own: 0, 1, ... in order of each call's first
 * appearance, stable for the whole call. A call's first event carries its `id` and `name` (empty
 * on the next ones), every event the next piece of its arguments' JSON text (possibly empty).
 */
export interface ToolCallPiece {
  type: "tool_call";
  index: number;
  id: string;
  name: string;
  arguments: string;
}

export interface UpstreamFinish {
  type: "finish";
  finishReason: string;
  model: string;
  usage: UpstreamUsage | undefined;
}

export type UpstreamEvent =
  | { type: "text"; text: string }
  | { type: "reasoning"; text: string }
  | { type: "refusal"; text: string }
  | ToolCallPiece
  | UpstreamFinish;
