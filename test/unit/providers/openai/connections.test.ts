// The provider's connections to the model, as the model sees them: replies read to their [DONE]
// leave the connection for the next request; a caller that leaves closes it (the model stops
// writing); a server that never ends its body after [DONE] has its connection closed, the reply
// finished all the same.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { OpenAIUpstream } from "../../../../src/providers/openai/upstream.js";
import type { UpstreamEvent } from "../../../../src/upstream/port.js";
import { UpstreamHttpError } from "../../../../src/upstream/errors.js";
import { callWith, shortRequest } from "../../../support/upstream-call.js";
import { startFakeUpstream, type FakeUpstream } from "../../../support/fake-model.js";
import { clientTimers, KEEPALIVE_TIMER } from "../../../support/tcp-timers.js";

async function read(upstream: OpenAIUpstream, signal = new AbortController().signal): Promise<UpstreamEvent[]> {
  const events: UpstreamEvent[] = [];
  for await (const batch of upstream.stream(shortRequest, callWith(signal))) events.push(...batch);
  return events;
}

const text = (events: UpstreamEvent[]) => events.map((e) => (e.type === "text" ? e.text : "")).join("");

let model: FakeUpstream | undefined;
let server: Server | undefined;
afterEach(async () => {
  await model?.close();
  server?.closeAllConnections();
  server?.close();
  model = server = undefined;
});

describe("the upstream's connections", () => {
  it("carry one request after another: a reply read to its end leaves the connection to the next", async () => {
    model = await startFakeUpstream({ reply: () => ({ tokens: ["a", "b", "c"] }) });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 5_000 });
    for (let i = 0; i < 4; i++) expect(text(await read(upstream))).toBe("abc");
    const ports = new Set(model.requests.map((r) => r.remotePort));
    expect(ports.size, JSON.stringify([...ports])).toBe(1);
  });

  it("closes the connection of a reply whose caller left, and the model sees it closed", async () => {
    model = await startFakeUpstream({
      reply: ({ index }) => (index === 0 ? { tokens: Array(200).fill("x"), tokenDelayMs: 10 } : {}),
    });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 5_000 });
    const leaving = new AbortController();
    const stream = upstream.stream(shortRequest, callWith(leaving.signal))[Symbol.asyncIterator]();
    await stream.next();
    leaving.abort(new Error("the caller left"));
    await expect(stream.next()).rejects.toThrow();
    expect(await model.ended(0)).toBe("closed");
    await read(upstream);
    expect(model.requests[1]?.remotePort).not.toBe(model.requests[0]?.remotePort);
  });

  it("sends no TCP keepalive probe while a reply is silent for over a second", { timeout: 10_000 }, async () => {
    // Node's agent would probe after 1 s, every second: thousands of waiting streams flood loopback.
    model = await startFakeUpstream({ reply: () => ({ tokens: ["a", "b"], tokenDelayMs: 2_500 }) });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 5_000 });
    const reply = read(upstream);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const timers = clientTimers(Number(new URL(model.baseURL).port));
    expect(timers).toHaveLength(1);
    expect(timers[0]!.kind).toBe(KEEPALIVE_TIMER);
    expect(timers[0]!.secondsLeft).toBeGreaterThan(30);
    expect(text(await reply)).toBe("ab");
  });

  it("reads an error status's body through the SDK: its message and status reach the gateway", async () => {
    model = await startFakeUpstream({ reply: () => ({ status: 429, errorMessage: "slow down, please" }) });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 5_000 });
    const error = await read(upstream).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamHttpError);
    expect(error).toMatchObject({ status: 429, upstreamMessage: "slow down, please" });
  });

  it("finishes a reply whose server sends [DONE] and never ends the body, and closes that connection", async () => {
    let closedAt = 0;
    server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/event-stream" });
      const chunk = (delta: object, finish: string | null = null) =>
        `data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", created: 0, model: "demo", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: "assistant", content: "" }) + chunk({ content: "held" }) + chunk({}, "stop"));
      res.write("data: [DONE]\n\n"); // and nothing more: the body stays open
      req.socket.on("close", () => {
        closedAt = performance.now();
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const upstream = new OpenAIUpstream({
      baseURL: `http://127.0.0.1:${port}/v1`,
      apiKey: "k",
      maxRetries: 0,
      timeoutMs: 5_000,
    });
    const events = await read(upstream);
    const finished = performance.now();
    expect(text(events)).toBe("held");
    expect(events.at(-1)).toMatchObject({ type: "finish", finishReason: "stop" });
    await expect.poll(() => closedAt, { timeout: 3_000 }).toBeGreaterThan(0);
    expect(closedAt - finished).toBeLessThan(2_500);
  });
});
