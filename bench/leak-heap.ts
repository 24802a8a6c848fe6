// The leak check behind the bench's leak curve: the service's live JS heap (a heap snapshot collects
// garbage first) after each of four cycles of N streams, next to its RSS. RSS read without a collection
// moves with V8's heap sizing and the allocator; the live heap after a collection is what a leak grows.
//   node --import tsx bench/leak-heap.ts [streams per cycle, default 3000]
import { readdirSync, readFileSync, mkdirSync, statSync, rmSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { grpcClient } from "./clients.js";
import { ROOT, rssKiB, startService, startUpstream } from "./procs.js";
import { promptFor } from "./tokens.js";
const dir = join(ROOT, "bench", "results", "profiles");
mkdirSync(dir, { recursive: true });
const streams = Number(process.argv[2] ?? 3000);
const upstream = await startUpstream();
const service = await startService(upstream.port, { SHUTDOWN_GRACE_MS: "0" }, ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${dir}`]);
const client = grpcClient(service.port, Math.ceil(streams / 1000));
const shape = { tokens: 4, size: 4, firstMs: 0, delayMs: 500 };
for (let cycle = 0; cycle < 4; cycle++) {
  await Promise.all(Array.from({ length: streams }, () => client.chat(promptFor(shape))));
  await sleep(1000);
  const heap = await snapshot();
  console.log(`cycle ${cycle + 1}: live heap ${(heap.total / 2 ** 20).toFixed(1)} MiB, RSS ${(rssKiB(service.pid) / 1024).toFixed(0)} MiB; top: ${heap.top}`);
}
client.close();
await service.stop();
await upstream.stop();
process.exit(0);
async function snapshot() {
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
  const snap = JSON.parse(readFileSync(join(dir, file), "utf8"));
  rmSync(join(dir, file));
  const fields = snap.snapshot.meta.node_fields as string[];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
  const types = snap.snapshot.meta.node_types[0];
  const byName = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const size = snap.nodes[i + sizeAt!];
    total += size;
    const type = types[snap.nodes[i + typeAt!]];
    const name = type === "object" ? snap.strings[snap.nodes[i + nameAt!]] : `(${type})`;
    byName.set(name, (byName.get(name) ?? 0) + 1);
  }
  const top = [...byName].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([n, c]) => `${n} ${c}`).join(", ");
  return { total, top };
}
