// The measurements, each run against one path at a time with the same upstream.
import type { PathClient, Reply } from "./clients.js";
import { cpuMs, rssKiB } from "./procs.js";
import { promptFor, verify, type ReplyShape } from "./tokens.js";

export interface Integrity {
  replies: number;
  /** Replies that ended normally: every token, then the finish event. */
  complete: number;
  /** Tokens received in order where they belong, over all replies. */
  tokens: number;
  /** Replies that ended with an error (not counting those the bench cancelled). */
  errors: number;
  lost: number;
  duplicated: number;
  corrupt: number;
  firstError?: string;
}

export function emptyIntegrity(): Integrity {
  return { replies: 0, complete: 0, tokens: 0, errors: 0, lost: 0, duplicated: 0, corrupt: 0 };
}

/** Checks one reply's every token into `into`; returns the tokens it carried. */
export function check(into: Integrity, reply: Reply, shape: ReplyShape, cancelled = false): number {
  into.replies++;
  if (reply.error !== undefined) {
    into.errors++;
    into.firstError ??= reply.error;
  }
  const v = verify(reply.text, shape, !cancelled && reply.error === undefined);
  if (reply.complete) into.complete++;
  into.tokens += v.received;
  into.lost += v.lost;
  into.duplicated += v.duplicated;
  if (v.corrupt) into.corrupt++;
  return v.received;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface TtftResult {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  integrity: Integrity;
}

/**
 * Time to first token, one stream at a time. The paths take turns sample by sample, so a noisy
 * neighbour on the machine weighs on all of them alike.
 */
export async function measureTtft(
  clients: PathClient[],
  samples: number,
  shape: ReplyShape,
): Promise<Map<string, TtftResult>> {
  const times = new Map(clients.map((c) => [c.name, [] as number[]]));
  const integrity = new Map(clients.map((c) => [c.name, emptyIntegrity()]));
  const prompt = promptFor(shape);
  for (let i = 0; i < samples; i++) {
    for (const client of clients) {
      const reply = await client.chat(prompt);
      check(integrity.get(client.name)!, reply, shape);
      if (reply.ttftMs !== undefined) times.get(client.name)!.push(reply.ttftMs);
    }
  }
  return new Map(
    clients.map((c) => {
      const t = times.get(c.name)!;
      return [
        c.name,
        { samples: t.length, p50Ms: percentile(t, 50), p99Ms: percentile(t, 99), integrity: integrity.get(c.name)! },
      ];
    }),
  );
}

export interface SingleStreamResult {
  tokensPerSecond: number;
  runs: number[];
  integrity: Integrity;
}

/** One long reply at a time, as fast as the path carries it: the median of `runs`. */
export async function measureSingleStream(
  client: PathClient,
  shape: ReplyShape,
  runs: number,
): Promise<SingleStreamResult> {
  const integrity = emptyIntegrity();
  const rates: number[] = [];
  for (let i = 0; i < runs; i++) {
    const reply = await client.chat(promptFor(shape));
    const tokens = check(integrity, reply, shape);
    rates.push(tokens / (reply.totalMs / 1000));
  }
  return { tokensPerSecond: percentile(rates, 50), runs: rates, integrity };
}

export interface LoadResult {
  concurrency: number;
  /** Tokens received inside the measured window, per second. */
  tokensPerSecond: number;
  /**
   * TTFT of every stream started before the window's end, the ramp-up included. A stream still
   * waiting for its first token when the run ends counts with the time it had waited (a lower bound).
   */
  ttftP50Ms: number;
  ttftP99Ms: number;
  /** CPU time of the gateway's processes (service, and Envoy on the HTTP path) per 1,000 tokens. */
  cpuMsPer1kTokens: Record<string, number>;
  /** The fake model's own CPU time per 1,000 tokens in the same window (when its pid was given). */
  modelCpuMsPer1kTokens?: number;
  /** Paced replies only: the gaps a client saw between consecutive deltas of a stream, inside the window. */
  gapP50Ms?: number;
  gapP99Ms?: number;
  integrity: Integrity;
}

/**
 * `concurrency` streams at all times, each starting a new request as its reply ends, for
 * `warmupMs` unmeasured and then `windowMs` measured. Streams still open at the end are cancelled;
 * what they had received is checked as a prefix.
 */
export async function measureLoad(
  client: PathClient,
  concurrency: number,
  shape: ReplyShape,
  timing: { warmupMs: number; windowMs: number },
  pids: Record<string, number>,
  /** The upstream's process: its CPU in the same window is what the gateway's is a multiple of. */
  modelPid?: number,
): Promise<LoadResult> {
  const prompt = promptFor(shape);
  const integrity = emptyIntegrity();
  const ttfts: number[] = [];
  const stop = new AbortController();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  let tokensInWindow = 0;
  const cpuAtStart: Record<string, number> = {};

  const gaps: number[] = [];
  const paced = shape.delayMs > 0;

  async function worker(): Promise<void> {
    while (!stop.signal.aborted) {
      const started = performance.now();
      if (started >= windowEnd) break;
      let last = NaN;
      const onDelta = (at: number) => {
        if (at >= windowStart && at <= windowEnd) gaps.push(at - last);
        last = at;
      };
      const reply = await client.chat(prompt, { signal: stop.signal, ...(paced && { onDelta }) });
      const ended = started + reply.totalMs;
      const cancelled = stop.signal.aborted && !reply.complete;
      const tokens = check(integrity, reply, shape, cancelled);
      ttfts.push(reply.ttftMs ?? reply.totalMs);
      // Tokens are credited to the window pro rata to the stream's overlap with it.
      const overlap = Math.min(ended, windowEnd) - Math.max(started, windowStart);
      if (overlap > 0 && reply.totalMs > 0) tokensInWindow += (tokens * overlap) / reply.totalMs;
    }
  }
  const workers = Array.from({ length: concurrency }, () => worker());
  await new Promise((resolve) => setTimeout(resolve, timing.warmupMs));
  for (const [name, pid] of Object.entries(pids)) cpuAtStart[name] = cpuMs(pid);
  const modelAtStart = modelPid === undefined ? 0 : cpuMs(modelPid);
  windowStart = performance.now();
  windowEnd = windowStart + timing.windowMs;
  await new Promise((resolve) => setTimeout(resolve, timing.windowMs));
  const cpu = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuMs(pid) - cpuAtStart[name]!]));
  const modelCpu = modelPid === undefined ? undefined : cpuMs(modelPid) - modelAtStart;
  stop.abort();
  await Promise.all(workers);

  const seconds = timing.windowMs / 1000;
  return {
    concurrency,
    tokensPerSecond: tokensInWindow / seconds,
    ttftP50Ms: percentile(ttfts, 50),
    ttftP99Ms: percentile(ttfts, 99),
    cpuMsPer1kTokens: Object.fromEntries(Object.entries(cpu).map(([name, ms]) => [name, (ms / tokensInWindow) * 1000])),
    ...(modelCpu !== undefined && { modelCpuMsPer1kTokens: (modelCpu / tokensInWindow) * 1000 }),
    ...(paced && {
      gapP50Ms: percentile(gaps.filter(Number.isFinite), 50),
      gapP99Ms: percentile(gaps.filter(Number.isFinite), 99),
    }),
    integrity,
  };
}

export interface RssResult {
  streams: number;
  /** Streams that had received their first token and not ended when RSS was read. */
  open: number;
  idleKiB: Record<string, number>;
  loadedKiB: Record<string, number>;
  /** (RSS with the streams open − RSS idle) / streams, summed over the path's processes. */
  perStreamKiB: number;
  /** From the first request to the last stream's first token. */
  openMs: number;
  integrity: Integrity;
}

/**
 * RSS per open stream: `streams` slow replies opened together, RSS read once every one has its
 * first token (or a minute has passed), then every reply read to its end and checked.
 */
export async function measureRss(
  client: PathClient,
  streams: number,
  shape: ReplyShape,
  pids: Record<string, number>,
  settleMs = 500,
): Promise<RssResult> {
  const idleKiB = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, rssKiB(pid)]));
  const integrity = emptyIntegrity();
  const prompt = promptFor(shape);
  const started = performance.now();
  let firsts = 0;
  let ended = 0;
  let neverOpened = 0;
  const replies = Array.from({ length: streams }, () =>
    client.chat(prompt, { onFirstToken: () => firsts++ }).then((reply) => {
      if (reply.ttftMs !== undefined) ended++;
      else neverOpened++;
      check(integrity, reply, shape);
    }),
  );
  const deadline = performance.now() + 60_000;
  while (firsts + neverOpened < streams && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50));
  const openMs = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const loadedKiB = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, rssKiB(pid)]));
  const openAtRead = firsts - ended;
  await Promise.all(replies);
  const delta = Object.keys(pids).reduce((sum, name) => sum + loadedKiB[name]! - idleKiB[name]!, 0);
  return { streams, open: openAtRead, idleKiB, loadedKiB, perStreamKiB: delta / streams, openMs, integrity };
}

export interface LeakResult {
  streams: number;
  /** The service's RSS idle before the first cycle, and idle after each cycle (KiB). */
  idleKiB: number;
  afterCycleKiB: number[];
  integrity: Integrity;
}

/**
 * The leak curve: `cycles` times, `streams` replies opened together and read to their end, then the
 * service's idle RSS once it has settled. A leak shows as RSS that keeps growing cycle after cycle;
 * a heap that has grown to its working size and stays there does not.
 */
export async function measureLeak(
  client: PathClient,
  cycles: number,
  streams: number,
  shape: ReplyShape,
  pid: number,
  settleMs = 2_000,
): Promise<LeakResult> {
  const integrity = emptyIntegrity();
  const prompt = promptFor(shape);
  const idleKiB = rssKiB(pid);
  const afterCycleKiB: number[] = [];
  for (let cycle = 0; cycle < cycles; cycle++) {
    await Promise.all(
      Array.from({ length: streams }, () => client.chat(prompt).then((reply) => check(integrity, reply, shape))),
    );
    await new Promise((resolve) => setTimeout(resolve, settleMs));
    afterCycleKiB.push(rssKiB(pid));
  }
  return { streams, idleKiB, afterCycleKiB, integrity };
}
