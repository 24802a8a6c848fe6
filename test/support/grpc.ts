// A real gRPC server on port 0 with a fake upstream, and a real client, for in-process tests.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { seenFromResponse } from "./events.js";
import { loadConfig } from "../../src/server/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { startGateway, type Gateway } from "../../src/server/gateway.js";
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from "./fake-model.js";

export interface Harness {
  upstream: FakeUpstream;
  /** Every log line the gateway wrote, parsed. */
  logs: Record<string, unknown>[];
  gateway: Gateway;
  client: ChatServiceClient;
  close(): Promise<void>;
}

export async function startHarness(
  options: { upstream?: FakeUpstreamOptions; env?: Record<string, string> } = {},
): Promise<Harness> {
  const upstream = await startFakeUpstream(options.upstream);
  // Each harness its own SQLite file, removed with it.
  const dataDir = mkdtempSync(join(tmpdir(), "gateway-data-"));
  const config = loadConfig({
    DATA_DIR: dataDir,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-test-harness-key",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
    ...openUnlessKeyed(options.env),
    ...options.env,
  });
  const logs: Record<string, unknown>[] = [];
  const destination = { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) };
  const gateway = await startGateway(config, createLogger({ level: "info", destination }));
  const client = new ChatServiceClient(`127.0.0.1:${gateway.port}`, credentials.createInsecure());
  return {
    upstream,
    logs,
    gateway,
    client,
    async close() {
      client.close();
      gateway.forceShutdown();
      await upstream.close();
      await gateway.conversations.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface StreamResult {
  responses: ChatResponse[];
  /** The concatenated delta texts. */
  text: string;
  /** The final status: OK, or the error's code and details. */
  code: status;
  details: string;
  trailers: Metadata | undefined;
}

/** A request as ChatRequest.fromPartial takes it: unset fields get their proto defaults. */
export type PartialRequest = Parameters<typeof ChatRequest.fromPartial>[0];

export function collect(
  client: ChatServiceClient,
  request: PartialRequest,
  metadata = new Metadata(),
  deadline?: Date,
): Promise<StreamResult> {
  const full = ChatRequest.fromPartial(request);
  return new Promise((resolve) => {
    const call = client.chat(full, metadata, deadline ? { deadline } : {});
    const responses: ChatResponse[] = [];
    let trailers: Metadata | undefined;
    call.on("data", (r: ChatResponse) => responses.push(r));
    call.on("status", (s) => (trailers = s.metadata));
    const done = (code: status, details: string) =>
      resolve({ responses, text: textOf(responses), code, details, trailers });
    call.on("error", (e: ServiceError) => {
      trailers = e.metadata;
      done(e.code, e.details);
    });
    call.on("end", () => done(status.OK, ""));
  });
}

export function textOf(responses: ChatResponse[]): string {
  return responses.map((r) => (r.event?.$case === "delta" ? r.event.value.text : "")).join("");
}

/** AUTH=none, unless the test configures caller keys: the deployed default requires them. */
export function openUnlessKeyed(env: Record<string, string> = {}): Record<string, string> {
  return env.CALLER_KEYS || env.CALLER_KEYS_FILE || env.AUTH ? {} : { AUTH: "none" };
}

/**
 * Starts a call and returns what it receives; `until(check)` resolves once what has arrived passes
 * `check` (`received(n)`: n messages), so an upstream gate can wait for the caller before sending more.
 */
export function openStream(
  h: Harness,
  request: Parameters<typeof ChatRequest.fromPartial>[0],
  metadata = new Metadata(),
) {
  const call = h.client.chat(ChatRequest.fromPartial(request), metadata);
  const responses: ChatResponse[] = [];
  let waiting: { check: (responses: ChatResponse[]) => boolean; resolve: () => void }[] = [];
  let headers: Metadata | undefined;
  call.on("metadata", (m: Metadata) => (headers = m));
  call.on("data", (r: ChatResponse) => {
    responses.push(r);
    const ready = waiting.filter((w) => w.check(responses));
    waiting = waiting.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  });
  const ended = new Promise<{ code: status; details: string; trailers: Metadata }>((resolve) => {
    call.on("error", (e: ServiceError) => resolve({ code: e.code, details: e.details, trailers: e.metadata }));
    call.on("status", (s) => {
      if (s.code === status.OK) resolve({ code: s.code, details: s.details, trailers: s.metadata });
    });
  });
  const until = (check: (responses: ChatResponse[]) => boolean) =>
    check(responses) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ check, resolve }));
  return {
    call,
    responses,
    ended,
    headers: () => headers,
    seen: () => responses.map(seenFromResponse),
    until,
    received: (count: number) => until((r) => r.length >= count),
  };
}

/** The heartbeats among `responses`. */
export function heartbeatsOf(responses: readonly ChatResponse[]): number[] {
  return responses.flatMap((r) => (r.event?.$case === "heartbeat" ? [r.event.value.waitedMs] : []));
}
