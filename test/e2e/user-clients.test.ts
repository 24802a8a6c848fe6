// End to end with the real processes: the built service, the real Envoy running envoy.yaml, the
// fake upstream, and the clients users have: plain HTTP (as `curl -N`), grpcurl, and grpc-js.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { credentials, status } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/client.js";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
// The demo upstream's reply is product code (`npm start` answers with it); the fake model streams it here.
import { demoReply } from "../../src/demo/server.js";
import { grpcurl, spawnGrpcurl, startStack, type Stack } from "../support/processes.js";
import { allEvents, errorBody, post } from "../support/http.js";

const TOKENS = ["Streaming", " through", " Envoy", " works", "."];
let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-e2e", CHAT_MODEL: "fake-model" });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});
beforeEach(() => {
  reply = () => ({ tokens: TOKENS });
});

const json = (body: unknown) => JSON.stringify(body);
const http = (body: string, headers?: Record<string, string>) => post(stack.envoy.httpPort, "/chat", body, headers);

describe("HTTP through Envoy", () => {
  it("streams POST /chat as server-sent events with the reference endpoints' headers", async () => {
    const response = await http(json({ text: "hello" }));
    expect(response.status).toBe(200);
    expect(response.headers["content-type"]).toBe("text/event-stream");
    expect(response.headers["cache-control"]).toBe("no-cache");
    expect(response.headers["x-accel-buffering"]).toBe("no");
    expect(response.headers["transfer-encoding"]).toBe("chunked");
    const events = await allEvents(response);
    expect(events.slice(0, -1)).toEqual(TOKENS.map((text) => ({ delta: { text } })));
    expect(events.at(-1)?.finish).toMatchObject({ finishReason: "stop", model: "fake-model" });
    expect(upstream.requests.at(-1)?.body.messages).toEqual([{ role: "user", content: "hello" }]);
  });

  it("delivers each token before the upstream sends the next one (nothing buffers on the way)", async () => {
    // The upstream holds the second token until the first has reached this HTTP client through the
    // service and Envoy. A buffer anywhere on the path would hold the first token back and
    // deadlock the stream, failing the test on its timeout.
    let firstSeen!: () => void;
    const seen = new Promise<void>((resolve) => (firstSeen = resolve));
    reply = () => ({ tokens: ["first", " second", " third"], gate: (i) => (i === 1 ? seen : undefined) });

    const response = await http(json({ text: "hold on" }));
    const received: string[] = [];
    for await (const event of response.events) {
      if (event.delta) {
        received.push(event.delta.text);
        if (received.length === 1) firstSeen();
      }
    }
    expect(received).toEqual(["first", " second", " third"]);
  });

  it.each([
    ["no text", json({})],
    ["blank text", json({ text: "  " })],
  ])("answers %s with 400 and a JSON error body", async (_name, body) => {
    const response = await http(body);
    expect(response.status).toBe(400);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(await response.body())).toEqual(
      errorBody(
        status.INVALID_ARGUMENT,
        "text: must not be empty (send `text`, or `messages` with some content)",
        "INVALID_REQUEST",
      ),
    );
  });

  it("answers malformed JSON with 400 and an unknown path with 404", async () => {
    const malformed = await http("{text:");
    expect(malformed.status).toBe(400);
    const unknown = await post(stack.envoy.httpPort, "/nope", json({ text: "x" }));
    expect(unknown.status).toBe(404);
  });

  it("answers a browser's CORS preflight", async () => {
    const response = await post(
      stack.envoy.httpPort,
      "/chat",
      "",
      {
        origin: "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
      "OPTIONS",
    );
    expect(response.status).toBe(200);
    expect(response.headers["access-control-allow-origin"]).toBe("http://app.example");
    expect(response.headers["access-control-allow-methods"]).toContain("POST");
  });
});

// The same calls on both ports: Envoy passes native gRPC through, streams in both directions
// (server reflection is a bidirectional stream), so grpcurl needs no proto files on either.
describe.each([
  ["the service's own port", () => stack.service.port],
  ["Envoy's port", () => stack.envoy.httpPort],
])("grpcurl with server reflection, on %s", (_where, port) => {
  it("lists the services without proto files", async () => {
    const { stdout, code } = await grpcurl(port(), [], "list");
    expect(code).toBe(0);
    expect(stdout.split("\n")).toEqual(expect.arrayContaining(["chat.v1.ChatService", "grpc.health.v1.Health"]));
  });

  it("describes the service", async () => {
    const { stdout, code } = await grpcurl(port(), [], "describe", "chat.v1.ChatService");
    expect(code).toBe(0);
    expect(stdout).toContain("rpc Chat ( .chat.v1.ChatRequest ) returns ( stream .chat.v1.ChatResponse )");
  });

  it("streams a chat", async () => {
    const { stdout, code } = await grpcurl(port(), ["-d", json({ text: "hello" })], "chat.v1.ChatService/Chat");
    expect(code).toBe(0);
    const messages = stdout
      .trim()
      .split(/\n(?=\{)/)
      .map((m) => JSON.parse(m) as { delta?: { text: string }; finish?: unknown });
    expect(messages.filter((m) => m.delta).map((m) => m.delta?.text)).toEqual(TOKENS);
    expect(messages.at(-1)?.finish).toBeDefined();
  });

  it("reports health", async () => {
    const { stdout, code } = await grpcurl(
      port(),
      ["-d", json({ service: "chat.v1.ChatService" })],
      "grpc.health.v1.Health/Check",
    );
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
  });

  it("watches health: the first status arrives while the stream stays open", async () => {
    const watch = spawnGrpcurl(port(), ["-d", json({ service: "chat.v1.ChatService" })], "grpc.health.v1.Health/Watch");
    try {
      expect(JSON.parse(await watch.output("}"))).toEqual({ status: "SERVING" });
    } finally {
      await watch.stop();
    }
  });

  it("shows a bad request's status", async () => {
    const { stderr, code } = await grpcurl(port(), ["-d", json({ text: "" })], "chat.v1.ChatService/Chat");
    expect(code).not.toBe(0);
    expect(stderr).toContain("Code: InvalidArgument");
  });
});

describe("a grpc-js client of the built service", () => {
  it("streams the demo reply, as the README shows", async () => {
    reply = (r) => ({ ...demoReply(r), tokenDelayMs: 0 });
    const client = new ChatServiceClient(`127.0.0.1:${stack.service.port}`, credentials.createInsecure());
    try {
      let text = "";
      const events: ChatResponse["event"][] = [];
      for await (const response of client.chat(
        ChatRequest.fromPartial({ text: "hi there" }),
      ) as AsyncIterable<ChatResponse>) {
        events.push(response.event);
        if (response.event?.$case === "delta") text += response.event.value.text;
      }
      expect(text).toContain('You said: "hi there"');
      expect(events.at(-1)?.$case).toBe("finish");
    } finally {
      client.close();
    }
  });
});
