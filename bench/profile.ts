// CPU profile of the service under one bench workload: `node --cpu-prof` on the service process,
// then a bottom-up summary (self time by function, and by package).
//   npm run bench:profile -- [--workload single|load] [--concurrency 100] [--seconds 5] [--tokens 200] [--delay 0]
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
  },
});
const dir = join(ROOT, "bench", "results", "profiles");
mkdirSync(dir, { recursive: true });
const before = new Set(readdirSync(dir));

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

const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile") && !before.has(f));
if (!file) throw new Error("the service wrote no profile");
const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as Profile;
const self = new Map<number, number>();
profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
for (const node of profile.nodes) {
  const t = self.get(node.id) ?? 0;
  if (!t) continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const short = url.replace(/^file:\/\//, "").replace(ROOT, "");
  const key = `${functionName || "(anonymous)"} ${short ? `${short}:${lineNumber + 1}` : ""}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + t);
  byPackage.set(packageOf(url, functionName), (byPackage.get(packageOf(url, functionName)) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
process.stdout.write(
  `profile ${join("bench/results/profiles", file)}: ${(total / 1000).toFixed(0)} ms sampled\n\nself time by package:\n`,
);
for (const [k, t] of [...byPackage].sort((a, b) => b[1] - a[1])) process.stdout.write(`${pct(t)}  ${k}\n`);
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
