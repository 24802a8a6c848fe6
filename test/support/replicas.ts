// Several replicas of the built service (`node dist/main.js`), each with a fake upstream of its own
// so a test can tell from the upstream's side which replica served a stream, behind one real Envoy
// rendered with all of them; and chat clients that report how each stream ended, as the client saw it.
import { request } from "node:http";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream, type Reply, type RecordedRequest } from "./fake-model.js";
import { startEnvoy, type EnvoyOptions, type RunningEnvoy } from "../../src/dev/envoy.js";
import { startServiceProcess, type ServiceProcess } from "./processes.js";

export interface Replica {
  readonly index: number;
  readonly service: ServiceProcess;
  /** The upstream only this replica calls: what it received is what this replica served. */
  readonly upstream: FakeUpstream;
}

export interface Replicas {
  readonly replicas: Replica[];
  readonly envoy: RunningEnvoy;
  /** The replica whose upstream received the request whose last user message is `text`, if any. */
  servedBy(text: string): Replica | undefined;
  stop(): Promise<void>;
}

/** The last user message of an upstream request: the text a test sent. */
export function promptOf(r: RecordedRequest): string {
  const content = r.body.messages?.at(-1)?.content;
  return typeof content === "string" ? content : "";
}

export async function startReplicas(
  count: number,
  options: {
    reply: (replica: number, request: RecordedRequest) => Reply;
    env?: Record<string, string>;
    envoy?: Partial<EnvoyOptions>;
  },
): Promise<Replicas> {
  const replicas: Replica[] = [];
  let envoy: RunningEnvoy | undefined;
  const stop = async () => {
    await envoy?.stop();
    await Promise.all(
      replicas.map(async (r) => {
        await r.service.stop("SIGKILL");
        await r.upstream.close();
      }),
    );
  };
  try {
    const started = await Promise.allSettled(
      Array.from({ length: count }, async (_, index) => {
        const upstream = await startFakeUpstream({ reply: (r) => options.reply(index, r) });
        try {
          const service = await startServiceProcess({
            OPENAI_BASE_URL: upstream.baseURL,
            OPENAI_API_KEY: "sk-test",
            ...options.env,
          });
          return { index, service, upstream };
        } catch (error) {
          await upstream.close();
          throw error;
        }
      }),
    );
    for (const s of started) if (s.status === "fulfilled") replicas.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    envoy = await startEnvoy({
      serviceEndpoints: replicas.map((r) => ({ address: "127.0.0.1", port: r.service.port })),
      httpHost: "127.0.0.1",
      stderr: "ignore",
      accessLog: "pipe",
      graceMs: 20_000,
      ...options.envoy,
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    replicas,
    envoy,
    servedBy: (text) => replicas.find((r) => r.upstream.requests.some((q) => promptOf(q) === text)),
    stop,
  };
}

/** How a stream ended, as its client saw it. */
export interface Outcome {
  /** A complete reply: every delta, then `finish`; over HTTP a 200 whose body ended properly. */
  ok: boolean;
  /** The delta texts joined. */
  text: string;
  /** HTTP: the status, and `cut` when the connection closed before the body's end. gRPC: the status code's name. */
  how: string;
  /** The error event's or status's message, if any. */
  message?: string;
}

export interface OpenStream {
  /** Resolves with the first delta (the reply has started: Envoy can no longer retry it). */
  readonly first: Promise<void>;
  readonly done: Promise<Outcome>;
}

/** `POST /chat` through Envoy, read as `curl -N` reads it. */
export function httpChat(port: number, text: string): OpenStream {
  let started!: () => void;
  const first = new Promise<void>((resolve) => (started = resolve));
  const done = new Promise<Outcome>((resolve) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/chat", method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        const deltas: string[] = [];
        let finished = false;
        let error: string | undefined;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          let cut: number;
          while ((cut = body.indexOf("\n\n")) >= 0) {
            const frame = body.slice(0, cut);
            body = body.slice(cut + 2);
            if (!frame.startsWith("data: ")) continue;
            const event = JSON.parse(frame.slice(6)) as {
              delta?: { text: string };
              finish?: unknown;
              error?: { message: string };
            };
            if (event.delta) {
              deltas.push(event.delta.text);
              started();
            }
            if (event.finish) finished = true;
            if (event.error) error = event.error.message;
          }
        });
        res.on("close", () => {
          const cut = !res.complete;
          const plain =
            res.headers["content-type"] === "application/json"
              ? (JSON.parse(body || "{}") as { message?: string }).message
              : undefined;
          const message = error ?? plain;
          resolve({
            ok: res.statusCode === 200 && finished && !cut && error === undefined,
            text: deltas.join(""),
            how: cut ? `${res.statusCode} cut` : String(res.statusCode),
            ...(message !== undefined && { message }),
          });
          started();
        });
      },
    );
    req.on("error", (e) => {
      resolve({ ok: false, text: "", how: "connection failed", message: e.message });
      started();
    });
    req.end(JSON.stringify({ text }));
  });
  return { first, done };
}

/** chat.v1.ChatService/Chat, native gRPC, to `port` (Envoy's listener or a replica). */
export function grpcChat(client: ChatServiceClient, text: string): OpenStream {
  let started!: () => void;
  const first = new Promise<void>((resolve) => (started = resolve));
  const done = new Promise<Outcome>((resolve) => {
    const call = client.chat(ChatRequest.fromPartial({ text }));
    const deltas: string[] = [];
    let finished = false;
    call.on("data", (r: ChatResponse) => {
      if (r.event?.$case === "delta") {
        deltas.push(r.event.value.text);
        started();
      }
      if (r.event?.$case === "finish") finished = true;
    });
    call.on("error", (e: ServiceError) => {
      resolve({ ok: false, text: deltas.join(""), how: status[e.code], message: e.details });
      started();
    });
    call.on("end", () => {
      resolve({ ok: finished, text: deltas.join(""), how: "OK" });
      started();
    });
  });
  return { first, done };
}

/** A native gRPC client of Envoy's listener, on its own connection. */
export function grpcClientOf(port: number): ChatServiceClient {
  return new ChatServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
}

/** The reply the fake upstreams give `text`: tokens naming it, so a stream's text shows any token lost, doubled or from another stream. */
export function tokensFor(text: string, count = 8): string[] {
  return Array.from({ length: count }, (_, i) => `${text}:${i} `);
}
