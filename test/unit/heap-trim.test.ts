// The service's heap trimmer (src/server/heap-trim.ts): one full collection once the loop is idle
// after the heap grew, none while it is busy, none again without new growth; and the real
// collection, run once, gives back a heap grown by garbage.
import { setTimeout as sleep } from "node:timers/promises";
import { getHeapStatistics } from "node:v8";
import { describe, expect, it } from "vitest";
import { startHeapTrimmer, TRIM_AFTER_GROWTH_BYTES } from "../../src/server/heap-trim.js";

const MiB = 2 ** 20;

describe("heap trimmer", () => {
  it("collects once when idle after growth, never while busy, not again without new growth", async () => {
    let heap = 100 * MiB;
    let busy = 0.5;
    let collections = 0;
    const trimmer = startHeapTrimmer({
      checkMs: 5,
      utilization: () => busy,
      heapBytes: () => heap,
      collect: () => {
        collections++;
        heap = 120 * MiB;
      },
    });
    heap = 100 * MiB + TRIM_AFTER_GROWTH_BYTES; // grown, but busy
    await sleep(40);
    expect(collections).toBe(0);
    busy = 0.01; // idle
    await sleep(40);
    expect(collections).toBe(1);
    heap = 120 * MiB + TRIM_AFTER_GROWTH_BYTES - 1; // idle, grown by less than the threshold since
    await sleep(40);
    expect(collections).toBe(1);
    heap += 1;
    await sleep(40);
    expect(collections).toBe(2);
    expect(trimmer.trims).toBe(2);
    trimmer.stop();
  });

  it("gives back a heap grown by garbage, with V8's own collection", async () => {
    const before = getHeapStatistics().total_heap_size;
    let sizes: [number, number] | undefined;
    const trimmer = startHeapTrimmer({ checkMs: 20, onTrim: (b, a) => (sizes ??= [b, a]) });
    // A peak: objects alive long enough to reach the old generation, then all dropped at once.
    let peak: object[][] | undefined = [];
    for (let i = 0; i < 100; i++) peak.push(Array.from({ length: 16_384 }, (_, j) => ({ j })));
    expect(peak).toHaveLength(100);
    peak = undefined;
    for (let i = 0; i < 100 && !sizes; i++) await sleep(20);
    trimmer.stop();
    expect(sizes, `the heap was ${before} bytes before the garbage`).toBeDefined();
    expect(sizes![0] - sizes![1]).toBeGreaterThanOrEqual(TRIM_AFTER_GROWTH_BYTES);
  });
});
