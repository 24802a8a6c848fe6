// What one open stream costs in the service's JS heap: V8 heap snapshots of the service idle and
// with N slow streams open, diffed by constructor, divided by N, next to the RSS per stream.
//   npm run bench:heap -- [--streams 2000]
// Snapshots collect garbage first, so only live objects count (heap-snapshot.ts).
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { grpcClient } from "./clients.js";
import { heapSnapshotNodeArgs, takeHeapSnapshot } from "./heap-snapshot.js";
import { rssKiB, startService, startUpstream } from "./procs.js";
import { promptFor } from "./tokens.js";

const { values } = parseArgs({
  options: { streams: { type: "string", default: "2000" }, top: { type: "string", default: "25" } },
});
const streams = Number(values.streams);
const upstream = await startUpstream();
const service = await startService(upstream.port, { SHUTDOWN_GRACE_MS: "0" }, heapSnapshotNodeArgs());
const client = grpcClient(service.port, Math.ceil(streams / 1000));
for (let i = 0; i < 20; i++) await client.chat(promptFor({ tokens: 4, size: 4, firstMs: 0, delayMs: 0 }));
await sleep(500);

const idle = await takeHeapSnapshot(service.pid);
const rssIdle = rssKiB(service.pid);
let firsts = 0;
const shape = { tokens: 3, size: 4, firstMs: 0, delayMs: 60_000 };
const replies = Array.from({ length: streams }, () => client.chat(promptFor(shape), { onFirstToken: () => firsts++ }));
while (firsts < streams) await sleep(100);
await sleep(500);
const rssOpen = rssKiB(service.pid);
const open = await takeHeapSnapshot(service.pid);
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
