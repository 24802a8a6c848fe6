// The browser client (`chat-gateway/web`) under Node, against the real Envoy and the built service:
// the events it yields, every class of error it throws, and cancellation seen by the upstream.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { build } from "esbuild";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  ChatError,
  GrpcCode,
  listModels,
  streamChat,
  type ChatResponse,
  type ClientOptions,
} from "../../src/web/client.js";
import type { ChatResponse as GrpcChatResponse } from "../../src/client.js";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { ROOT } from "../../src/dev/envoy.js";
import { startStack, type Stack } from "../support/processes.js";
import { hold, never } from "../support/gates.js";

const KEY = "web-client-key-0123456789";
let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;
let options: ClientOptions;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-web-client",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
    CALLER_KEYS: `web ${KEY}`,
  });
  options = { baseUrl: `http://127.0.0.1:${stack.envoy.httpPort}`, apiKey: KEY };
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});
beforeEach(() => {
  reply = () => ({ tokens: ["Hello", " world"] });
});

async function collect(stream: AsyncIterable<ChatResponse>): Promise<{ events: ChatResponse[]; error: unknown }> {
  const events: ChatResponse[] = [];
  try {
    for await (const event of stream) events.push(event);
    return { events, error: undefined };
  } catch (error) {
    return { events, error };
  }
}

describe("streamChat against Envoy", () => {
  it("yields the generated ChatResponse events, deltas then finish with usage and model", async () => {
    const { events, error } = await collect(streamChat({ text: "hi", temperature: 0.5 }, options));
    expect(error).toBeUndefined();
    expect(events).toEqual([
      { event: { $case: "delta", value: { text: "Hello" } } },
      { event: { $case: "delta", value: { text: " world" } } },
      {
        event: {
          $case: "finish",
          value: {
            finishReason: "stop",
            model: "fake-model",
            usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3, reasoningTokens: 0, cachedPromptTokens: 0 },
          },
        },
      },
    ]);
    // The request went out as the transcoder reads it.
    expect(upstream.requests.at(-1)?.body).toMatchObject({
      messages: [{ role: "user", content: "hi" }],
      temperature: 0.5,
    });
    // The same type as the gRPC client's events (checked by tsc: this line fails to compile otherwise).
    const asGrpc: GrpcChatResponse[] = events;
    expect(asGrpc.length).toBe(3);
  });

  it("carries a conversation and a model", async () => {
    const request = {
      messages: [
        { role: "user", content: "first" },
        { role: "assistant", content: "one" },
        { role: "user", content: "second" },
      ],
      model: "other-model",
    };
    const { error } = await collect(streamChat(request, options));
    expect(error).toBeUndefined();
    expect(upstream.requests.at(-1)?.body).toMatchObject({ model: "other-model", messages: request.messages });
  });

  it("yields each delta as it arrives: the upstream holds the next until this client has the first", async () => {
    const { promise: seen, release } = hold();
    reply = () => ({ tokens: ["one", " two"], gate: (i) => (i === 1 ? seen : undefined) });
    const texts: string[] = [];
    for await (const { event } of streamChat({ text: "hi" }, options)) {
      if (event?.$case === "delta") texts.push(event.value.text);
      if (texts.length === 1) release();
    }
    expect(texts).toEqual(["one", " two"]);
  });

  it.each([
    [
      "400, the service's validation",
      () => ({ tokens: ["x"] }),
      { text: "hi", temperature: 3 },
      400,
      GrpcCode.INVALID_ARGUMENT,
      "temperature: 3 is outside [0, 2]",
    ],
    [
      "503, the upstream's 5xx",
      () => ({ status: 503 }),
      { text: "hi" },
      503,
      GrpcCode.UNAVAILABLE,
      "upstream error 503",
    ],
    [
      "404, an unknown model",
      () => ({ status: 404 }),
      { text: "hi" },
      404,
      GrpcCode.NOT_FOUND,
      "upstream has no such model or route",
    ],
  ] as const)(
    "throws ChatError for a %s before the first event",
    async (_name, upstreamReply, request, httpStatus, code, message) => {
      reply = upstreamReply;
      const { events, error } = await collect(streamChat(request, options));
      expect(events).toEqual([]);
      expect(error).toBeInstanceOf(ChatError);
      const e = error as ChatError;
      expect({ httpStatus: e.httpStatus, code: e.code, inBand: e.inBand }).toEqual({ httpStatus, code, inBand: false });
      expect(e.message).toContain(message);
      expect(e.codeName).toBe(Object.entries(GrpcCode).find(([, n]) => n === code)?.[0]);
      expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
    },
  );

  it("throws ChatError 429 with the upstream's retry-after", async () => {
    reply = () => ({ status: 429, headers: { "retry-after": "7" } });
    const { error } = await collect(streamChat({ text: "hi" }, options));
    expect(error).toMatchObject({
      name: "ChatError",
      httpStatus: 429,
      code: GrpcCode.RESOURCE_EXHAUSTED,
      codeName: "RESOURCE_EXHAUSTED",
      retryAfterSeconds: 7,
      inBand: false,
    });
    expect((error as Error).message).toContain("upstream rate limit reached");
  });

  it("lets a page on another origin read retry-after (CORS)", async () => {
    reply = () => ({ status: 429, headers: { "retry-after": "7" } });
    const response = await fetch(`${options.baseUrl}/chat`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ text: "hi" }),
    });
    expect(response.status).toBe(429);
    expect(response.headers.get("access-control-expose-headers")?.split(/,\s*/)).toContain("retry-after");
    await response.body?.cancel();
  });

  it("throws ChatError 401 without a key or with a wrong one, before the upstream is asked", async () => {
    const before = upstream.requests.length;
    for (const apiKey of [undefined, `${KEY}x`]) {
      const { error } = await collect(streamChat({ text: "hi" }, { ...options, apiKey }));
      expect(error).toMatchObject({ httpStatus: 401, code: GrpcCode.UNAUTHENTICATED, inBand: false });
    }
    expect(upstream.requests.length).toBe(before);
  });

  it("yields an in-band error event mid-answer, then throws it as a ChatError", async () => {
    reply = () => ({ tokens: ["partial"], end: "error-event" });
    const { events, error } = await collect(streamChat({ text: "hi" }, options));
    expect(events).toEqual([
      { event: { $case: "delta", value: { text: "partial" } } },
      {
        event: {
          $case: "error",
          value: { code: 14, status: "UNAVAILABLE", message: "upstream failed mid-stream: the model crashed" },
        },
      },
    ]);
    expect(error).toMatchObject({
      name: "ChatError",
      code: GrpcCode.UNAVAILABLE,
      httpStatus: 200,
      inBand: true,
      message: "upstream failed mid-stream: the model crashed",
    });
  });

  it("throws ChatError UNAVAILABLE with no HTTP status when the gateway cannot be reached", async () => {
    const { error } = await collect(streamChat({ text: "hi" }, { baseUrl: "http://127.0.0.1:1" }));
    expect(error).toMatchObject({ name: "ChatError", code: GrpcCode.UNAVAILABLE, httpStatus: undefined });
  });

  it("aborting mid-stream throws the signal's reason and closes the upstream request", async () => {
    reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) });
    const index = upstream.requests.length;
    const controller = new AbortController();
    const seen: ChatResponse[] = [];
    const { error } = await collect(
      (async function* () {
        for await (const event of streamChat({ text: "hi" }, { ...options, signal: controller.signal })) {
          seen.push(event);
          controller.abort();
          yield event;
        }
      })(),
    );
    expect(seen).toHaveLength(1);
    expect(error).toBe(controller.signal.reason);
    expect((error as Error).name).toBe("AbortError");
    expect(await upstream.ended(index)).toBe("closed");
  });

  it("aborting before the first event closes the upstream request", async () => {
    reply = () => ({ tokens: ["a"], gate: () => never });
    const index = upstream.requests.length;
    const controller = new AbortController();
    const stream = collect(streamChat({ text: "hi" }, { ...options, signal: controller.signal }));
    await upstream.received(index);
    controller.abort(new Error("changed my mind"));
    const { error } = await stream;
    expect((error as Error).message).toBe("changed my mind");
    expect(await upstream.ended(index)).toBe("closed");
  });

  it("leaving the loop early closes the upstream request", async () => {
    reply = () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? never : undefined) });
    const index = upstream.requests.length;
    for await (const _event of streamChat({ text: "hi" }, options)) break;
    expect(await upstream.ended(index)).toBe("closed");
  });

  it("refuses a signal that is already aborted without sending anything", async () => {
    const before = upstream.requests.length;
    const { error } = await collect(streamChat({ text: "hi" }, { ...options, signal: AbortSignal.abort() }));
    expect((error as Error).name).toBe("AbortError");
    expect(upstream.requests.length).toBe(before);
  });
});

describe("listModels against Envoy", () => {
  it("lists the models as the generated ListModelsResponse", async () => {
    const models = await listModels(options);
    expect(models.models).toContainEqual({ id: "fake-model", upstream: "default", ownedBy: "", configured: true });
    expect(models.unavailable).toEqual([]);
  });

  it("throws ChatError 401 without a key", async () => {
    await expect(listModels({ baseUrl: options.baseUrl })).rejects.toMatchObject({
      httpStatus: 401,
      code: GrpcCode.UNAUTHENTICATED,
    });
  });
});

/** A fetch answering with a canned response: what no gateway of ours sends, but a proxy or a cut connection may. */
const canned =
  (body: string | null, init: ResponseInit): typeof fetch =>
  async () =>
    new Response(body, init);
const sse = (...events: unknown[]) => events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("");

describe("streamChat, what only a broken path sends", () => {
  const base = { baseUrl: "http://gateway.invalid" };

  it("throws UNAVAILABLE in-band when the stream ends without a finish event", async () => {
    const fetch = canned(sse({ delta: { text: "cut" } }), {
      status: 200,
      headers: { "content-type": "text/event-stream" },
    });
    const { events, error } = await collect(streamChat({ text: "hi" }, { ...base, fetch }));
    expect(events).toHaveLength(1);
    expect(error).toMatchObject({
      code: GrpcCode.UNAVAILABLE,
      inBand: true,
      message: "the stream ended without a finish event",
    });
  });

  it("maps a proxy's own error page by its HTTP status", async () => {
    const fetch = canned("<html>Bad Gateway</html>", {
      status: 502,
      statusText: "Bad Gateway",
      headers: { "content-type": "text/html", "retry-after": "3" },
    });
    const { error } = await collect(streamChat({ text: "hi" }, { ...base, fetch }));
    expect(error).toMatchObject({
      code: GrpcCode.UNAVAILABLE,
      httpStatus: 502,
      message: "HTTP 502 Bad Gateway",
      retryAfterSeconds: 3,
    });
  });

  it("refuses a 200 that is not an event stream", async () => {
    const fetch = canned("<html>login</html>", { status: 200, headers: { "content-type": "text/html" } });
    const { error } = await collect(streamChat({ text: "hi" }, { ...base, fetch }));
    expect(error).toMatchObject({ code: GrpcCode.UNKNOWN, httpStatus: 200 });
  });

  it("decodes every event kind of the contract from the transcoder's JSON names", async () => {
    const fetch = canned(
      sse(
        { reasoning: { text: "thinking" } },
        { heartbeat: { waitedMs: 15000 } },
        { toolCall: { index: 0, id: "call_1", name: "get_weather", arguments: '{"ci' } },
        { toolCall: { arguments: 'ty":"Paris"}' } },
        { refusal: { text: "no" } },
        {
          finish: {
            finishReason: "tool_calls",
            usage: { promptTokens: 3, completionTokens: 5, totalTokens: 8, reasoningTokens: 2 },
          },
        },
      ),
      { status: 200, headers: { "content-type": "text/event-stream" } },
    );
    const { events, error } = await collect(streamChat({ text: "hi" }, { ...base, fetch }));
    expect(error).toBeUndefined();
    expect(events.map((e) => e.event)).toEqual([
      { $case: "reasoning", value: { text: "thinking" } },
      { $case: "heartbeat", value: { waitedMs: 15000 } },
      { $case: "toolCall", value: { index: 0, id: "call_1", name: "get_weather", arguments: '{"ci' } },
      { $case: "toolCall", value: { index: 0, id: "", name: "", arguments: 'ty":"Paris"}' } },
      { $case: "refusal", value: { text: "no" } },
      {
        $case: "finish",
        value: {
          finishReason: "tool_calls",
          model: "",
          usage: { promptTokens: 3, completionTokens: 5, totalTokens: 8, reasoningTokens: 2, cachedPromptTokens: 0 },
        },
      },
    ]);
  });
});

describe("the package", () => {
  it("exports the client as chat-gateway/web from dist/", async () => {
    const script =
      'import("chat-gateway/web").then((m) => console.log(typeof m.streamChat, typeof m.listModels, typeof m.ChatError))';
    const { stdout } = await promisify(execFile)(process.execPath, ["-e", script], { cwd: ROOT });
    expect(stdout.trim()).toBe("function function function");
  });

  it("bundles for a browser with nothing from Node or grpc-js", async () => {
    const result = await build({
      entryPoints: [join(ROOT, "src/web/client.ts")],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.filter((path) => /grpc-js|node:/.test(path))).toEqual([]);
    expect(inputs).toContain("node_modules/eventsource-parser/dist/stream.js");
  });
});
