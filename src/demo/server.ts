// The demo upstream `npm start` and `npm run start:cluster` run when no real one is configured: a
// small, real OpenAI-compatible server (`POST /v1/chat/completions` streaming in the SSE wire format,
// `GET /v1/models` listing `demo`), so the whole stack works with no setup and the real `openai`
// SDK is what talks to it. What it answers is `demoReply`. The tests' fake model, with its knobs, is
// test/support/fake-model.ts; it shares only the wire format (./wire.ts) with this.
import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import {
  deltas,
  sendModels,
  serve,
  startCompletion,
  textOf,
  type ChatCompletionBody,
  type Served,
  type WireDelta,
} from "./wire.js";

/** What the demo streams for one request: `deltas`, then `tokens` as text, `tokenDelayMs` apart. */
export interface DemoReply {
  deltas: WireDelta[];
  tokens: string[];
  tokenDelayMs: number;
  finishReason?: string;
}

/**
 * The demo's answer: the fixed reply, word by word. Asked with `reasoning_effort`, it "thinks" aloud
 * first; offered tools, it calls the first one (string arguments filled with what the user said);
 * given a tool's result, it repeats it. So every event of docs/api.md can be tried on `npm start`.
 */
export function demoReply(request: { body: ChatCompletionBody }): DemoReply {
  const messages = request.body.messages ?? [];
  const last = [...messages].reverse().find((m) => m.role === "user");
  const said = textOf(last?.content).trim().slice(0, 200);
  const words = (text: string) => text.split(/(?<= )/);
  const steps: WireDelta[] = request.body.reasoning_effort
    ? words("The demo upstream does not think, but this is how a model's reasoning streams, before its answer.").map(
        (w) => deltas.reasoning(w),
      )
    : [];
  const tool = (request.body.tools as DemoTool[] | undefined)?.[0]?.function;
  const result = messages.at(-1);
  if (result?.role === "tool") {
    return {
      deltas: steps,
      tokens: words(`The tool answered: ${textOf(result.content).slice(0, 200)}`),
      tokenDelayMs: 40,
    };
  }
  if (tool?.name && request.body.tool_choice !== "none") {
    const properties = tool.parameters?.properties ?? {};
    const args = JSON.stringify(
      Object.fromEntries(
        Object.entries(properties).flatMap(([key, schema]) =>
          schema?.type === "string" ? [[key, said.slice(0, 60)]] : [],
        ),
      ),
    );
    const pieces = args.match(/.{1,8}/g) ?? [];
    steps.push(deltas.toolCall(0, "call_demo", tool.name), ...pieces.map((piece) => deltas.toolArgs(0, piece)));
    return { deltas: steps, tokens: [], tokenDelayMs: 40, finishReason: "tool_calls" };
  }
  const text =
    `This is the demo upstream of chat-gateway. You said: "${said}". ` +
    "Set OPENAI_BASE_URL and OPENAI_API_KEY to talk to a real model; until then every reply is this one, " +
    "streamed word by word so you can watch it arrive.";
  return { deltas: steps, tokens: words(text), tokenDelayMs: 40 };
}

interface DemoTool {
  function?: { name?: string; parameters?: { properties?: Record<string, { type?: string } | undefined> } };
}

export type DemoUpstream = Served;

export function startDemoUpstream(options: { host?: string; port?: number } = {}): Promise<DemoUpstream> {
  return serve({ models: (_req, res) => sendModels(res, ["demo"], "chat-gateway-demo"), completions: answer }, options);
}

/** Streams `demoReply`: the role chunk, then each delta `tokenDelayMs` apart, then the finish and usage. */
async function answer(_req: IncomingMessage, res: ServerResponse, body: ChatCompletionBody): Promise<void> {
  const reply = demoReply({ body });
  const completion = startCompletion(res, body);
  await completion.delta(deltas.role());
  const steps = [...reply.deltas, ...reply.tokens.map((token) => deltas.content(token))];
  for (const [i, step] of steps.entries()) {
    if (i > 0) await sleep(reply.tokenDelayMs);
    // The client went away (Ctrl-C on a curl, a cancelled stream): nothing more to write.
    if (res.destroyed) return;
    await completion.delta(step);
  }
  await completion.finish(reply.finishReason ?? "stop", { completionTokens: steps.length });
}
