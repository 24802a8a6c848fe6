// Native gRPC through Envoy's port: nothing in Envoy holds a gRPC stream (a bidirectional call is
// answered before the client closes its side), gRPC requests are bounded by the service's gRPC limits
// rather than the 1 MiB cap of JSON bodies, and reflection and health can be refused at once by a
// setting. grpcurl-through-Envoy for list/describe/Chat/health is in user-clients.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Client, credentials, Metadata, status } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { ChatServiceClient } from "../../src/client.js";
import { ROOT, startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { grpcurl, startStack, type Stack } from "../support/processes.js";
import { allEvents, post } from "../support/http.js";
import { collect } from "../support/grpc.js";
import { hold } from "../support/gates.js";

let upstream: FakeUpstream;
let stack: Stack;
let gate: Promise<void> | undefined;

beforeAll(async () => {
  // `gate`, when a test sets one, holds every stream after its token until the test opens it.
  upstream = await startFakeUpstream({ reply: () => ({ tokens: ["ok"], gate: (i) => (i === 1 ? gate : undefined) }) });
  stack = await startStack({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-e2e" });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

const json = (body: unknown) => JSON.stringify(body);
const bytes = (b: Buffer) => b;

describe("native gRPC through Envoy", () => {
  it("answers a bidirectional stream (server reflection) before the client closes its side", async () => {
    const client = new Client(`127.0.0.1:${stack.envoy.httpPort}`, credentials.createInsecure());
    try {
      const call = client.makeBidiStreamRequest(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        bytes,
        bytes,
      );
      // ServerReflectionRequest { list_services = "" } (field 7, length-delimited, empty).
      call.write(Buffer.from([0x3a, 0x00]));
      // The client's side stays open: a proxy that held the request until its end would never let
      // this answer through (the test would time out).
      const answer = await new Promise<Buffer>((resolve, reject) => {
        call.once("data", resolve);
        call.once("error", reject);
      });
      expect(answer.toString("latin1")).toContain("chat.v1.ChatService");
      const ended = new Promise<number>((resolve) => call.on("status", (s: { code: number }) => resolve(s.code)));
      call.end();
      expect(await ended).toBe(status.OK);
    } finally {
      client.close();
    }
  });

  it("bounds a gRPC request by the service's limits, not the 1 MiB cap of JSON bodies", async () => {
    const client = new ChatServiceClient(`127.0.0.1:${stack.envoy.httpPort}`, credentials.createInsecure());
    try {
      // 2 MiB reaches the service (over HTTP this is a 413 from Envoy), which refuses it by its own
      // MAX_INPUT_BYTES; 5 MiB is over grpc-js's 4 MiB message limit.
      const twoMiB = await collect(client, { text: "x".repeat(2 * 1024 * 1024) });
      expect(twoMiB.code).toBe(status.INVALID_ARGUMENT);
      expect(twoMiB.details).toBe("text: input is 2097152 bytes, more than the limit of 262144");
      const fiveMiB = await collect(client, { text: "x".repeat(5 * 1024 * 1024) });
      expect(fiveMiB.code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });

  // The service's port cannot save them from a grpc-js client (robustness-grpc.test.ts and
  // docs/streaming.md#metadata-size); Envoy's HTTP/2 codec takes a long header block whole and
  // refuses the call alone. A single header over 64 KiB (HPACK-encoded) ends Envoy's connection too.
  it.each([
    ["many headers", "carry on", status.OK],
    ["one header", "are cut", status.INTERNAL],
  ])("refuses a call with 1 MiB of metadata in %s; its 10 siblings %s", async (shape, _outcome, siblingCode) => {
    const held = hold();
    gate = held.promise;
    const client = new ChatServiceClient(`127.0.0.1:${stack.envoy.httpPort}`, credentials.createInsecure());
    try {
      const siblings = Array.from({ length: 10 }, () => {
        const call = client.chat(ChatRequest.fromPartial({ text: "hi" }));
        let text = "";
        const first = new Promise<void>((resolve) => call.once("data", () => resolve()));
        const ended = new Promise<[number, string]>((resolve) => {
          call.on("data", (r: ChatResponse) => {
            if (r.event?.$case === "delta") text += r.event.value.text;
          });
          call.on("status", (s: { code: number }) => resolve([s.code, text]));
          call.on("error", () => undefined);
        });
        return { first, ended };
      });
      await Promise.all(siblings.map((s) => s.first));
      const metadata = new Metadata();
      if (shape === "one header") metadata.set("x-big", randomBytes(768 * 1024).toString("base64"));
      else for (let i = 0; i < 256; i++) metadata.set(`x-big-${i}`, randomBytes(3 * 1024).toString("base64"));
      const big = await collect(client, { text: "hi" }, metadata);
      expect(big.code).toBe(status.INTERNAL);
      held.release();
      // Each had its token before the big call came: cut, a sibling keeps that much.
      expect(await Promise.all(siblings.map((s) => s.ended))).toEqual(
        Array.from({ length: 10 }, () => [siblingCode, "ok"]),
      );
    } finally {
      gate = undefined;
      client.close();
    }
  });

  it("still caps an HTTP/JSON body at 1 MiB with a 413", async () => {
    const response = await post(stack.envoy.httpPort, "/chat", json({ text: "x".repeat(2 * 1024 * 1024) }));
    expect(response.status).toBe(413);
    expect(JSON.parse(await response.body())).toEqual({ code: 3, message: "request body too large: at most 1 MiB" });
  });
});

describe("with reflection and health refused through Envoy (runtime settings)", () => {
  let refusing: RunningEnvoy;
  beforeAll(async () => {
    refusing = await startEnvoy({
      servicePort: stack.service.port,
      httpHost: "127.0.0.1",
      stderr: "ignore",
      runtime: { "chat_gateway.refuse_grpc_reflection": 100, "chat_gateway.refuse_grpc_health": 100 },
    });
  });
  afterAll(async () => {
    await refusing?.stop();
  });

  it("refuses reflection at once with PERMISSION_DENIED, not a hang", async () => {
    const { stderr, code } = await grpcurl(refusing.httpPort, [], "list");
    expect(code).not.toBe(0);
    expect(stderr).toContain("code = PermissionDenied");
    expect(stderr).toContain("server reflection is not served on this address");
  });

  it("refuses health checks with PERMISSION_DENIED", async () => {
    const { stderr, code } = await grpcurl(
      refusing.httpPort,
      ["-proto", "grpc/health/v1/health.proto", "-import-path", join(ROOT, "third_party"), "-d", json({ service: "" })],
      "grpc.health.v1.Health/Check",
    );
    expect(code).not.toBe(0);
    expect(stderr).toContain("Code: PermissionDenied");
  });

  it("still serves chat, over gRPC and HTTP", async () => {
    const client = new ChatServiceClient(`127.0.0.1:${refusing.httpPort}`, credentials.createInsecure());
    try {
      const result = await collect(client, { text: "hi" });
      expect(result.code).toBe(status.OK);
      expect(result.text).toBe("ok");
    } finally {
      client.close();
    }
    const events = await allEvents(await post(refusing.httpPort, "/chat", json({ text: "hi" })));
    expect(events.at(-1)?.finish).toBeDefined();
  });

  it("leaves the service's own port open to both", async () => {
    expect((await grpcurl(stack.service.port, [], "list")).code).toBe(0);
  });
});
