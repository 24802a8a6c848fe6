// What caller budgets cost and how fast a dead replica's slots come back.
//
// 1. Added latency per call: the built service (`node dist/main.js`) three times over, against one
//    fake upstream answering a one-token reply at once: a caller key without limits (no check),
//    the same key with limits kept in process, and with limits kept in a local redis-server
//    (REDIS_URL). Calls are sequential, taking turns between the three, so noise hits all alike;
//    the figure is each one's p50/p99 for a whole call (start to end of the stream) and the
//    difference to the no-limits baseline.
// 2. Lease recovery: two replicas sharing that Redis, a key limited to one stream, the stream held
//    on replica B, B killed (SIGKILL); how long until replica A lets a new stream in (polled every
//    50 ms), with the lease TTL given (default: the service's default, 15 s).
//
//   npm run bench:limits -- [--calls 1000] [--ttl 15000]
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient } from "../src/gen/chat/v1/chat.js";
import { startFakeUpstream } from "../test/support/fake-model.js";
import { ROOT } from "../src/dev/envoy.js";
import { startRedis } from "../test/support/redis.js";

const { values } = parseArgs({
  options: { calls: { type: "string", default: "1000" }, ttl: { type: "string", default: "15000" } },
});
const calls = Number(values.calls);
const ttlMs = Number(values.ttl);
const KEY = "bench-key-0123456789abcdef";

let release: () => void = () => {};
const upstream = await startFakeUpstream({
  reply: (r) =>
    r.body.messages?.at(-1)?.content === "hold"
      ? { tokens: ["a", "b"], gate: (i) => (i === 1 ? new Promise<void>((resolve) => (release = resolve)) : undefined) }
      : { tokens: ["ok"] },
});
const redis = await startRedis();

async function service(env: Record<string, string>) {
  const child = spawn(process.execPath, [join(ROOT, "dist", "main.js")], {
    stdio: ["ignore", "pipe", "inherit"],
    env: {
      PATH: process.env.PATH ?? "",
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: "0",
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-bench",
      CHAT_MODEL: "bench-model",
      UPSTREAM_MAX_RETRIES: "0",
      ...env,
    },
  });
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg === "chat gateway listening" && entry.port) resolve(entry.port);
    }),
  );
  const client = new ChatServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return { child, client };
}

const metadata = new Metadata();
metadata.set("authorization", `Bearer ${KEY}`);

function call(client: ChatServiceClient, text = "go"): Promise<{ code: status; ms: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const c = client.chat(ChatRequest.fromPartial({ text }), metadata);
    c.on("data", () => undefined);
    c.on("end", () => resolve({ code: status.OK, ms: performance.now() - started }));
    c.on("error", (e: ServiceError) => resolve({ code: e.code, ms: performance.now() - started }));
  });
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;

// 1. Added latency.
const limits = `streams=100000 rpm=100000000 tpm=1000000000`;
const setups = {
  "no limits": await service({ CALLER_KEYS: `bench ${KEY}` }),
  "in process": await service({ CALLER_KEYS: `bench ${KEY} ${limits}` }),
  redis: await service({ CALLER_KEYS: `bench ${KEY} ${limits}`, REDIS_URL: redis.url }),
};
const times: Record<string, number[]> = { "no limits": [], "in process": [], redis: [] };
for (const s of Object.values(setups)) for (let i = 0; i < 50; i++) await call(s.client); // warm-up
for (let i = 0; i < calls; i++) {
  for (const [name, s] of Object.entries(setups)) {
    const { code, ms } = await call(s.client);
    if (code !== status.OK) throw new Error(`${name}: call failed with ${status[code]}`);
    times[name]!.push(ms);
  }
}
const p50 = (name: string) =>
  quantile(
    [...times[name]!].sort((a, b) => a - b),
    0.5,
  );
const p99 = (name: string) =>
  quantile(
    [...times[name]!].sort((a, b) => a - b),
    0.99,
  );
console.log(`\nAdded latency per call (${calls} sequential one-token calls each, taking turns):`);
console.log("| limits | call p50 (ms) | call p99 (ms) | added p50 (ms) |\n|---|---|---|---|");
for (const name of Object.keys(times)) {
  console.log(
    `| ${name} | ${p50(name).toFixed(3)} | ${p99(name).toFixed(3)} | ${name === "no limits" ? "(baseline)" : (p50(name) - p50("no limits")).toFixed(3)} |`,
  );
}
for (const s of Object.values(setups)) {
  s.client.close();
  s.child.kill("SIGKILL");
}

// 2. Lease recovery.
const env = { CALLER_KEYS: `bench ${KEY} streams=1`, REDIS_URL: redis.url, LIMITS_LEASE_TTL_MS: String(ttlMs) };
const [a, b] = [await service(env), await service(env)];
const held = b.client.chat(ChatRequest.fromPartial({ text: "hold" }), metadata);
held.on("error", () => undefined);
await new Promise((resolve) => held.once("data", resolve));
if ((await call(a.client)).code !== status.RESOURCE_EXHAUSTED) throw new Error("the held stream's slot was not taken");
b.child.kill("SIGKILL");
const killedAt = performance.now();
let tries = 0;
while ((await call(a.client)).code === status.RESOURCE_EXHAUSTED) {
  tries++;
  await new Promise((r) => setTimeout(r, 50));
}
console.log(
  `\nLease recovery: the killed replica's slot was free again ${((performance.now() - killedAt) / 1000).toFixed(2)} s after SIGKILL (lease TTL ${ttlMs / 1000} s, refreshed every ${ttlMs / 3000} s; ${tries} refused tries meanwhile)`,
);
release();
a.client.close();
b.client.close();
a.child.kill("SIGKILL");
await redis.close();
await upstream.close();
process.exit(0);
