// Envoy's edge as a client meets it: the replies Envoy makes itself (one JSON shape, fixed messages
// that never echo the request), what it does with what a client claims (x-forwarded-for,
// x-request-id, odd paths and header names), its limits, and its access log.
import { connect as connectHttp2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { allEvents, errorBody, post, type HttpResponse } from "../support/http.js";
import { startRecordingService, type RecordingService } from "../support/recording-service.js";

/** In every request below that Envoy refuses; no reply may contain it. */
const MARK = "zzEcho4711";
const json = (body: unknown) => JSON.stringify(body);
const INVALID_BODY =
  "the request is not a valid JSON ChatRequest: malformed JSON, a field of the wrong type, or invalid UTF-8";

const GRPC_OVER_HTTP1 = "gRPC needs HTTP/2: send JSON to POST /chat, or use gRPC-Web over HTTP/1.1";

/**
 * Sends raw bytes on a fresh connection and returns what Envoy answered: one response (up to its
 * content-length), or everything until it closed (or reset) the connection.
 */
function exchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let received = "";
    socket.setEncoding("latin1").on("data", (chunk: string) => {
      received += chunk;
      if (isComplete(received)) {
        socket.destroy();
        resolve(received);
      }
    });
    socket.on("close", () => resolve(received));
    socket.on("error", (error: NodeJS.ErrnoException) =>
      error.code === "ECONNRESET" ? resolve(received) : reject(error),
    );
  });
}

/** Whether `raw` holds a whole response with a content-length. */
function isComplete(raw: string): boolean {
  const end = raw.indexOf("\r\n\r\n");
  const length = Number(/content-length: (\d+)/i.exec(raw)?.[1] ?? NaN);
  return end >= 0 && raw.length >= end + 4 + length;
}

function parseResponse(raw: string) {
  const [head = "", body = ""] = raw.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

describe("Envoy in front of the built service", () => {
  let upstream: FakeUpstream;
  let stack: Stack;
  let reply: () => Reply = () => ({ tokens: ["ok"] });
  beforeAll(async () => {
    upstream = await startFakeUpstream({ reply: () => reply() });
    stack = await startStack({
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-e2e",
      UPSTREAM_MAX_RETRIES: "0",
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await upstream?.close();
  });
  const send = (path: string, body: string | Buffer, headers: Record<string, string> = {}, method = "POST") =>
    post(stack.envoy.httpPort, path, body, { "content-type": "application/json", ...headers }, method);

  it("starts without a warning (the connection count is bounded)", () => {
    // Envoy logs at warn level here; without a downstream connection limit it warns at start.
    expect(stack.envoy.log.lines.filter((l) => /\]\[(warning|error|critical)\]/.test(l))).toEqual([]);
  });

  describe("answers what it refuses itself with the one JSON error shape, echoing nothing", () => {
    it.each([
      ["malformed JSON", 400, 3, INVALID_BODY, () => send("/chat", `{"text": "${MARK}`)],
      ["a field of the wrong type", 400, 3, INVALID_BODY, () => send("/chat", json({ text: "hi", maxTokens: MARK }))],
      [
        "invalid UTF-8 in a string",
        400,
        3,
        INVALID_BODY,
        () =>
          send("/chat", Buffer.concat([Buffer.from(`{"text":"${MARK}`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])),
      ],
      [
        "an unknown path",
        404,
        5,
        "not found: the HTTP API is POST /chat",
        () => send(`/${MARK}`, json({ text: "hi" })),
      ],
      [
        "an unknown query parameter",
        400,
        3,
        "unknown query parameter: send the request's fields in the JSON body",
        () => send(`/chat?${MARK}=1`, json({ text: "hi" })),
      ],
      [
        "another method on /chat",
        405,
        12,
        "method not allowed: send POST /chat",
        () => send(`/chat?${MARK}`, "", {}, "GET"),
      ],
      [
        "a body over 1 MiB",
        413,
        3,
        "request body too large: at most 1 MiB",
        () => send("/chat", json({ text: MARK + "x".repeat(2 * 1024 * 1024) })),
      ],
      [
        "headers over 60 KiB",
        431,
        3,
        "request headers too large",
        () => send("/chat", json({ text: "hi" }), { "x-big": MARK + "a".repeat(70_000) }),
      ],
      [
        "a header name with an underscore",
        400,
        3,
        "header names with underscores are not accepted",
        () => send("/chat", json({ text: "hi" }), { [`x_${MARK}`]: "1" }),
      ],
      [
        "gRPC over HTTP/1.1 (it needs HTTP/2)",
        415,
        3,
        GRPC_OVER_HTTP1,
        () => send("/chat", Buffer.from(`\x0a\x05${MARK}`), { "content-type": "application/grpc" }),
      ],
      [
        "gRPC over HTTP/1.1 to the RPC's own path",
        415,
        3,
        GRPC_OVER_HTTP1,
        () =>
          send("/chat.v1.ChatService/Chat", Buffer.from(`\x0a\x05${MARK}`), {
            "content-type": "application/grpc+proto",
          }),
      ],
      [
        "an escaped slash in the path",
        400,
        3,
        "invalid path: escaped slashes and backslashes are not accepted",
        () => send(`/chat%2F${MARK}`, json({ text: "hi" })),
      ],
    ] as [string, number, number, string, () => Promise<HttpResponse>][])(
      "%s: HTTP %i, code %i",
      async (_name, status, code, message, request) => {
        const response = await request();
        const body = await response.body();
        expect(response.status).toBe(status);
        expect(response.headers["content-type"]).toBe("application/json");
        expect(JSON.parse(body)).toEqual({ code, message });
        expect(JSON.stringify(response.headers) + body).not.toContain(MARK);
        if (status === 405) expect(response.headers.allow).toBe("POST");
      },
    );

    it("a request that is not HTTP: 400, code 3", async () => {
      const response = parseResponse(
        await exchange(stack.envoy.httpPort, `POST /chat HTTP/1.1\r\nhost: x\r\n${MARK}\r\n\r\n`),
      );
      expect(response.status).toBe(400);
      expect(response.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(response.body)).toEqual({ code: 3, message: "bad request" });
    });
  });

  it.each([
    [
      "400 for bad input",
      () => ({ tokens: ["unused"] }),
      "",
      400,
      errorBody(3, "text: must not be empty (send `text`, or `messages` with some content)", "INVALID_REQUEST"),
    ],
    [
      "429 for an upstream rate limit",
      () => ({ status: 429, headers: { "retry-after": "7" } }),
      "hi",
      429,
      errorBody(8, "upstream rate limit reached; retry after 7s", "UPSTREAM_RATE_LIMITED", {
        upstream: "default",
        retryDelay: "7s",
      }),
    ],
    [
      "503 for an upstream failure",
      () => ({ status: 503 }),
      "hi",
      503,
      errorBody(14, "upstream error 503", "UPSTREAM_5XX", { upstream: "default" }),
    ],
  ] as [string, () => Reply, string, number, object][])(
    "leaves the service's own error bodies as they are: %s",
    async (_name, upstreamReply, text, status, body) => {
      reply = upstreamReply;
      try {
        const response = await send("/chat", json({ text }));
        expect(response.status).toBe(status);
        expect(response.headers["content-type"]).toBe("application/json");
        // The transcoder's JSON of the service's google.rpc.Status: code, message and details.
        expect(JSON.parse(await response.body())).toEqual(body);
      } finally {
        reply = () => ({ tokens: ["ok"] });
      }
    },
  );

  it("gives every request its own x-request-id, whatever the client sent: the service logs it, the upstream gets it, the client sees it", async () => {
    const forged = `forged-${MARK}`;
    const response = await send("/chat", json({ text: "hi" }), { "x-request-id": forged });
    await allEvents(response);
    const id = String(response.headers["x-request-id"]);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(upstream.requests.at(-1)?.headers["x-request-id"]).toBe(id);
    expect((await stack.service.logLine((l) => l.msg === "stream ended" && l.requestId === id)).requestId).toBe(id);
    expect(stack.service.output.join("\n")).not.toContain(forged);
  });

  it.each(["//chat", "/./chat", "/x/../chat"])("serves %s as /chat", async (path) => {
    const events = await allEvents(await send(path, json({ text: "hi" })));
    expect(events).toEqual([{ delta: { text: "ok" } }, expect.objectContaining({ finish: expect.anything() })]);
  });

  it("writes one JSON access log line per request, without the authorization header or the body", async () => {
    const secret = `sk-caller-${MARK}`;
    const prompt = `prompt-${MARK}`;
    const response = await send("/chat?model=gpt-4o-mini", json({ text: prompt }), {
      authorization: `Bearer ${secret}`,
    });
    await allEvents(response);
    const id = String(response.headers["x-request-id"]);
    const entry = JSON.parse(await stack.envoy.accessLog.find((l) => l.includes(id))) as Record<string, unknown>;
    expect(entry).toMatchObject({
      request_id: id,
      method: "POST",
      path: "/chat",
      status: 200,
      grpc_status: 0,
      client: "127.0.0.1",
    });
    expect(entry.duration_ms).toEqual(expect.any(Number));
    expect(entry.bytes_received).toBeGreaterThan(0);
    for (const line of stack.envoy.accessLog.lines) expect(() => JSON.parse(line)).not.toThrow();
    const log = stack.envoy.accessLog.lines.join("\n");
    expect(log).not.toContain(secret);
    expect(log).not.toContain(prompt);
  });

  it("lets an HTTP/2 client open at most 100 streams at once on one connection", async () => {
    const session = connectHttp2(`http://127.0.0.1:${stack.envoy.httpPort}`);
    try {
      const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve, reject) => {
        session.once("remoteSettings", resolve).once("error", reject);
      });
      expect(settings.maxConcurrentStreams).toBe(100);
    } finally {
      session.close();
    }
  });
});

describe("Envoy in front of a service that records what it is told", () => {
  let service: RecordingService;
  let envoy: RunningEnvoy;
  beforeAll(async () => {
    service = await startRecordingService();
    // The limits of envoy.yaml, made small enough to reach.
    envoy = await startEnvoy({
      servicePort: service.port,
      httpHost: "127.0.0.1",
      stderr: "ignore",
      limits: { requestHeadersTimeout: "1s", maxDownstreamConnections: 2 },
    });
  });
  afterAll(async () => {
    await envoy?.stop();
    await service?.close();
  });
  // With a limit of 2 connections, one an earlier test closed but Envoy still counts would refuse
  // this test's.
  beforeEach(() => noConnectionsOpen(envoy));
  const chatRequest = (headers: string) =>
    `POST /chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 13\r\nconnection: close\r\n${headers}\r\n{"text":"hi"}`;

  it("tells the service the client's address as the connection shows it, not the x-forwarded-for it sent", async () => {
    await exchange(envoy.httpPort, chatRequest(`x-forwarded-for: 203.0.113.7\r\nx-request-id: forged-${MARK}\r\n`));
    const call = service.calls.at(-1);
    expect(call?.path).toBe("/chat.v1.ChatService/Chat");
    expect(call?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(call?.headers["x-request-id"]).not.toContain(MARK);
  });

  it("answers request headers that do not arrive in time with 408 in the JSON shape", async () => {
    // Headers started and never finished (a slowloris client).
    const response = parseResponse(
      await exchange(envoy.httpPort, `POST /chat HTTP/1.1\r\nhost: x\r\nx-${MARK}: 1\r\n`),
    );
    expect(response.status).toBe(408);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(response.body)).toEqual({ code: 4, message: "request headers did not arrive in time" });
  });

  it("closes connections beyond the connection limit, and the open ones carry on", async () => {
    const probe = "GET /probe HTTP/1.1\r\nhost: x\r\n\r\n";
    const open = [await keepAlive(envoy.httpPort), await keepAlive(envoy.httpPort)];
    try {
      for (const c of open) expect(parseResponse(await c.request(probe)).status).toBe(404);
      // The third is accepted and closed at once: no reply to its request.
      expect(await exchange(envoy.httpPort, probe)).toBe("");
      for (const c of open) expect(parseResponse(await c.request(probe)).status).toBe(404);
    } finally {
      for (const c of open) c.socket.destroy();
    }
  });

  it("answers 503 in the JSON shape when the service is gone", async () => {
    await service.close();
    const response = parseResponse(await exchange(envoy.httpPort, chatRequest("")));
    expect(response.status).toBe(503);
    expect(response.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(response.body)).toEqual({ code: 14, message: "the service is unavailable; retry" });
  });
});

/** A kept-alive HTTP/1.1 connection that reads one response (with a content-length) per request. */
async function keepAlive(port: number): Promise<{ socket: Socket; request(text: string): Promise<string> }> {
  const socket = connect(port, "127.0.0.1");
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.setEncoding("latin1");
  return {
    socket,
    request(text) {
      return new Promise((resolve, reject) => {
        let received = "";
        const onData = (chunk: string) => {
          received += chunk;
          if (isComplete(received)) {
            socket.off("data", onData);
            resolve(received);
          }
        };
        socket.on("data", onData).once("close", () => reject(new Error(`closed after: ${JSON.stringify(received)}`)));
        socket.write(text);
      });
    },
  };
}

/** Waits until Envoy counts no client connection (those of earlier tests have closed). */
async function noConnectionsOpen(envoy: RunningEnvoy): Promise<void> {
  for (;;) {
    const stats = await (
      await fetch(`http://127.0.0.1:${envoy.adminPort}/stats?filter=^http\\.http\\.downstream_cx_active$`)
    ).text();
    if (/: 0\s*$/.test(stats)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
