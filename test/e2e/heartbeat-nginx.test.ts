// Quiet is not dead, end to end: a model silent before its first token for longer than the proxies'
// idle timeouts. Through the real Envoy (its stream_idle_timeout set short) and through a real nginx
// in front of Envoy (proxy_read_timeout short, buffering off), the HTTP stream survives on
// heartbeats and then carries the answer; with heartbeats off, nginx cuts it. The upstream is held
// with gates that open once the client has seen the silence outlast the proxy's timeout.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { post, type HttpResponse } from "../support/http.js";
import { NGINX, startNginx, type RunningNginx } from "../support/nginx.js";
import { hold } from "../support/gates.js";

/** Envoy's stream_idle_timeout and nginx's proxy_read_timeout here: 1 s. */
const PROXY_TIMEOUT_MS = 1_000;
const gates = new Map<string, ReturnType<typeof hold>>();
const gateFor = (name: string) => {
  let gate = gates.get(name);
  if (!gate) gates.set(name, (gate = hold()));
  return gate;
};

let upstream: FakeUpstream;
let beating: Stack;
let quiet: Stack;
let nginxBeating: RunningNginx | undefined;
let nginxQuiet: RunningNginx | undefined;

beforeAll(async () => {
  // Each request (named by its text) is silent after the role chunk until its gate opens.
  upstream = await startFakeUpstream({
    reply: (r) => {
      const name = String(r.body.messages?.at(-1)?.content ?? "");
      return { tokens: ["The", " answer."], gate: (i) => (i === 0 ? gateFor(name).promise : undefined) };
    },
  });
  const env = { OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-e2e", CHAT_MODEL: "fake-model" };
  [beating, quiet] = await Promise.all([
    startStack(
      { ...env, HEARTBEAT_INTERVAL_MS: "200" },
      { limits: { streamIdleTimeout: `${PROXY_TIMEOUT_MS / 1000}s` } },
    ),
    // Envoy as envoy.yaml has it (300 s): only nginx can cut this one.
    startStack({ ...env, HEARTBEAT_INTERVAL_MS: "0" }),
  ]);
  if (NGINX) {
    const readTimeout = `${PROXY_TIMEOUT_MS / 1000}s`;
    [nginxBeating, nginxQuiet] = await Promise.all([
      startNginx({ upstreamPort: beating.envoy.httpPort, readTimeout }),
      startNginx({ upstreamPort: quiet.envoy.httpPort, readTimeout }),
    ]);
  }
});
afterAll(async () => {
  await Promise.all([nginxBeating?.stop(), nginxQuiet?.stop()]);
  await Promise.all([beating?.stop(), quiet?.stop()]);
  await upstream?.close();
});

/**
 * Reads the stream; once a heartbeat says the stream has waited longer than the proxy's timeout,
 * opens the upstream's gate. Returns every event.
 */
async function readThroughTheSilence(response: HttpResponse, name: string): Promise<Record<string, unknown>[]> {
  const events: Record<string, unknown>[] = [];
  for await (const event of response.events) {
    const seen = event as Record<string, { waitedMs?: number }>;
    events.push(seen);
    if ((seen.heartbeat?.waitedMs ?? 0) > PROXY_TIMEOUT_MS * 1.5) gateFor(name).release();
  }
  return events;
}

function expectHeartbeatsThenTheAnswer(events: Record<string, unknown>[]) {
  const heartbeats = events.filter((e) => "heartbeat" in e);
  // Silent for over 1.5 times the proxy's timeout, a heartbeat every 200 ms: 7 at least.
  expect(heartbeats.length).toBeGreaterThanOrEqual(7);
  expect(events.slice(heartbeats.length).map((e) => Object.keys(e)[0])).toEqual(["delta", "delta", "finish"]);
  expect(events.slice(heartbeats.length, -1)).toEqual([{ delta: { text: "The" } }, { delta: { text: " answer." } }]);
}

describe("a model silent before its first token for longer than the proxies' idle timeouts", () => {
  it("survives Envoy's stream_idle_timeout on heartbeats, then gets the answer", async () => {
    const response = await post(beating.envoy.httpPort, "/chat", JSON.stringify({ text: "envoy" }));
    expect(response.status).toBe(200);
    expectHeartbeatsThenTheAnswer(await readThroughTheSilence(response, "envoy"));
  });

  describe.skipIf(!NGINX)("behind nginx (proxy_read_timeout 1s, proxy_buffering off)", () => {
    it("survives on heartbeats, then gets the answer", async () => {
      const response = await post(nginxBeating!.port, "/chat", JSON.stringify({ text: "nginx" }));
      expect(response.status).toBe(200);
      expect(response.headers["content-type"]).toBe("text/event-stream");
      expectHeartbeatsThenTheAnswer(await readThroughTheSilence(response, "nginx"));
    });

    it("is cut by nginx when heartbeats are off", async () => {
      const index = upstream.requests.length;
      const response = await post(nginxQuiet!.port, "/chat", JSON.stringify({ text: "quiet" }));
      // nginx gave up waiting for Envoy: 504, and no event.
      expect(response.status).toBe(504);
      expect(await response.body()).not.toContain("data:");
      // The service saw the caller go, and let the upstream go too.
      expect(await upstream.ended(index)).toBe("closed");
      gateFor("quiet").release();
    });
  });
});
