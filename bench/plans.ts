// How much each mode of `npm run bench` measures. Its own module, so the smoke test can read the
// plan without importing run.ts (which runs the benchmark when loaded).
import type { ReplyShape } from "./tokens.js";

export type Mode = "smoke" | "quick" | "full";

export interface Plan {
  ttftSamples: number;
  single: { shape: ReplyShape; runs: number };
  load: { levels: number[]; shape: ReplyShape; warmupMs: number; windowMs: number };
  /** settleMs: how long after the last stream opened RSS is read (500 ms when absent). */
  rss: { streams: number[]; shape: (streams: number) => ReplyShape; settleMs?: number };
  /** Streams whose tokens come `delayMs` apart, as a model writes them: CPU per token and added gaps. */
  paced: { concurrency: number; shape: ReplyShape; warmupMs: number; windowMs: number };
  /** The leak curve: idle RSS after each of `cycles` rounds of `streams` replies. */
  leak: { cycles: number; streams: number; shape: ReplyShape; settleMs: number };
  /** Clients that ask for a long reply and read nothing (not in --smoke: it takes a minute). */
  slow?: { streams: number; shape: ReplyShape };
}

/**
 * Long tokens, written as fast as the socket takes them: 830 KB of SSE per reply, more than the
 * gateway's buffers hold. Not longer: on loopback the kernel gives each upstream connection a few MB
 * of socket buffers, and 1,000 replies that fill them would take the whole machine's TCP memory
 * (net.ipv4.tcp_mem) past its pressure threshold.
 */
/** The paced workload: 64 deltas 20 ms apart. */
const PACED_SHAPE: ReplyShape = { tokens: 64, size: 4, firstMs: 0, delayMs: 20 };
/** Leak cycles: every stream open together for a second, then read to its end. */
const LEAK_SHAPE: ReplyShape = { tokens: 4, size: 4, firstMs: 0, delayMs: 500 };

const SLOW_SHAPE: ReplyShape = { tokens: 2_000, size: 200, firstMs: 0, delayMs: 0 };

export const PLANS: Record<Mode, Plan> = {
  smoke: {
    ttftSamples: 5,
    single: { shape: { tokens: 2_000, size: 4, firstMs: 0, delayMs: 0 }, runs: 1 },
    load: { levels: [1, 10], shape: { tokens: 50, size: 4, firstMs: 0, delayMs: 0 }, warmupMs: 200, windowMs: 500 },
    rss: { streams: [20], shape: () => ({ tokens: 3, size: 4, firstMs: 0, delayMs: 2_000 }) },
    paced: { concurrency: 10, shape: { tokens: 16, size: 4, firstMs: 0, delayMs: 20 }, warmupMs: 200, windowMs: 500 },
    leak: { cycles: 2, streams: 20, shape: { tokens: 2, size: 4, firstMs: 0, delayMs: 50 }, settleMs: 200 },
  },
  quick: {
    ttftSamples: 200,
    single: { shape: { tokens: 20_000, size: 4, firstMs: 0, delayMs: 0 }, runs: 3 },
    load: {
      levels: [1, 10, 100, 1_000],
      shape: { tokens: 200, size: 4, firstMs: 0, delayMs: 0 },
      warmupMs: 1_000,
      windowMs: 3_000,
    },
    rss: { streams: [1_000], shape: () => ({ tokens: 4, size: 4, firstMs: 0, delayMs: 3_000 }) },
    paced: { concurrency: 100, shape: PACED_SHAPE, warmupMs: 1_500, windowMs: 4_000 },
    leak: { cycles: 5, streams: 1_000, shape: LEAK_SHAPE, settleMs: 2_000 },
    slow: { streams: 1_000, shape: SLOW_SHAPE },
  },
  full: {
    ttftSamples: 1_000,
    single: { shape: { tokens: 50_000, size: 4, firstMs: 0, delayMs: 0 }, runs: 5 },
    load: {
      levels: [1, 10, 100, 1_000],
      shape: { tokens: 200, size: 4, firstMs: 0, delayMs: 0 },
      warmupMs: 2_000,
      windowMs: 10_000,
    },
    rss: {
      streams: [1_000, 10_000],
      // Long enough between tokens that every stream is still open once the last one has started.
      shape: (n) => ({ tokens: 4, size: 4, firstMs: 0, delayMs: n > 2_000 ? 15_000 : 3_000 }),
      // Read once the process has settled, not in the burst of opening them: 0.5 s after the last
      // stream opened, ~17 KiB per stream was the opening's garbage, collected a few seconds later
      // (the idle collection, src/server/heap-trim.ts). Every stream is still open at 5 s.
      settleMs: 5_000,
    },
    paced: { concurrency: 100, shape: PACED_SHAPE, warmupMs: 2_000, windowMs: 10_000 },
    leak: { cycles: 5, streams: 5_000, shape: LEAK_SHAPE, settleMs: 2_000 },
    slow: { streams: 1_000, shape: SLOW_SHAPE },
  },
};
