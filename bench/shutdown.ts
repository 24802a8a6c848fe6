// What a shutdown does to streams in flight: `npm start`'s stack (node dist/stack.js) on free ports,
// against a fake upstream whose every reply takes `--reply-ms`, with `--http` streams through Envoy
// and `--grpc` streams straight to the service. Once every stream has its first delta, the signal
// goes to the stack process (or, with --group, to its whole process group, as Ctrl-C does), a few
// new requests are sent while it drains, and each stream's end is counted: a `finish` event, an
// in-band `error` event, or cut (the connection closed with neither).
//
//   npm run bench:shutdown -- [--signal SIGTERM|SIGINT] [--group] [--http 50] [--grpc 50] [--reply-ms 3000]
import { spawn } from "node:child_process";
import { request } from "node:http";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { credentials, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../src/gen/chat/v1/chat.js";
import { startFakeUpstream } from "../test/support/fake-model.js";
import { ROOT } from "../src/dev/envoy.js";

const { values } = parseArgs({
  options: {
    signal: { type: "string", default: "SIGTERM" },
    group: { type: "boolean", default: false },
    http: { type: "string", default: "50" },
    grpc: { type: "string", default: "50" },
    "reply-ms": { type: "string", default: "3000" },
  },
});
const signal = values.signal as NodeJS.Signals;
const httpStreams = Number(values.http);
const grpcStreams = Number(values.grpc);
const TOKENS = 60;
const tokenDelayMs = Math.round(Number(values["reply-ms"]) / TOKENS);

type Outcome = "finished" | "error event" | "cut" | string;

async function main(): Promise<void> {
  const upstream = await startFakeUpstream({
    reply: () => ({ tokens: Array.from({ length: TOKENS }, (_, i) => `t${i} `), tokenDelayMs }),
  });
  const stack = spawn(process.execPath, [join(ROOT, "dist", "stack.js")], {
    env: {
      PATH: process.env.PATH ?? "",
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-bench-shutdown",
      CHAT_MODEL: "bench-model",
      AUTH: "none",
      GRPC_PORT: "0",
      HTTP_PORT: "0",
      ENVOY_ADMIN_PORT: "0",
      METRICS_PORT: "0",
      LOG_FORMAT: "json",
      MAX_CONCURRENT_STREAMS: "100000",
    },
    // Its own process group, so --group can signal the stack and everything in it, and nothing else.
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
  });
  const exited = new Promise<number | string | null>((resolve) =>
    stack.once("exit", (code, sig) => resolve(code ?? sig)),
  );
  const up = await new Promise<{ grpc: string; http: string }>((resolve, reject) => {
    createInterface({ input: stack.stdout! }).on("line", (line) => {
      if (line.includes('"stack up')) resolve(JSON.parse(line) as { grpc: string; http: string });
    });
    void exited.then((code) => reject(new Error(`the stack exited (${code}) before it was up`)));
  });
  const grpcPort = Number(up.grpc.split(":").pop());
  const httpPort = Number(new URL(up.http).port);
  const client = new ChatServiceClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());

  let firsts = 0;
  const allFirst = new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (firsts >= httpStreams + grpcStreams) {
        clearInterval(check);
        resolve();
      }
    }, 10);
  });
  const onFirst = () => firsts++;
  const streams = [
    ...Array.from({ length: httpStreams }, () => httpStream(httpPort, onFirst).then((o) => ["http", o] as const)),
    ...Array.from({ length: grpcStreams }, () => grpcStream(client, onFirst).then((o) => ["grpc", o] as const)),
  ];
  await allFirst;
  const signalledAt = performance.now();
  if (values.group) process.kill(-stack.pid!, signal);
  else stack.kill(signal);

  // New requests while it drains: what does a caller arriving now see?
  await new Promise((resolve) => setTimeout(resolve, 300));
  const late = await Promise.all([
    httpStream(httpPort, () => undefined).then((o) => `http: ${o}`),
    grpcStream(client, () => undefined).then((o) => `grpc: ${o}`),
  ]);

  const results = await Promise.all(streams);
  const code = await exited;
  const elapsed = performance.now() - signalledAt;
  client.close();
  await upstream.close();

  const tally: Record<string, Record<string, number>> = { http: {}, grpc: {} };
  for (const [path, outcome] of results) tally[path]![outcome] = (tally[path]![outcome] ?? 0) + 1;
  console.log(
    JSON.stringify(
      {
        signal,
        to: values.group ? "process group" : "stack process",
        replyMs: TOKENS * tokenDelayMs,
        streams: tally,
        newRequestsWhileDraining: late,
        stackExit: code,
        signalToExitMs: Math.round(elapsed),
      },
      null,
      2,
    ),
  );
}

function httpStream(port: number, onFirst: () => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/chat", method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let body = "";
        let first = false;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
          if (!first && body.includes('"delta"')) {
            first = true;
            onFirst();
          }
        });
        const done = () => {
          if (res.statusCode !== 200) return resolve(`HTTP ${res.statusCode} ${body.trim()}`);
          if (body.includes('data: {"finish"')) return resolve("finished");
          if (body.includes('data: {"error"')) return resolve("error event");
          resolve("cut");
        };
        res.on("end", done);
        res.on("error", () => resolve("cut"));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve(`connection error ${e.code ?? e.message}`));
    req.end(JSON.stringify({ text: "hello" }));
  });
}

function grpcStream(client: ChatServiceClient, onFirst: () => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const call = client.chat(ChatRequest.fromPartial({ text: "hello" }));
    let first = false;
    let finished = false;
    call.on("data", (r: ChatResponse) => {
      if (r.event?.$case === "delta" && !first) {
        first = true;
        onFirst();
      }
      if (r.event?.$case === "finish") finished = true;
    });
    call.on("error", (e: ServiceError) =>
      resolve(first ? `${status[e.code]} after deltas` : `${status[e.code]}: ${e.details}`),
    );
    call.on("end", () => resolve(finished ? "finished" : "cut"));
  });
}

void main();
