// Gives the memory of a peak back once the service is idle. Under a burst (thousands of streams
// at once) V8 grows its heap to several times what stays alive, then, with nothing allocating, never
// collects again: no allocation means no GC, and its memory reducer did not run in the bench's idle
// minutes. Five cycles of 5,000 streams left an idle service at ~1 GiB of RSS with 85 MiB of live
// objects; one full collection brought it to ~310 MiB (docs/performance.md#memory-after-a-peak).
//
// So twice a second: if the event loop was almost idle over the last half second and V8's heap has grown by
// TRIM_AFTER_GROWTH_BYTES since the last collection made here, collect once, with V8's
// memory-reducing flavour, which also returns the freed pages to the OS. The pause is proportional to
// what is alive (tens of milliseconds at idle), and comes at most once per such growth, only when
// the loop had nothing to do.
import { performance, type EventLoopUtilization } from "node:perf_hooks";
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** How often the loop's idleness and the heap's size are read. */
export const TRIM_CHECK_MS = 500;
/** Below this share of busy time over the last check the loop counts as idle. */
export const IDLE_UTILIZATION = 0.05;
/** Growth of V8's heap (committed) since the last collection made here that is worth giving back. */
export const TRIM_AFTER_GROWTH_BYTES = 64 * 2 ** 20;

export interface HeapTrimReadings {
  /** The event loop's busy share since the previous reading (0..1). */
  utilization: number;
  /** V8's committed heap now, in bytes. */
  heapBytes: number;
}

/** The decision alone, so it can be tested without a heap: trim when idle after enough growth. */
export function shouldTrim(now: HeapTrimReadings, heapAfterLastTrim: number): boolean {
  return now.utilization < IDLE_UTILIZATION && now.heapBytes - heapAfterLastTrim >= TRIM_AFTER_GROWTH_BYTES;
}

export interface HeapTrimmer {
  /** Collections made so far (for the log and tests). */
  readonly trims: number;
  stop(): void;
}

export interface HeapTrimOptions {
  /** Called after each collection: the committed heap before and after, in bytes, and its pause. */
  onTrim?: (before: number, after: number, ms: number) => void;
  /** Readings and the collection itself, replaced in tests. */
  utilization?: () => number;
  heapBytes?: () => number;
  collect?: () => void;
  checkMs?: number;
}

export function startHeapTrimmer(options: HeapTrimOptions = {}): HeapTrimmer {
  const utilization = options.utilization ?? loopUtilization();
  const heapBytes = options.heapBytes ?? (() => getHeapStatistics().total_heap_size);
  const collect = options.collect ?? fullCollection();
  let heapAfterLastTrim = heapBytes();
  let trims = 0;
  const timer = setInterval(() => {
    const now = { utilization: utilization(), heapBytes: heapBytes() };
    if (!shouldTrim(now, heapAfterLastTrim)) return;
    const started = performance.now();
    collect();
    heapAfterLastTrim = heapBytes();
    trims++;
    options.onTrim?.(now.heapBytes, heapAfterLastTrim, performance.now() - started);
  }, options.checkMs ?? TRIM_CHECK_MS);
  // A timer of bookkeeping: it must not keep a stopping process alive.
  timer.unref();
  return {
    get trims() {
      return trims;
    },
    stop: () => clearInterval(timer),
  };
}

/** The loop's busy share since the previous call. */
function loopUtilization(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return busy;
  };
}

/**
 * V8's `gc()`, which Node exposes only under `--expose-gc`: the flag set at run time makes it
 * available in a new context (the flag must not be needed on every launcher's command line: the
 * container, npm start, the cluster, the bench). "last-resort" is V8's memory-reducing full
 * collection, the one its memory reducer would run, which compacts and releases the freed pages.
 */
function fullCollection(): () => void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (options: object) => void;
  return () => gc({ type: "major", execution: "sync", flavor: "last-resort" });
}
