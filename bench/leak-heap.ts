// The leak check behind the bench's leak curve: the service's live JS heap (a heap snapshot collects
// garbage first) after each of four cycles of N streams, next to its RSS. RSS read without a collection
// moves with V8's heap sizing and the allocator; the live heap after a collection is what a leak grows.
//   node --import tsx bench/leak-heap.ts [streams per cycle, default 3000]
import { setTimeout as sleep } from "node:timers/promises";
import { grpcClient } from "./clients.js";
import { heapSnapshotNodeArgs, takeHeapSnapshot, type HeapSnapshot } from "./heap-snapshot.js";
import { rssKiB, startService, startUpstream } from "./procs.js";
import { promptFor } from "./tokens.js";

const streams = Number(process.argv[2] ?? 3000);
const upstream = await startUpstream();
const service = await startService(upstream.port, { SHUTDOWN_GRACE_MS: "0" }, heapSnapshotNodeArgs());
const client = grpcClient(service.port, Math.ceil(streams / 1000));
const shape = { tokens: 4, size: 4, firstMs: 0, delayMs: 500 };
for (let cycle = 0; cycle < 4; cycle++) {
  await Promise.all(Array.from({ length: streams }, () => client.chat(promptFor(shape))));
  await sleep(1000);
  const heap = await takeHeapSnapshot(service.pid);
  console.log(
    `cycle ${cycle + 1}: live heap ${(heap.total / 2 ** 20).toFixed(1)} MiB, RSS ${(rssKiB(service.pid) / 1024).toFixed(0)} MiB; top: ${mostNumerous(heap)}`,
  );
}
client.close();
await service.stop();
await upstream.stop();
process.exit(0);

/** The six constructors with the most live objects. */
function mostNumerous(heap: HeapSnapshot): string {
  return [...heap.byName]
    .sort((a, b) => b[1][1] - a[1][1])
    .slice(0, 6)
    .map(([name, [, count]]) => `${name} ${count}`)
    .join(", ");
}
