// CPU profile of the service under one bench workload: `node --cpu-prof` on the service process,
// then a bottom-up summary (self time by function, and by package).
//   npm run bench:profile -- [--workload single|load] [--concurrency 100] [--seconds 5] [--tokens 200] [--delay 0]
//   npm run bench:profile -- --file bench/results/profiles/X.cpuprofile   (summarise one already taken)
// The .cpuprofile is kept in bench/results/profiles/ (gitignored) for a flame graph viewer
// (Chrome DevTools, speedscope).
import { readdirSync, readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { grpcClient } from "./clients.js";
import { measureLoad, measureSingleStream } from "./measure.js";
import { ROOT, startService, startUpstream } from "./procs.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values } = parseArgs({
  options: {
    workload: { type: "string", default: "load" },
    concurrency: { type: "string", default: "100" },
    seconds: { type: "string", default: "5" },
    tokens: { type: "string", default: "200" },
    /** Milliseconds between tokens (the bench's paced section: --tokens 64 --delay 20). */
    delay: { type: "string", default: "0" },
    top: { type: "string", default: "30" },
    /** Summarise this .cpuprofile instead of running a workload. */
    file: { type: "string" },
  },
});
const dir = join(ROOT, "bench", "results", "profiles");
mkdirSync(dir, { recursive: true });
const before = new Set(readdirSync(dir));

const file = values.file ?? (await runWorkload());
async function runWorkload(): Promise<string> {
  const upstream = await startUpstream();
  const service = await startService(upstream.port, { SHUTDOWN_GRACE_MS: "0" }, ["--cpu-prof", "--cpu-prof-dir", dir]);
  const client = grpcClient(service.port, 1);
  const shape = { tokens: Number(values.tokens), size: 4, firstMs: 0, delayMs: Number(values.delay) };
  await measureSingleStream(client, { ...shape, tokens: 20, delayMs: 0 }, 50); // warm up
  if (values.workload === "single") {
    const r = await measureSingleStream(
      client,
      { ...shape, tokens: 20_000, delayMs: 0 },
      Math.max(1, Number(values.seconds)),
    );
    process.stderr.write(`single stream: ${Math.round(r.tokensPerSecond)} tokens/s\n`);
  } else {
    const r = await measureLoad(
      client,
      Number(values.concurrency),
      shape,
      { warmupMs: 500, windowMs: Number(values.seconds) * 1000 },
      { service: service.pid },
    );
    process.stderr.write(
      `load ${values.concurrency}: ${Math.round(r.tokensPerSecond)} tokens/s, ${r.cpuMsPer1kTokens.service?.toFixed(1)} CPU ms / 1k tokens\n`,
    );
  }
  client.close();
  await service.stop();
  await upstream.stop();

  const written = readdirSync(dir).find((f) => f.endsWith(".cpuprofile") && !before.has(f));
  if (!written) throw new Error("the service wrote no profile");
  return join(dir, written);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
const byHop = new Map<string, number>();
for (const node of profile.nodes) {
  const t = self.get(node.id) ?? 0;
  if (!t) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const short = url.replace(/^file:\/\//, "").replace(ROOT, "");
  const key = `${functionName || "(anonymous)"} ${short ? `${short}:${lineNumber + 1}` : ""}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + t);
  byPackage.set(packageOf(url, functionName), (byPackage.get(packageOf(url, functionName)) ?? 0) + t);
  const hop = hopOf(url, functionName);
  byHop.set(hop, (byHop.get(hop) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
process.stdout.write(
  `profile ${file.replace(ROOT, ".")}: ${(total / 1000).toFixed(0)} ms sampled\n\nself time by package:\n`,
);
for (const [k, t] of [...byPackage].sort((a, b) => b[1] - a[1])) process.stdout.write(`${pct(t)}  ${k}\n`);
process.stdout.write("\nself time by hop of a delta's path (docs/performance.md#where-a-deltas-cpu-goes):\n");
for (const [k, t] of [...byHop].sort((a, b) => b[1] - a[1])) process.stdout.write(`${pct(t)}  ${k}\n`);
process.stdout.write("\nself time by function:\n");
for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
  process.stdout.write(`${pct(t)}  ${k}\n`);

function packageOf(url: string, fn: string): string {
  if (!url) return fn.startsWith("(") ? fn : "(native)";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith("node:"))
    return url
      .replace(/^node:(internal\/)?/, "node:")
      .replace(/\/.*$/, "")
      .replace(/_.*$/, "");
  if (url.includes("/dist/")) return "chat-gateway (dist/)";
  return url;
}

/**
 * The hop of a delta's path (model → service → caller) a function's self time belongs to, by where
 * its code lives. Node's shared machinery (streams, timers, promises) serves every hop and is its
 * own line; so are V8's garbage collector and the time outside JavaScript.
 */
function hopOf(url: string, fn: string): string {
  if (!url) {
    if (fn === "(garbage collector)") return "V8: garbage collection";
    // protobufjs's generated coders (grpc-js's reflection and descriptors) have no script.
    if (/\$(decode|encode|verify|fromObject|toObject)$/.test(fn)) return "protobuf encode/decode";
    // The native half of a socket write: libuv's write/writev of what HTTP/2 or HTTP/1.1 framed.
    if (/^(writeBuffer|writeString|writev|writeUtf8String|writeLatin1String)$/.test(fn))
      return "socket writes (native: HTTP/2 frames to the caller, HTTP/1.1 requests to the model)";
    if (fn === "(idle)") return "idle";
    if (fn === "(program)") return "native, outside JS (syscalls, libuv, nghttp2, V8 itself)";
    // Builtins without a script: JSON.parse, TextDecoder, Buffer copies, and the like.
    return "native builtins called from JS (JSON.parse, TextDecoder, Buffer, ...)";
  }
  if (
    /undici|node:internal\/deps\/(undici|llhttp)|node:internal\/webstreams|node:_http_|\/providers\/openai\/http-transport/.test(
      url,
    )
  )
    return "upstream read: the HTTP/1.1 client (Node's; undici's fetch before), its parser, the body reader";
  if (/node_modules\/openai\//.test(url)) return "openai SDK: request building, send, headers";
  if (/eventsource-parser|\/providers\/openai\/sse-chunks/.test(url))
    return "SSE parse (eventsource-parser, the body decoder)";
  if (/\/providers\/openai\/(chunks|upstream|params|fetch)/.test(url) || /\/upstream\//.test(url))
    return "chunk translation and the upstream loop";
  if (/\/chat\//.test(url)) return "chat handler and outbox";
  if (/\/gen\/|@bufbuild|protobufjs|long\//.test(url)) return "protobuf encode/decode";
  if (/@grpc\/grpc-js/.test(url)) return "grpc-js: call, framing, metadata";
  if (/node:internal\/http2|node:http2/.test(url)) return "node:http2";
  if (/pino|prom-client|\/observability\//.test(url)) return "logging, metrics, tracing";
  if (/node:internal\/(streams|stream_base_commons)|node:stream/.test(url)) return "Node streams (both sides)";
  if (
    /node:net|node:internal\/net|node:internal\/(timers|process\/task_queues|async_hooks|event_target|abort_controller)|node:events|node:timers/.test(
      url,
    )
  )
    return "Node core: sockets, timers, promises, events, abort signals";
  if (/\/dist\//.test(url)) return "gateway: other (server, limits, auth)";
  if (/node_modules/.test(url)) return `other packages (${packageOf(url, fn)})`;
  return `other Node internals (${packageOf(url, fn)})`;
}
