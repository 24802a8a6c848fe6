// gRPC-Web through the real Envoy (its grpc_web filter) to the built service, with client libraries
// browser teams use: connect-web's gRPC-Web transport (fetch) under Node and bundled into a page in
// Chromium, connect-node's over HTTP/2, and the raw wire for grpc-web's text mode. And the measure
// of envoyproxy/envoy#39651: does a client's cancel reach the upstream model?
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { build } from "esbuild";
import { chromium, type Browser, type Page } from "playwright-core";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createGrpcWebTransport as createNodeGrpcWebTransport } from "@connectrpc/connect-node";
import { ChatRequestSchema, ChatService } from "../../src/gen/chat/v1/chat_pb.js";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { ROOT, startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { startStack, type Stack } from "../support/processes.js";
import { hold, never } from "../support/gates.js";
import type { GrpcWebPage } from "../support/grpc-web-page.js";
import { CHROMIUM } from "../support/browser.js";

let upstream: FakeUpstream;
let stack: Stack;
let reply: (request: RecordedRequest) => Reply;

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: (r) => reply(r) });
  stack = await startStack({
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-grpc-web",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
  });
});
afterAll(async () => {
  await stack?.stop();
  await upstream?.close();
});

const baseUrl = () => `http://127.0.0.1:${stack.envoy.httpPort}`;
/** connect-web's transport: fetch, which Node (like a browser on plain http:) speaks as HTTP/1.1. */
const webClient = () => createClient(ChatService, createGrpcWebTransport({ baseUrl: baseUrl() }));

describe("gRPC-Web through Envoy, with connect-web", () => {
  it("streams each message as it arrives: the upstream holds token 2 until the client has token 1", async () => {
    const first = hold();
    reply = () => ({ tokens: ["Streaming", " over", " gRPC-Web"], gate: (i) => (i === 1 ? first.promise : undefined) });
    const events: string[] = [];
    for await (const { event } of webClient().chat({ text: "hi" })) {
      events.push(event.case === "delta" ? event.value.text : `${event.case}`);
      if (events.length === 1) first.release();
    }
    expect(events).toEqual(["Streaming", " over", " gRPC-Web", "finish"]);
  });

  it("reports a failure before the first message as the call's status, with the service's message", async () => {
    reply = () => ({ status: 429, headers: { "retry-after": "9" } });
    const error = await consume(webClient().chat({ text: "hi" }));
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toBe("upstream rate limit reached; retry after 9s");
    expect(error.metadata.get("retry-after")).toBe("9");
  });

  it("reports a failure after the first message as the stream's error event and the call's status", async () => {
    const shown = hold();
    reply = () => ({ tokens: ["half"], end: "cut", gate: (i) => (i === 1 ? shown.promise : undefined) });
    const cases: string[] = [];
    const error = await consume(webClient().chat({ text: "hi" }), (event) => {
      cases.push(event.case ?? "");
      shown.release();
    });
    expect(cases).toEqual(["delta", "error"]);
    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toBe("upstream connection lost mid-stream");
  });

  it("answers ListModels", async () => {
    const { models } = await webClient().listModels({});
    expect(models.map((m) => m.id)).toContain("fake-model");
  });

  it("streams grpc-web's text mode (base64, Google's grpc-web default) message by message too", async () => {
    const first = hold();
    reply = () => ({ tokens: ["one", " two"], gate: (i) => (i === 1 ? first.promise : undefined) });
    const body = toBinary(ChatRequestSchema, create(ChatRequestSchema, { text: "hi" }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
    const decoded = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: stack.envoy.httpPort,
          path: "/chat.v1.ChatService/Chat",
          method: "POST",
          headers: { "content-type": "application/grpc-web-text", accept: "application/grpc-web-text" },
        },
        (res) => {
          expect(res.headers["content-type"]).toBe("application/grpc-web-text+proto");
          let all = "";
          res.setEncoding("latin1").on("data", (chunk: string) => {
            // Each chunk is base64 on its own: the first holds token 1 while token 2 is held.
            all += Buffer.from(chunk, "base64").toString("latin1");
            if (all.includes("one")) first.release();
          });
          res.on("end", () => resolve(all));
        },
      );
      req.on("error", reject);
      req.end(frame.toString("base64"));
    });
    expect(decoded).toContain(" two");
    expect(decoded).toContain("grpc-status:0\r\n");
  });

  it.each(["/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"])(
    "offers only ChatService: %s is UNIMPLEMENTED over gRPC-Web",
    async (path) => {
      const { status, headers } = await raw(
        "POST",
        path,
        { "content-type": "application/grpc-web+proto" },
        Buffer.alloc(5),
      );
      expect(status).toBe(404);
      expect(headers["grpc-status"]).toBe(String(Code.Unimplemented));
      expect(headers["grpc-message"]).toBe(
        "only chat.v1.ChatService is served over gRPC-Web; health and reflection are native gRPC only",
      );
    },
  );

  it("lets a browser on another origin call it: the preflight allows the gRPC-Web headers, the reply exposes the status", async () => {
    const preflight = await raw("OPTIONS", "/chat.v1.ChatService/Chat", {
      origin: "http://app.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,x-grpc-web,x-user-agent,grpc-timeout",
    });
    expect(preflight.status).toBe(200);
    const allowed = String(preflight.headers["access-control-allow-headers"]).split(/,\s*/);
    expect(allowed).toEqual(
      expect.arrayContaining(["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization"]),
    );

    reply = () => ({ status: 400, errorMessage: "no" });
    const refused = await raw(
      "POST",
      "/chat.v1.ChatService/Chat",
      { origin: "http://app.example", "content-type": "application/grpc-web+proto" },
      grpcWebFrame("hi"),
    );
    expect(refused.headers["access-control-allow-origin"]).toBe("http://app.example");
    const exposed = String(refused.headers["access-control-expose-headers"]).split(/,\s*/);
    expect(exposed).toEqual(
      expect.arrayContaining(["grpc-status", "grpc-message", "grpc-status-details-bin", "retry-after"]),
    );
    // The status a browser reads from those exposed headers:
    expect(refused.headers["grpc-status"]).toBe(String(Code.InvalidArgument));
  });
});

// envoyproxy/envoy#39651 reports that a gRPC-Web client's cancel does not reach the gRPC server.
// Measured here with Envoy 1.40 and this service: it does, over HTTP/1.1 (the client closes its
// connection) and HTTP/2 (RST_STREAM), before the first token and mid-stream. The upstream's reply is
// held forever, so only a cancel that travels client -> Envoy -> service -> upstream can close it.
describe("a gRPC-Web client's cancel reaches the upstream (envoyproxy/envoy#39651, measured)", () => {
  const transports: [string, () => Transport][] = [
    ["connect-web (fetch, HTTP/1.1)", () => createGrpcWebTransport({ baseUrl: baseUrl() })],
    ["connect-node over HTTP/1.1", () => createNodeGrpcWebTransport({ baseUrl: baseUrl(), httpVersion: "1.1" })],
    ["connect-node over HTTP/2", () => createNodeGrpcWebTransport({ baseUrl: baseUrl(), httpVersion: "2" })],
  ];

  it.each(transports)("%s, mid-stream", async (_name, transport) => {
    reply = () => ({ tokens: ["first", " never"], gate: (i) => (i === 1 ? never : undefined) });
    const index = upstream.requests.length;
    const controller = new AbortController();
    const error = await consume(
      createClient(ChatService, transport()).chat({ text: "hi" }, { signal: controller.signal }),
      () => controller.abort(),
    );
    expect(error.code).toBe(Code.Canceled);
    expect(await upstream.ended(index)).toBe("closed");
  });

  it.each(transports)("%s, before the first token", async (_name, transport) => {
    reply = () => ({ tokens: ["never"], gate: () => never });
    const index = upstream.requests.length;
    const controller = new AbortController();
    const pending = consume(createClient(ChatService, transport()).chat({ text: "hi" }, { signal: controller.signal }));
    await upstream.received(index);
    controller.abort();
    expect((await pending).code).toBe(Code.Canceled);
    expect(await upstream.ended(index)).toBe("closed");
  });
});

describe("a deadline ends a gRPC-Web call at the service, whatever the client does", () => {
  it("grpc-timeout: the service ends the call at it and closes the upstream's request, with the client still connected", async () => {
    reply = () => ({ tokens: ["first", " never"], gate: (i) => (i === 1 ? never : undefined) });
    const index = upstream.requests.length;
    // A client that sends a deadline and then never cancels: only the service can end this call.
    const trailer = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: stack.envoy.httpPort,
          path: "/chat.v1.ChatService/Chat",
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "grpc-timeout": "500m" },
        },
        (res) => {
          let all = "";
          res.setEncoding("latin1").on("data", (chunk: string) => (all += chunk));
          res.on("end", () => resolve(all.slice(all.indexOf("grpc-status"))));
        },
      );
      req.on("error", reject);
      req.end(grpcWebFrame("hi"));
    });
    expect(trailer).toMatch(new RegExp(`^grpc-status:${Code.DeadlineExceeded}\r\n`));
    expect(await upstream.ended(index)).toBe("closed");
  });
});

describe("in Chromium: a page on another origin, connect-web bundled as a browser app does", () => {
  let browser: Browser;
  let page: Page;
  let site: Server;
  let tlsEnvoy: RunningEnvoy;
  let first: ReturnType<typeof hold>;
  const dir = mkdtempSync(join(tmpdir(), "chat-grpc-web-"));

  beforeAll(async () => {
    // Browsers speak HTTP/2 only over TLS: a second Envoy with the same envoy.yaml, TLS on its listener.
    const [certFile, keyFile] = [join(dir, "cert.pem"), join(dir, "key.pem")];
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    tlsEnvoy = await startEnvoy({
      servicePort: stack.service.port,
      httpHost: "127.0.0.1",
      stderr: "pipe",
      accessLog: "pipe",
      tls: { certFile, keyFile },
    });

    const bundle = await build({
      entryPoints: [join(ROOT, "test/support/grpc-web-page.ts")],
      bundle: true,
      write: false,
      format: "iife",
      platform: "browser",
      target: "chrome120",
    });
    const script = bundle.outputFiles[0]!.text;
    site = createServer((req, res) => {
      if (req.url === "/app.js") res.writeHead(200, { "content-type": "text/javascript" }).end(script);
      else
        res
          .writeHead(200, { "content-type": "text/html" })
          .end('<!doctype html><title>app</title><script src="/app.js"></script>');
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--ignore-certificate-errors"],
    });
    page = await browser.newPage();
    await page.exposeFunction("onFirst", () => first.release());
    await page.goto(`http://127.0.0.1:${(site.address() as AddressInfo).port}/`);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    site?.close();
    await tlsEnvoy?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const over: [string, () => { url: string; envoy: RunningEnvoy }][] = [
    ["HTTP/1.1", () => ({ url: baseUrl(), envoy: stack.envoy })],
    ["HTTP/2", () => ({ url: `https://127.0.0.1:${tlsEnvoy.httpPort}`, envoy: tlsEnvoy })],
  ];

  it.each(over)("streams over %s: token 2 is held until the page has token 1", async (protocol, at) => {
    first = hold();
    reply = () => ({ tokens: ["in", " the", " browser"], gate: (i) => (i === 1 ? first.promise : undefined) });
    const { url, envoy } = at();
    const result = await page.evaluate(([u]) => (globalThis as unknown as GrpcWebPage).chat(u!, "hi", false), [url]);
    expect(result).toEqual({ texts: ["in", " the", " browser"], last: "finish" });
    // It really was this protocol between the browser and Envoy.
    const line = await envoy.accessLog.find(
      (l) => l.includes('"path":"/chat.v1.ChatService/Chat"') && l.includes('"status":200'),
    );
    expect(JSON.parse(line).protocol).toBe(protocol);
  });

  it.each(over)(
    "cancels over %s: the page aborts mid-stream and the upstream's socket closes",
    async (_protocol, at) => {
      first = hold();
      reply = () => ({ tokens: ["first", " never"], gate: (i) => (i === 1 ? never : undefined) });
      const index = upstream.requests.length;
      const { url } = at();
      const result = await page.evaluate(([u]) => (globalThis as unknown as GrpcWebPage).chat(u!, "hi", true), [url]);
      expect(result).toEqual({ texts: ["first"], last: "delta", error: String(Code.Canceled) });
      expect(await upstream.ended(index)).toBe("closed");
    },
  );
});

/** Reads a stream to its end; resolves with the error it ended with (fails the test if none). */
async function consume<T>(stream: AsyncIterable<{ event: T }>, onEvent?: (event: T) => void): Promise<ConnectError> {
  try {
    for await (const { event } of stream) onEvent?.(event);
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the stream ended without an error");
}

function grpcWebFrame(text: string): Buffer {
  const body = toBinary(ChatRequestSchema, create(ChatRequestSchema, { text }));
  const header = Buffer.alloc(5);
  header.writeUInt32BE(body.length, 1);
  return Buffer.concat([header, body]);
}

function raw(method: string, path: string, headers: Record<string, string>, body?: Buffer) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined> }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: stack.envoy.httpPort, path, method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}
