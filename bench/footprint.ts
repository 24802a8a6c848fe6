// `npm run bench:footprint`: what one replica costs, for sizing deploy/'s resource requests and
// limits. The deployed path (an HTTP client → Envoy → the service, `node dist/main.js`), with the
// bench's pieces:
// - RSS of the service and of Envoy idle (after a few requests), and with N slow streams open at
//   once (fresh processes for each N, as the bench's RSS scenario);
// - CPU time of each per 1,000 tokens, and the tokens/s one replica sustains, with 100 streams at
//   full speed (the bench's load scenario).
// CPU time is a ratio of work done, so it holds on a busy machine; tokens/s does not (compare with
// the bench's own results).
import { parseArgs } from "node:util";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { httpClient } from "./clients.js";
import { measureLoad, measureRss } from "./measure.js";
import { ROOT, rssKiB, startEnvoyFor, startService, startUpstream, type Proc } from "./procs.js";
import type { ReplyShape } from "./tokens.js";

const { values } = parseArgs({
  options: {
    streams: { type: "string", default: "1000,2000" },
    window: { type: "string", default: "5000" },
  },
});
const levels = values.streams.split(",").map(Number);
const slow: ReplyShape = { tokens: 4, size: 4, firstMs: 0, delayMs: 3_000 };
const fast: ReplyShape = { tokens: 200, size: 4, firstMs: 0, delayMs: 0 };

async function withPath<T>(run: (pids: { service: number; envoy: number }, port: number) => Promise<T>): Promise<T> {
  const procs: Proc[] = [];
  try {
    const upstream = await startUpstream();
    procs.push(upstream);
    const service = await startService(upstream.port);
    procs.push(service);
    const envoy = await startEnvoyFor(service.port);
    procs.push(envoy);
    return await run({ service: service.pid, envoy: envoy.pid }, envoy.port);
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}

const mib = (kib: number) => Math.round(kib / 102.4) / 10;
const result: Record<string, unknown> = { date: new Date().toISOString() };

// Idle, and CPU at full speed.
await withPath(async (pids, port) => {
  const client = httpClient("http", port);
  for (let i = 0; i < 20; i++) await client.chat("bench tokens=8 size=4 first=0 delay=0");
  result.idleRssMiB = { service: mib(rssKiB(pids.service)), envoy: mib(rssKiB(pids.envoy)) };
  const load = await measureLoad(client, 100, fast, { warmupMs: 2_000, windowMs: Number(values.window) }, pids);
  result.fullSpeed = {
    streams: 100,
    tokensPerSecond: Math.round(load.tokensPerSecond),
    cpuMsPer1kTokens: Object.fromEntries(
      Object.entries(load.cpuMsPer1kTokens).map(([k, v]) => [k, Math.round(v * 10) / 10]),
    ),
    cores: Object.fromEntries(
      Object.entries(load.cpuMsPer1kTokens).map(([k, v]) => [k, Math.round((v * load.tokensPerSecond) / 1e4) / 100]),
    ),
    rssMiB: { service: mib(rssKiB(pids.service)), envoy: mib(rssKiB(pids.envoy)) },
    lost: load.integrity.lost,
    errors: load.integrity.errors,
  };
  client.close();
  console.log(JSON.stringify(result));
});

// RSS with N streams open.
const open: Record<string, unknown>[] = [];
for (const streams of levels) {
  await withPath(async (pids, port) => {
    const client = httpClient("http", port);
    const r = await measureRss(client, streams, slow, pids);
    open.push({
      streams,
      openAtReading: r.open,
      rssMiB: { service: mib(r.loadedKiB.service!), envoy: mib(r.loadedKiB.envoy!) },
      perStreamKiB: {
        service: Math.round((r.loadedKiB.service! - r.idleKiB.service!) / streams),
        envoy: Math.round((r.loadedKiB.envoy! - r.idleKiB.envoy!) / streams),
      },
      lost: r.integrity.lost,
      errors: r.integrity.errors,
    });
    client.close();
    console.log(JSON.stringify(open.at(-1)));
  });
}
result.open = open;

const dir = join(ROOT, "bench", "results");
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "footprint-latest.json"), `${JSON.stringify(result, null, 2)}\n`);
console.log(JSON.stringify(result, null, 2));
