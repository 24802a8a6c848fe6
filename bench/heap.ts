// What one open stream costs in the service's JS heap: V8 heap snapshots of the service idle and
// with N slow streams open, diffed by constructor, divided by N, next to the RSS per stream.
//   npm run bench:heap -- [--streams 2000]
// Snapshots are taken with --heapsnapshot-signal (each one collects garbage first, so only live
// objects count); they go to bench/results/profiles/ (gitignored).
import { readdirSync, readFileSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { grpcClient } from "./clients.js";
import { ROOT, rssKiB, startService, startUpstream } from "./procs.js";
import { promptFor } from "./tokens.js";

const { values } = parseArgs({ options: { streams: { type: "string", default: "2000" }, top: { type: "string", default: "25" } } });
const streams = Number(values.streams);
const dir = join(ROOT, "bench", "results", "profiles");
mkdirSync(dir, { recursive: true });

const upstream = await startUpstream();
const service = await startService(upstream.port, { SHUTDOWN_GRACE_MS: "0" }, ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${dir}`]);
const client = grpcClient(service.port, Math.ceil(streams / 1000));
for (let i = 0; i < 20; i++) await client.chat(promptFor({ tokens: 4, size: 4, firstMs: 0, delayMs: 0 }));
await sleep(500);

const idle = await snapshot();
const rssIdle = rssKiB(service.pid);
let firsts = 0;
const shape = { tokens: 3, size: 4, firstMs: 0, delayMs: 60_000 };
const replies = Array.from({ length: streams }, () => client.chat(promptFor(shape), { onFirstToken: () => firsts++ }));
while (firsts < streams) await sleep(100);
await sleep(500);
const rssOpen = rssKiB(service.pid);
const open = await snapshot();
process.stdout.write(
  `${streams} open streams: RSS ${((rssOpen - rssIdle) / streams).toFixed(1)} KiB/stream; ` +
    `live JS heap ${((open.total - idle.total) / 1024 / streams).toFixed(1)} KiB/stream\n\nper stream, by constructor (bytes, count):\n`,
);
const rows = [...open.byName].map(([name, [bytes, count]]) => {
  const [b0, c0] = idle.byName.get(name) ?? [0, 0];
  return [name, (bytes - b0) / streams, (count - c0) / streams] as const;
});
for (const [name, bytes, count] of rows.sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  process.stdout.write(`${bytes.toFixed(0).padStart(7)} B  ${count.toFixed(2).padStart(6)}  ${name}\n`);
}
client.close();
await service.stop();
await upstream.stop();
void replies;
process.exit(0);

async function snapshot(): Promise<{ total: number; byName: Map<string, [number, number]> }> {
  const before = new Set(readdirSync(dir));
  process.kill(service.pid, "SIGUSR2");
  let file: string | undefined;
  for (let size = -1; ; await sleep(250)) {
    file ??= readdirSync(dir).find((f) => f.endsWith(".heapsnapshot") && !before.has(f));
    if (!file) continue;
    const now = statSync(join(dir, file)).size;
    if (now === size && now > 0) break;
    size = now;
  }
  const snap = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [number, number, number];
  const types = snap.snapshot.meta.node_types[0];
  const byName = new Map<string, [number, number]>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const size = snap.nodes[i + sizeAt]!;
    total += size;
    const name = type === "object" || type === "closure" ? `${type === "closure" ? "closure " : ""}${snap.strings[snap.nodes[i + nameAt]!]}` : `(${type})`;
    const entry = byName.get(name) ?? [0, 0];
    entry[0] += size;
    entry[1]++;
    byName.set(name, entry);
  }
  return { total, byName };
}
