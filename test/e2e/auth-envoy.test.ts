// Caller keys: in-process over gRPC, and end to end through the real Envoy for the HTTP statuses.
import { createHash } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Metadata, status, type ClientReadableStream } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { collect, startHarness, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { scrape } from "../support/metrics.js";
import { grpcurl } from "../support/processes.js";
import { allEvents, errorBody, post } from "../support/http.js";
import { startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";

const ALICE = "alice-key-0123456789abcdef";
const BOB = "bob-key-0123456789abcdef";
const CAROL = "carol-key-0123456789abcdef";
const CALLER_KEYS = [
  `alice ${ALICE}`,
  `bob sha256:${createHash("sha256").update(BOB).digest("hex")} 1`,
  `carol ${CAROL} 1`,
].join(", ");

const bearer = (key: string) => {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${key}`);
  return metadata;
};

/** A stream the upstream holds open after its first delta until `release` is called. */
function holder(): { gate: (i: number) => Promise<void> | undefined; release: () => void } {
  const { promise: held, release } = hold();
  return { gate: (i) => (i === 1 ? held : undefined), release };
}
const firstMessage = (call: ClientReadableStream<ChatResponse>) => new Promise((resolve) => call.once("data", resolve));
const ended = (call: ClientReadableStream<ChatResponse>) =>
  new Promise<void>((resolve) =>
    call
      .on("data", () => undefined)
      .on("error", () => resolve())
      .on("end", resolve),
  );

describe("caller keys over gRPC", () => {
  let harness: Harness;
  let hold = holder();
  beforeAll(async () => {
    harness = await startHarness({
      env: { CALLER_KEYS, METRICS_HOST: "127.0.0.1", METRICS_PORT: "0" },
      upstream: {
        reply: (r) =>
          r.body.messages?.at(-1)?.content === "hold" ? { tokens: ["a", "b"], gate: hold.gate } : { tokens: ["ok"] },
      },
    });
  });
  afterAll(() => harness?.close());
  afterEach(() => hold.release());

  it("refuses a call with no key or an unknown key with UNAUTHENTICATED, before the upstream is asked", async () => {
    const before = harness.upstream.requests.length;
    const missing = await collect(harness.client, { text: "hi" });
    expect([missing.code, missing.details]).toEqual([
      status.UNAUTHENTICATED,
      "missing caller key: send `authorization: Bearer <key>`",
    ]);
    const wrong = await collect(harness.client, { text: "hi" }, bearer(`${ALICE}x`));
    expect([wrong.code, wrong.details]).toEqual([status.UNAUTHENTICATED, "unknown caller key"]);
    const notBearer = new Metadata();
    notBearer.set("authorization", ALICE);
    expect((await collect(harness.client, { text: "hi" }, notBearer)).code).toBe(status.UNAUTHENTICATED);
    expect(harness.upstream.requests.length).toBe(before);
  });

  it("lets a good key in, plain or configured hashed, and names the caller in logs and metrics", async () => {
    expect((await collect(harness.client, { text: "hi" }, bearer(ALICE))).text).toBe("ok");
    expect((await collect(harness.client, { text: "hi" }, bearer(BOB))).text).toBe("ok");
    const callers = harness.logs.filter((l) => l.msg === "stream ended").map((l) => l.caller);
    expect(callers.slice(-2)).toEqual(["alice", "bob"]);
    // The key never reaches the upstream or the handler's metadata.
    expect(JSON.stringify(harness.upstream.requests.map((r) => r.headers))).not.toContain(ALICE);

    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(s.value("grpc_server_handled_total", { grpc_method: "Chat", grpc_code: "OK", caller: "alice" })).toBe(1);
    expect(s.value("grpc_server_handled_total", { grpc_method: "Chat", grpc_code: "OK", caller: "bob" })).toBe(1);
    expect(
      s.value("grpc_server_handled_total", {
        grpc_method: "Chat",
        grpc_code: "UNAUTHENTICATED",
        caller: "unauthenticated",
      }),
    ).toBe(3);
    // Each call counted once at its start, refused or not.
    expect(s.value("grpc_server_started_total", { grpc_method: "Chat" })).toBe(
      s.value("grpc_server_handled_total", { grpc_method: "Chat" }),
    );
  });

  it("holds each caller to its concurrent-stream limit with RESOURCE_EXHAUSTED, and frees the slot when a stream ends", async () => {
    hold = holder();
    const first = harness.client.chat(ChatRequest.fromPartial({ text: "hold" }), bearer(BOB));
    await firstMessage(first);
    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(s.value("chat_gateway_caller_active_streams", { caller: "bob" })).toBe(1);

    const second = await collect(harness.client, { text: "hi" }, bearer(BOB));
    expect(second.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(second.details).toBe('caller "bob" has 1 streams open, its limit; retry when one ends');
    const after = await scrape(harness.gateway.metricsPort ?? 0);
    expect(after.value("grpc_server_handled_total", { grpc_code: "RESOURCE_EXHAUSTED", caller: "bob" })).toBe(1);
    // Other callers are not held back by bob's limit.
    expect((await collect(harness.client, { text: "hi" }, bearer(ALICE))).code).toBe(status.OK);

    hold.release();
    await ended(first);
    expect((await collect(harness.client, { text: "hi" }, bearer(BOB))).code).toBe(status.OK);
  });

  it("frees the slot of a stream the caller cancels", async () => {
    hold = holder();
    const first = harness.client.chat(ChatRequest.fromPartial({ text: "hold" }), bearer(CAROL));
    await firstMessage(first);
    expect((await collect(harness.client, { text: "hi" }, bearer(CAROL))).code).toBe(status.RESOURCE_EXHAUSTED);
    first.cancel();
    await ended(first);
    // The server sees the cancellation a moment after the client: retry until the slot is free.
    let code = status.RESOURCE_EXHAUSTED;
    for (let i = 0; i < 50 && code === status.RESOURCE_EXHAUSTED; i++) {
      code = (await collect(harness.client, { text: "hi" }, bearer(CAROL))).code;
      if (code === status.RESOURCE_EXHAUSTED) await new Promise((r) => setTimeout(r, 20));
    }
    expect(code).toBe(status.OK);
  });

  it("never takes a caller name from the caller: a forged internal metadata key names no one in metrics or logs", async () => {
    const forged = (key?: string) => {
      const metadata = key ? bearer(key) : new Metadata();
      metadata.set("x-chat-gateway-caller", "admin");
      return metadata;
    };
    // On the open services (no key needed), on a refused call, and beside a good key.
    const health = await grpcurl(
      harness.gateway.port,
      ["-H", "x-chat-gateway-caller: admin", "-d", '{"service":"chat.v1.ChatService"}'],
      "grpc.health.v1.Health/Check",
    );
    expect(health.code).toBe(0);
    expect((await collect(harness.client, { text: "hi" }, forged())).code).toBe(status.UNAUTHENTICATED);
    expect((await collect(harness.client, { text: "hi" }, forged(ALICE))).text).toBe("ok");

    const s = await scrape(harness.gateway.metricsPort ?? 0);
    expect(s.text).not.toContain('caller="admin"');
    expect(
      s.value("grpc_server_handled_total", {
        grpc_service: "grpc.health.v1.Health",
        grpc_method: "Check",
        caller: "anonymous",
      }),
    ).toBe(1);
    expect(
      s.value("grpc_server_handled_total", {
        grpc_method: "Chat",
        grpc_code: "UNAUTHENTICATED",
        caller: "unauthenticated",
      }),
    ).toBe(4);
    expect(s.value("grpc_server_handled_total", { grpc_method: "Chat", grpc_code: "OK", caller: "alice" })).toBe(3);
    expect(s.value("gen_ai_client_token_usage_count", { caller: "alice", gen_ai_token_type: "output" })).toBe(3);
    expect(harness.logs.filter((l) => l.msg === "stream ended").at(-1)?.caller).toBe("alice");
    expect(JSON.stringify(harness.logs)).not.toContain('"admin"');
  });

  it("leaves health checks and reflection open", async () => {
    const health = await grpcurl(
      harness.gateway.port,
      ["-d", '{"service":"chat.v1.ChatService"}'],
      "grpc.health.v1.Health/Check",
    );
    expect(health.code).toBe(0);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
    const list = await grpcurl(harness.gateway.port, [], "list");
    expect(list.stdout).toContain("chat.v1.ChatService");
    const chat = await grpcurl(harness.gateway.port, ["-d", '{"text":"hi"}'], "chat.v1.ChatService/Chat");
    expect(chat.stderr).toContain("Code: Unauthenticated");
  });
});

describe("without caller keys", () => {
  it("is open, and a caller cannot claim a name through the internal metadata key", async () => {
    const harness = await startHarness({ upstream: { reply: () => ({ tokens: ["ok"] }) } });
    try {
      const metadata = new Metadata();
      metadata.set("x-chat-gateway-caller", "admin");
      expect((await collect(harness.client, { text: "hi" }, metadata)).code).toBe(status.OK);
      expect(harness.logs.find((l) => l.msg === "stream ended")?.caller).toBe("anonymous");
    } finally {
      await harness.close();
    }
  });
});

describe("caller keys through Envoy", () => {
  let harness: Harness;
  let envoy: RunningEnvoy;
  let hold = holder();
  beforeAll(async () => {
    harness = await startHarness({
      env: { CALLER_KEYS },
      upstream: {
        reply: (r) =>
          r.body.messages?.at(-1)?.content === "hold"
            ? { tokens: ["a", "b"], gate: hold.gate }
            : { tokens: ["o", "k"] },
      },
    });
    envoy = await startEnvoy({ servicePort: harness.gateway.port, httpHost: "127.0.0.1", stderr: "ignore" });
  });
  afterAll(async () => {
    hold.release();
    await envoy?.stop();
    await harness?.close();
  });
  const chat = (text: string, key?: string) =>
    post(envoy.httpPort, "/chat", JSON.stringify({ text }), {
      "content-type": "application/json",
      ...(key !== undefined && { authorization: `Bearer ${key}` }),
    });

  it("answers a missing or wrong key with 401", async () => {
    const missing = await chat("hi");
    expect(missing.status).toBe(401);
    expect(JSON.parse(await missing.body())).toEqual(
      errorBody(status.UNAUTHENTICATED, "missing caller key: send `authorization: Bearer <key>`", "UNAUTHENTICATED"),
    );
    expect((await chat("hi", "nope-nope-nope-nope")).status).toBe(401);
  });

  it("streams for a good key", async () => {
    const response = await chat("hi", ALICE);
    expect(response.status).toBe(200);
    const events = await allEvents(response);
    expect(events.filter((e) => e.delta).map((e) => e.delta?.text)).toEqual(["o", "k"]);
  });

  it("answers a caller over its stream limit with 429", async () => {
    hold = holder();
    const first = await chat("hold", CAROL);
    expect(first.status).toBe(200);
    const second = await chat("hi", CAROL);
    expect(second.status).toBe(429);
    expect(JSON.parse(await second.body())).toMatchObject({ code: status.RESOURCE_EXHAUSTED });
    hold.release();
    await first.body();
  });
});
