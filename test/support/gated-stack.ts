// The real stack (service + Envoy) in front of a fake upstream whose replies a test can hold at one
// token: a reply whose prompt contains a key of `gates` waits at token `cutAfter` until that gate is
// released, so the test can cut its connection at a known point (the resume tests).
import { startFakeUpstream, type FakeUpstream } from "./fake-model.js";
import { startStack, type Stack } from "./processes.js";
import type { hold } from "./gates.js";

/** Multi-byte text on purpose: a cut or a repeat inside a character would show. */
export const unicodeTokens = (count: number) => Array.from({ length: count }, (_, i) => `${i}:héllo 🌍 «ünïcode» `);

export interface GatedStack {
  upstream: FakeUpstream;
  stack: Stack;
  /** Prompt key → the gate its reply waits on at token `cutAfter`. */
  gates: Map<string, ReturnType<typeof hold>>;
  stop(): Promise<void>;
}

export async function startGatedStack(options: {
  tokens: string[];
  cutAfter: number;
  apiKey: string;
}): Promise<GatedStack> {
  const gates: GatedStack["gates"] = new Map();
  const upstream = await startFakeUpstream({
    reply: (request) => {
      const prompt = JSON.stringify(request.body.messages);
      const gate = [...gates.entries()].find(([key]) => prompt.includes(key))?.[1];
      return { tokens: options.tokens, gate: (i) => (i === options.cutAfter ? gate?.promise : undefined) };
    },
  });
  const stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: options.apiKey,
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
  });
  return {
    upstream,
    stack,
    gates,
    async stop() {
      await stack.stop();
      await upstream.close();
    },
  };
}
