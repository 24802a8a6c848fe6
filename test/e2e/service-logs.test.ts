// Logs: the built service as a child process (`node dist/main.js`) with upstream and caller keys,
// driven through successes, refusals and every kind of upstream failure, its whole output and every
// message its callers saw searched for the keys. Plus the per-stream line's fields, and prompts
// logged only when LOG_PROMPTS says so.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { credentials, Metadata, status } from "@grpc/grpc-js";
import { ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";
import { ROOT } from "../../src/dev/envoy.js";
import { collect, startHarness } from "../support/grpc.js";
import { startServiceProcess, type ServiceProcess } from "../support/processes.js";

const UPSTREAM_KEY = "sk-upstream-SECRET-7f3a9c2e5b1d";
const NAMED_KEY = "sk-named-SECRET-2b8e4f6a0c9d";
const CALLER_KEY = "caller-SECRET-9d7c5b3a1e2f4a6b";
const WRONG_CALLER_KEY = "caller-SECRET-wrong-000000000000";
const SECRETS = [UPSTREAM_KEY, NAMED_KEY, CALLER_KEY, WRONG_CALLER_KEY, "SECRET"];

function replyFor(text: string, key: string): Reply {
  switch (text) {
    case "401":
      return { status: 401, errorMessage: `Incorrect API key provided: ${key}. You can find your API key at ...` };
    case "400":
      return { status: 400, errorMessage: `bad request from the holder of ${key}` };
    case "429":
      return { status: 429, errorMessage: `rate limited: ${key}` };
    case "500":
      return { status: 500, errorMessage: `internal error handling ${key}` };
    case "mid-stream":
      return { tokens: ["partial"], end: "error-event" };
    default:
      return { tokens: ["REPLY-MARKER"] };
  }
}

describe("a run of the service with keys", () => {
  let upstream: FakeUpstream;
  let named: FakeUpstream;
  let service: ServiceProcess;
  const seen: string[] = [];

  beforeAll(async () => {
    const last = (r: { body: { messages?: { content: unknown }[] } }) => String(r.body.messages?.at(-1)?.content ?? "");
    upstream = await startFakeUpstream({ reply: (r) => replyFor(last(r), UPSTREAM_KEY) });
    named = await startFakeUpstream({ reply: (r) => replyFor(last(r), NAMED_KEY) });
    service = await startServiceProcess({
      LOG_LEVEL: "trace",
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: UPSTREAM_KEY,
      CHAT_MODEL: "fake-model",
      UPSTREAM_MAX_RETRIES: "0",
      UPSTREAM_NAMED_BASE_URL: named.baseURL,
      UPSTREAM_NAMED_API_KEY: NAMED_KEY,
      UPSTREAM_NAMED_MODELS: "named-model",
      CALLER_KEYS: `ops ${CALLER_KEY}`,
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: "0",
    });
    const client = new ChatServiceClient(`127.0.0.1:${service.port}`, credentials.createInsecure());
    const as = (key: string | undefined) => {
      const metadata = new Metadata();
      if (key !== undefined) metadata.set("authorization", `Bearer ${key}`);
      return metadata;
    };
    try {
      for (const model of ["", "named-model"]) {
        for (const text of ["PROMPT-MARKER", "401", "400", "429", "500", "mid-stream"]) {
          const result = await collect(client, { text, model }, as(CALLER_KEY));
          seen.push(result.details, JSON.stringify(result.responses), JSON.stringify(result.trailers?.getMap() ?? {}));
        }
      }
      for (const key of [undefined, WRONG_CALLER_KEY, `${CALLER_KEY}x`]) {
        const result = await collect(client, { text: "hi" }, as(key));
        seen.push(result.details);
      }
    } finally {
      client.close();
    }
    expect(await service.stop("SIGTERM")).toBe(0);
    // "exit" can come before the last output is read: wait for the pipes to close too.
    await Promise.all(
      [service.process.stdout, service.process.stderr].map((pipe) =>
        pipe && !pipe.closed ? once(pipe, "close") : undefined,
      ),
    );
    await new Promise((resolve) => setImmediate(resolve));
  });
  afterAll(async () => {
    await service?.stop("SIGKILL");
    await upstream?.close();
    await named?.close();
  });

  it("drove the failures it meant to", () => {
    expect(seen.join("\n")).toContain("upstream refused the gateway's credentials");
    expect(seen.join("\n")).toContain("upstream rejected the request");
    expect(seen).toContain("unknown caller key");
    expect(upstream.requests.length).toBe(6);
    expect(named.requests.length).toBe(6);
  });

  it("never writes a key to its output or to a caller", () => {
    const output = service.output.join("\n");
    expect(output).toContain('"msg":"stream ended"');
    for (const secret of SECRETS) {
      expect(output, "service output").not.toContain(secret);
      expect(seen.join("\n"), "what callers saw").not.toContain(secret);
    }
  });

  it("logs start-up, one line per stream, and shutdown; no prompt or reply", () => {
    const lines = service.output.map((l) => JSON.parse(l) as Record<string, unknown>);
    const msgs = lines.map((l) => l.msg);
    expect(msgs[0]).toBe("chat gateway listening");
    expect(lines[0]).toMatchObject({
      auth: "caller keys required (ops)",
      tls: "off",
      upstreams: { named: { models: ["named-model"] } },
    });
    expect(msgs.filter((m) => m === "stream ended")).toHaveLength(12);
    // Shutdown lines after every stream's line, by the time each was logged: once, on a machine at
    // load 12, a stream's line logged 40 ms before "draining" was read from the pipe after "stopped".
    const byTime = [...lines].sort((a, b) => String(a.time).localeCompare(String(b.time))).map((l) => l.msg);
    expect(byTime.slice(-2).sort(), service.output.slice(-4).join("\n")).toEqual(["draining", "stopped"]);
    const output = service.output.join("\n");
    expect(output).not.toContain("PROMPT-MARKER");
    expect(output).not.toContain("REPLY-MARKER");
  });
});

describe("the per-stream log line", () => {
  it("has the request id, caller, model, upstream, code, TTFT, tokens and duration", async () => {
    const harness = await startHarness({
      env: { CALLER_KEYS: "billing billing-key-0123456789" },
      upstream: { reply: () => ({ tokens: ["a", "b", "c"] }) },
    });
    try {
      const metadata = new Metadata();
      metadata.set("authorization", "Bearer billing-key-0123456789");
      metadata.set("x-request-id", "r-42");
      expect((await collect(harness.client, { text: "12345678" }, metadata)).code).toBe(status.OK);
      const line = harness.logs.find((l) => l.msg === "stream ended");
      expect(line).toMatchObject({
        requestId: "r-42",
        caller: "billing",
        model: "fake-model",
        upstream: "default",
        code: "OK",
        deltas: 3,
        promptTokens: 2,
        completionTokens: 3,
        finishReason: "stop",
      });
      expect(line?.ttftMs).toEqual(expect.any(Number));
      expect(line?.durationMs).toEqual(expect.any(Number));
      expect(line).not.toHaveProperty("prompt");
    } finally {
      await harness.close();
    }
  });

  it("carries the prompt and the reply when LOG_PROMPTS is on", async () => {
    const harness = await startHarness({
      env: { LOG_PROMPTS: "true" },
      upstream: { reply: () => ({ tokens: ["Hel", "lo"] }) },
    });
    try {
      await collect(harness.client, { messages: [{ role: "system", content: "Be brief." }], text: "Greet me" });
      expect(harness.logs.find((l) => l.msg === "stream ended")).toMatchObject({
        prompt: "system: Be brief.\nuser: Greet me",
        reply: "Hello",
      });
    } finally {
      await harness.close();
    }
  });
});

describe("the start-up line", () => {
  it("shows every URL it names without credentials: user info and query values redacted", async () => {
    const service = await startServiceProcess({
      OPENAI_BASE_URL: "http://gw-user:pw-SECRET-1@127.0.0.1:9/v1?api-key=SECRET-2",
      FALLBACK_BASE_URL: "https://fb:SECRET-3@fallback.example/v1",
      UPSTREAM_X_BASE_URL: "http://127.0.0.1:9/v1?api-version=2024-06-01&key=SECRET-4",
      UPSTREAM_X_MODELS: "x-model",
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:SECRET-5@127.0.0.1:9",
    });
    try {
      const line = await service.logLine((l) => l.msg === "chat gateway listening");
      expect(line).toMatchObject({
        upstream: "http://redacted:redacted@127.0.0.1:9/v1?api-key=redacted",
        fallback: "https://redacted:redacted@fallback.example/v1",
        upstreams: { x: { baseURL: "http://127.0.0.1:9/v1?api-version=redacted&key=redacted" } },
        tracing: "OTLP to http://redacted:redacted@127.0.0.1:9/",
        conversations: expect.stringMatching(/^SQLite at .*conversations\.db \(this replica only; set DATABASE_URL/),
      });
      expect(service.output.join("\n")).not.toContain("SECRET");
    } finally {
      await service.stop("SIGKILL");
    }
  });
});

describe("a configuration error at start-up", () => {
  it("lists every problem on stderr, exits 2, and repeats no value", async () => {
    const child = spawn(process.execPath, [join(ROOT, "dist", "main.js")], {
      env: {
        PATH: process.env.PATH ?? "",
        OPENAI_API_KEY: UPSTREAM_KEY,
        CALLER_KEYS: `ops ${CALLER_KEY} many`,
        UPSTREAM_X_API_KEY: NAMED_KEY,
        GRPC_PORT: "-1",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(code).toBe(2);
    expect(output).toContain("invalid configuration:");
    expect(output).toContain("GRPC_PORT: must be at least 0");
    expect(output).toContain('CALLER_KEYS: caller "ops": the stream limit must be a whole number');
    expect(output).toContain('UPSTREAM_X_BASE_URL: upstream "x" has no base URL');
    for (const secret of SECRETS) expect(output).not.toContain(secret);
  });
});

/**
 * `node dist/main.js` with `env`, once it says it listens: its stdout so far, and its exit code when
 * it exits. Killed when the test ends, however it ends (a timeout included).
 */
async function listeningService(env: Record<string, string>) {
  const child = spawn(process.execPath, [join(ROOT, "dist", "main.js")], {
    env: { PATH: process.env.PATH ?? "", GRPC_HOST: "127.0.0.1", GRPC_PORT: "0", AUTH: "none", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => {
    child.kill("SIGKILL");
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let output = "";
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (c: Buffer) => {
      output += c.toString();
      if (output.includes("chat gateway listening")) resolve();
    });
    void exited.then(() => reject(new Error(`exited before listening: ${output}`)));
  });
  return { child, output, exited };
}

describe("log format", () => {
  it("is human-readable with LOG_FORMAT=pretty (as `auto` is on a terminal)", async () => {
    const { output } = await listeningService({ LOG_FORMAT: "pretty" });
    const line = output.split("\n").find((l) => l.includes("chat gateway listening")) ?? "";
    expect(line).toMatch(/INFO/);
    expect(() => JSON.parse(line)).toThrow();
    expect(output).toContain("open: AUTH=none, so any caller may call");
  });
});

describe("a stdout nobody reads any more", () => {
  it("does not keep the service from stopping: SIGTERM still ends it, with code 0", async () => {
    // A log shipper that died, `node dist/main.js | head -1`: every later log line meets a broken pipe.
    const { child, exited } = await listeningService({ LOG_FORMAT: "json" });
    child.stdout.destroy();
    child.kill("SIGTERM");
    // Before sonic-boom 5 (pino's log destination) the exit flush retried the broken pipe forever.
    expect(await exited).toBe(0);
  });
});
