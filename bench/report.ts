// Turns a run's JSON into the markdown table (with ratios against direct and against the reference)
// and the throughput chart.
import type { BenchResult } from "./run.js";
import type { PathName } from "./clients.js";
import type { Integrity } from "./measure.js";
import type { SlowReadersResult } from "./slow.js";

const LABEL: Record<PathName, string> = {
  raw: "raw (node:http reader → upstream)",
  direct: "direct (openai SDK → upstream)",
  grpc: "gRPC (grpc-js → service)",
  "grpc-conversation": "gRPC on a stored conversation (SQLite)",
  "grpc-resumable": "gRPC, resumable (grpc-js → service, events kept)",
  http: "HTTP (→ Envoy → service)",
  openai: "OpenAI API (node:http reader → Envoy /v1/chat/completions → service)",
  responses: "Responses API (node:http reader → Envoy /v1/responses → service)",
  reference: "reference (FastAPI + uvicorn)",
};

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || !Number.isFinite(n)
    ? "–"
    : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ratio = (a: number | undefined, b: number | undefined, digits = 2): string =>
  a === undefined || b === undefined || !Number.isFinite(a / b) || b === 0 ? "–" : `${fmt(a / b, digits)}×`;

export interface Target {
  /** The issue's numbered target (issue 24: 1 paced CPU, 2 gaps, 3 TTFT, 4 memory, 5 no regression). */
  target: 1 | 2 | 3 | 4 | 5;
  name: string;
  figure: string;
  /** undefined: not measured at the issue's scale in this run (a smaller mode, or a section left out). */
  met: boolean | undefined;
}

function integrityOf(r: BenchResult, path: PathName): Integrity {
  const all: Integrity[] = [
    ...(r.ttft[path] ? [r.ttft[path].integrity] : []),
    ...(r.single[path] ? [r.single[path].integrity] : []),
    ...(r.load[path] ?? []).map((l) => l.integrity),
    ...(r.rss[path] ?? []).map((l) => l.integrity),
    ...(r.paced?.[path] ? [r.paced[path].integrity] : []),
    ...(path === "grpc" && r.leak ? [r.leak.integrity] : []),
  ];
  return all.reduce(
    (sum, i) => ({
      replies: sum.replies + i.replies,
      complete: sum.complete + i.complete,
      tokens: sum.tokens + i.tokens,
      errors: sum.errors + i.errors,
      lost: sum.lost + i.lost,
      duplicated: sum.duplicated + i.duplicated,
      corrupt: sum.corrupt + i.corrupt,
      ...((sum.firstError ?? i.firstError) !== undefined && { firstError: sum.firstError ?? i.firstError }),
    }),
    { replies: 0, complete: 0, tokens: 0, errors: 0, lost: 0, duplicated: 0, corrupt: 0 } as Integrity,
  );
}

/** The path added times are measured against: the raw reader when it ran, else the SDK reading directly. */
function baselineOf(r: BenchResult): PathName {
  return r.ttft.raw ? "raw" : "direct";
}

/** A path's TTFT p50 and p99 minus the baseline's, measured in the same run. */
export function addedTtft(r: BenchResult, p: PathName): { p50: number; p99: number } | undefined {
  const t = r.ttft[p];
  const b = r.ttft[baselineOf(r)];
  return t && b ? { p50: t.p50Ms - b.p50Ms, p99: t.p99Ms - b.p99Ms } : undefined;
}

/**
 * The gap a client saw between deltas beyond what the raw reader saw in the same run, p50 and p99:
 * the raw reader's own gaps are the upstream's 20 ms plus its timer's and the machine's jitter, which
 * no gateway can take away. Without a raw run, beyond the upstream's delay.
 */
export function addedGap(r: BenchResult, p: PathName): { p50: number; p99: number } | undefined {
  const x = r.paced?.[p];
  const raw = r.paced?.raw;
  const delay = r.shapes.paced?.delayMs;
  if (x?.gapP50Ms === undefined || x.gapP99Ms === undefined || delay === undefined) return undefined;
  if (p === "raw" || raw?.gapP50Ms === undefined || raw.gapP99Ms === undefined)
    return { p50: x.gapP50Ms - delay, p99: x.gapP99Ms - delay };
  return { p50: x.gapP50Ms - raw.gapP50Ms, p99: x.gapP99Ms - raw.gapP99Ms };
}

/** The gateway paths the targets hold for, and how the list names them. */
const GATEWAY_PATHS = ["grpc", "http", "openai", "responses"] as const;
const VIA: Record<(typeof GATEWAY_PATHS)[number], string> = {
  grpc: "gRPC",
  http: "HTTP through Envoy",
  openai: "/v1/chat/completions",
  responses: "/v1/responses",
};

/**
 * Burst throughput against the `openai` SDK reading the model directly, in the run before issue 24
 * (the quiet `--full` run of 2026-11-27, commit 83f060b): single stream, then 1, 10, 100 and 1,000
 * concurrent streams. "No regression" is each ratio of a run at least REGRESSION_ALLOWANCE of these:
 * absolute tokens/s differ from machine to machine and hour to hour, a ratio to the SDK in the same
 * run much less.
 */
export const BURST_BEFORE: Record<"grpc" | "http", { single: number; load: Record<number, number> }> = {
  grpc: { single: 1.95, load: { 1: 1.07, 10: 1.36, 100: 1.85, 1000: 2.09 } },
  http: { single: 2.38, load: { 1: 1.04, 10: 1.14, 100: 1.72, 1000: 1.55 } },
};
/** How far below the ratios before a run may fall and still count as no regression (run-to-run noise). */
export const REGRESSION_ALLOWANCE = 0.85;

const MIB = 1024;

/**
 * Issue 24's targets, each a ratio or a difference within this run, with the figure it was judged
 * on. A target is `met: undefined` when the run did not measure it at the issue's scale (smaller
 * modes, sections left out), but its figure is still given.
 */
export function targets(r: BenchResult): Target[] {
  const list: Target[] = [];
  const pacedN = Object.values(r.paced ?? {})[0]?.concurrency;
  const atScale = pacedN === 100 && r.shapes.paced?.tokens === 64 && r.shapes.paced.delayMs === 20;

  // 1. Paced CPU of the gateway's processes against the fake model's own, in the same window.
  for (const p of GATEWAY_PATHS) {
    const x = r.paced?.[p];
    if (!x) continue;
    const gateway = Object.values(x.cpuMsPer1kTokens).reduce((a, b) => a + b, 0);
    const model = x.modelCpuMsPer1kTokens;
    const bound = p === "grpc" ? 2 : 2.5;
    const parts = Object.entries(x.cpuMsPer1kTokens)
      .map(([k, v]) => `${k} ${fmt(v, 1)}`)
      .join(" + ");
    list.push({
      target: 1,
      name: `paced CPU per 1,000 tokens on ${VIA[p]} ≤ ${bound}× the fake model's`,
      figure:
        model === undefined
          ? `${parts} ms (the model's CPU not measured)`
          : `${ratio(gateway, model)} (${parts} ms vs the model's ${fmt(model, 1)} ms)`,
      met: model === undefined || !atScale ? undefined : gateway <= bound * model,
    });
  }

  // 2. Added inter-token gap p99, the raw reader's own subtracted.
  for (const p of GATEWAY_PATHS) {
    const g = addedGap(r, p);
    if (!r.paced?.[p]) continue;
    list.push({
      target: 2,
      name: `added inter-token gap p99 on ${VIA[p]} ≤ 5 ms at 100 paced streams`,
      figure: g
        ? `${fmt(g.p99, 2)} ms (p50 ${fmt(g.p50, 2)} ms; the raw reader's own gap p99 ${fmt(r.paced?.raw?.gapP99Ms, 2)} ms${r.paced?.raw ? "" : ", not measured: against the upstream's delay"})`
        : "not measured",
      met: g === undefined || !atScale || !r.paced?.raw ? undefined : g.p99 <= 5,
    });
  }

  // 3. Added TTFT at concurrency 1.
  const refAdded = addedTtft(r, "reference");
  for (const p of ["grpc", "http"] as const) {
    const a = addedTtft(r, p);
    if (!a) continue;
    const enough = (r.ttft[p]?.samples ?? 0) >= 100;
    list.push({
      target: 3,
      name: `added TTFT p50 on ${VIA[p]} ≤ 1.0 ms (vs ${baselineOf(r)}, c=1)`,
      figure: `${fmt(a.p50, 2)} ms`,
      met: enough ? a.p50 <= 1.0 : undefined,
    });
    list.push({
      target: 3,
      name: `added TTFT p50 on ${VIA[p]} ≤ 0.3× the FastAPI reference's`,
      figure: refAdded
        ? `${ratio(a.p50, refAdded.p50)} (${fmt(a.p50, 2)} vs ${fmt(refAdded.p50, 2)} ms)`
        : "reference not measured",
      met: refAdded && enough ? a.p50 <= 0.3 * refAdded.p50 : undefined,
    });
    list.push({
      target: 3,
      name: `added TTFT p99 on ${VIA[p]} ≤ 3 ms`,
      figure: `${fmt(a.p99, 2)} ms`,
      met: enough ? a.p99 <= 3 : undefined,
    });
  }

  // 4. Memory: the leak curve, stalled readers, open streams.
  const leak = r.leak;
  if (leak) {
    const first = leak.afterCycleKiB[0];
    const last = leak.afterCycleKiB.at(-1);
    const full = leak.streams >= 5_000 && leak.afterCycleKiB.length >= 5;
    list.push({
      target: 4,
      name: "the service's idle RSS after five cycles of 5,000 streams ≤ 1.5× after the first",
      figure: `${ratio(last, first)} (${leakCurve(r)})`,
      met: full && first !== undefined && last !== undefined ? last <= 1.5 * first : undefined,
    });
    list.push({
      target: 4,
      name: "the service's idle RSS after five cycles of 5,000 streams ≤ 300 MiB",
      figure: `${fmt((last ?? NaN) / MIB, 0)} MiB`,
      met: full && last !== undefined ? last <= 300 * MIB : undefined,
    });
  } else {
    list.push({
      target: 4,
      name: "the service's idle RSS after five cycles of 5,000 streams",
      figure: "not measured",
      met: undefined,
    });
  }
  if (!Object.keys(r.slow ?? {}).length)
    list.push({
      target: 4,
      name: "service RSS per stalled slow reader ≤ 256 KiB",
      figure: "not measured",
      met: undefined,
    });
  for (const [p, x] of Object.entries(r.slow ?? {}) as [PathName, SlowReadersResult][]) {
    const kib = x.perStreamKiB.service;
    list.push({
      target: 4,
      name: `service RSS per stalled slow reader on ${VIA[p as "grpc" | "http"] ?? p} ≤ 256 KiB`,
      figure: `${fmt(kib, 1)} KiB (${fmt(x.streams)} stalled readers)`,
      met: kib === undefined || x.streams < 1_000 ? undefined : kib <= 256,
    });
  }
  const big = r.rss.grpc?.find((x) => x.streams >= 10_000);
  const anyRss = big ?? r.rss.grpc?.at(-1);
  if (anyRss) {
    list.push({
      target: 4,
      name: "service RSS per open stream on gRPC ≤ 48 KiB at 10,000 open streams",
      figure: `${fmt(anyRss.perStreamKiB, 1)} KiB at ${fmt(anyRss.streams)} streams (${fmt(anyRss.open)} open at the reading)`,
      met: big ? big.perStreamKiB <= 48 && big.open === big.streams : undefined,
    });
  }

  // 5. No regression: burst throughput against the SDK, 10,000 open streams, every token in order.
  for (const p of ["grpc", "http"] as const) {
    const before = BURST_BEFORE[p];
    const direct = r.single.direct?.tokensPerSecond;
    const single = r.single[p]?.tokensPerSecond;
    const ratios: { what: string; now: number; was: number }[] = [];
    if (single !== undefined && direct !== undefined)
      ratios.push({ what: "single", now: single / direct, was: before.single });
    for (const l of r.load[p] ?? []) {
      const d = r.load.direct?.find((x) => x.concurrency === l.concurrency)?.tokensPerSecond;
      const was = before.load[l.concurrency];
      if (d !== undefined && was !== undefined)
        ratios.push({ what: `@${fmt(l.concurrency)}`, now: l.tokensPerSecond / d, was });
    }
    if (!ratios.length) continue;
    const complete = ratios.length === 1 + Object.keys(before.load).length;
    list.push({
      target: 5,
      name: `burst throughput on ${VIA[p]} against the direct SDK ≥ ${REGRESSION_ALLOWANCE}× the ratio before issue 24`,
      figure: ratios.map((x) => `${x.what} ${fmt(x.now, 2)}× (before ${fmt(x.was, 2)}×)`).join(", "),
      met: complete && r.mode !== "smoke" ? ratios.every((x) => x.now >= REGRESSION_ALLOWANCE * x.was) : undefined,
    });
  }
  for (const p of ["grpc", "http"] as const) {
    const x = r.rss[p]?.find((y) => y.streams >= 10_000);
    if (!x) continue;
    list.push({
      target: 5,
      name: `10,000 streams open at once on ${VIA[p]}, each read to its end`,
      figure: `${fmt(x.open)} open at the reading, ${fmt(x.integrity.complete)} complete`,
      met: x.open === x.streams && x.integrity.complete === x.streams,
    });
  }
  const bad = r.paths
    .filter((p) => p !== "reference")
    .map((p) => [p, integrityOf(r, p)] as const)
    .filter(([, i]) => i.lost + i.duplicated + i.corrupt + i.errors > 0);
  list.push({
    target: 5,
    name: "0 tokens lost, reordered or duplicated, 0 errors, on every path and in every section",
    figure: bad.length
      ? bad
          .map(
            ([p, i]) =>
              `${p}: ${i.lost} lost, ${i.duplicated} duplicated, ${i.corrupt} garbled or reordered, ${i.errors} errors`,
          )
          .join("; ")
      : `none in ${fmt(r.paths.filter((p) => p !== "reference").reduce((n, p) => n + integrityOf(r, p).replies, 0))} replies`,
    met: bad.length === 0,
  });
  return list;
}

function leakCurve(r: BenchResult): string {
  const l = r.leak!;
  return `${fmt(l.afterCycleKiB.length)} × ${fmt(l.streams)} streams, idle RSS MiB ${fmt(l.idleKiB / 1024, 0)} → ${l.afterCycleKiB.map((k) => fmt(k / 1024, 0)).join(" → ")}`;
}

export function renderMarkdown(r: BenchResult): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(`### Bench run ${r.date.slice(0, 16).replace("T", " ")} UTC (${r.mode})`, "");
  lines.push(
    `Machine: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB; Node ${m.node}, Envoy ${m.envoy}, ${m.python}; commit ${m.commit}. ` +
      `All processes on loopback, sharing the cores with each other (and with whatever else runs on the machine).`,
    "",
  );
  const s = r.shapes;
  lines.push(
    `Replies: TTFT ${s.ttft.tokens} tokens; single stream ${fmt(s.single.tokens)} tokens; load ${s.load.tokens} tokens per reply, ` +
      `${s.load.size}-character tokens, no delay between tokens (the upstream writes as fast as the socket takes them).`,
    "",
  );

  const levels = [...new Set(Object.values(r.load).flatMap((l) => l.map((x) => x.concurrency)))].sort((a, b) => a - b);
  const rssLevels = [...new Set(Object.values(r.rss).flatMap((l) => l.map((x) => x.streams)))].sort((a, b) => a - b);
  const cpuLevel = levels.includes(100) ? 100 : levels.at(-1);
  const pacedN = Object.values(r.paced ?? {})[0]?.concurrency;
  const head = [
    "path",
    "TTFT p50 / p99 (ms)",
    `added TTFT p50 / p99 (vs ${baselineOf(r)})`,
    "single-stream tokens/s (vs raw, vs direct)",
    ...levels.map((c) => `tokens/s @${fmt(c)}`),
    ...(levels.length ? [`CPU ms / 1k tokens @${fmt(cpuLevel)}`] : []),
    ...(pacedN !== undefined
      ? [`CPU ms / 1k tokens, paced @${fmt(pacedN)}`, `added gap p50 / p99, paced @${fmt(pacedN)} (ms)`]
      : []),
    ...rssLevels.map((n) => `RSS / stream @${fmt(n)}`),
    "replies · lost · dup · errors",
  ];
  lines.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
  const baseline = baselineOf(r);
  const ref = r.load.reference;
  for (const p of r.paths) {
    const t = r.ttft[p];
    const single = r.single[p]?.tokensPerSecond;
    const load = r.load[p] ?? [];
    const cpu = load.find((l) => l.concurrency === cpuLevel)?.cpuMsPer1kTokens ?? {};
    const cpuText = Object.keys(cpu).length
      ? Object.entries(cpu)
          .map(([k, v]) => (Object.keys(cpu).length > 1 ? `${k} ${fmt(v, 1)}` : fmt(v, 1)))
          .join(" + ")
      : "–";
    const integrity = integrityOf(r, p);
    const cells = [
      LABEL[p],
      t ? `${fmt(t.p50Ms, 2)} / ${fmt(t.p99Ms, 2)}` : "–",
      p === baseline ? "(baseline)" : t ? `${fmt(addedTtft(r, p)?.p50, 2)} / ${fmt(addedTtft(r, p)?.p99, 2)} ms` : "–",
      `${fmt(single)}${p === "raw" ? "" : ` (${[r.single.raw ? ratio(single, r.single.raw.tokensPerSecond) : "", p !== "direct" ? ratio(single, r.single.direct?.tokensPerSecond) : ""].filter(Boolean).join(", ")})`}`,
      ...levels.map((c) => {
        const here = load.find((l) => l.concurrency === c)?.tokensPerSecond;
        const d = r.load.direct?.find((l) => l.concurrency === c)?.tokensPerSecond;
        const rr = ref?.find((l) => l.concurrency === c)?.tokensPerSecond;
        const notes = [
          p !== "direct" && d ? `${ratio(here, d)} direct` : "",
          p !== "reference" && p !== "direct" && rr ? `${ratio(here, rr, 1)} ref` : "",
        ].filter(Boolean);
        return `${fmt(here)}${notes.length ? ` (${notes.join(", ")})` : ""}`;
      }),
      ...(levels.length ? [cpuText] : []),
      ...(pacedN !== undefined
        ? [
            [
              Object.entries(r.paced?.[p]?.cpuMsPer1kTokens ?? {})
                .map(([k, v]) =>
                  p === "http" || p === "openai" || p === "responses" ? `${k} ${fmt(v, 1)}` : fmt(v, 2),
                )
                .join(" + "),
              r.paced?.[p]?.modelCpuMsPer1kTokens === undefined
                ? ""
                : `(model ${fmt(r.paced[p].modelCpuMsPer1kTokens, 1)})`,
            ]
              .filter(Boolean)
              .join(" ") || "–",
            addedGap(r, p) ? `${fmt(addedGap(r, p)!.p50, 2)} / ${fmt(addedGap(r, p)!.p99, 2)}` : "–",
          ]
        : []),
      ...rssLevels.map((n) => {
        const x = r.rss[p]?.find((y) => y.streams === n);
        return x ? `${fmt(x.perStreamKiB, 1)} KiB${x.open < x.streams ? ` (${fmt(x.open)} open)` : ""}` : "–";
      }),
      `${fmt(integrity.replies)} · ${integrity.lost} · ${integrity.duplicated} · ${integrity.errors}${integrity.corrupt ? ` · ${integrity.corrupt} corrupt` : ""}`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  if (levels.length) {
    lines.push(
      "TTFT under load, p50 / p99 (ms): every stream started before the window's end, the ramp-up included:",
      "",
    );
    lines.push(
      `| path | ${levels.map((c) => `@${fmt(c)}`).join(" | ")} |`,
      `|---|${levels.map(() => "---").join("|")}|`,
    );
    for (const p of r.paths) {
      lines.push(
        `| ${p} | ${levels
          .map((c) => {
            const x = r.load[p]?.find((l) => l.concurrency === c);
            return x ? `${fmt(x.ttftP50Ms, 1)} / ${fmt(x.ttftP99Ms, 1)}` : "–";
          })
          .join(" | ")} |`,
      );
    }
    lines.push("");
  }
  if (r.paced && r.shapes.paced) {
    const s = r.shapes.paced;
    lines.push(
      `Paced: ${fmt(pacedN)} concurrent streams of ${s.tokens} deltas ${s.delayMs} ms apart (as a model writes them); CPU of the gateway's processes per 1,000 tokens (and, in brackets, the fake model's own in the same window), ` +
        `and the gap each client saw between two deltas of a stream minus the raw reader's at the same percentile (the raw row: minus the upstream's ${s.delayMs} ms, the upstream's own timer jitter and the machine's).`,
      "",
    );
  }
  if (r.leak) {
    lines.push(`Leak curve (gRPC, one service process): ${leakCurve(r)} (idle before, then 2 s after each cycle).`, "");
  }
  if (r.floor) {
    lines.push(
      `Transport floor, same run: first byte between two Node processes ${fmt(r.floor.http2P50Ms, 2)} ms over raw node:http2, ` +
        `${fmt(r.floor.grpcP50Ms, 2)} ms for a bare grpc-js server-streaming call (p50; the handler writes at once).`,
      "",
    );
  }
  const slow = Object.entries(r.slow ?? {}) as [PathName, SlowReadersResult][];
  if (slow.length) {
    const shape = r.shapes.slow;
    lines.push(
      `Slow readers: clients that ask for a ${shape ? `${fmt(shape.tokens)}-token reply of ${shape.size}-character tokens` : "long reply"} and read nothing, ` +
        "fresh processes per path. The upstream's bytes per stream are read once its writes have stopped growing; " +
        '"in the kernel" is what the socket queues between the upstream and the service hold (both ends); the rest has gone past them, into the service, Envoy and the clients\' buffers.',
      "",
    );
    const mib = (kib: number | undefined) => fmt((kib ?? NaN) / 1024, 0);
    const rssCell = (x: SlowReadersResult, name: string) =>
      x.rssKiB.before[name] === undefined
        ? "–"
        : `${mib(x.rssKiB.before[name])} → ${mib(x.rssKiB.during[name])} → ${mib(x.rssKiB.after[name])}`;
    lines.push(
      "| path | clients | upstream bytes / stream (p50 · max) | in the kernel / stream | past the upstream's socket / stream | upstream blocked · finished | RSS service, MiB (before → stalled → after) | RSS Envoy, MiB | RSS / stalled stream | a new request meanwhile |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const [p, x] of slow) {
      const kernel = x.kernelUpstreamBytes / x.streams;
      const perStream = Object.entries(x.perStreamKiB)
        .map(([k, v]) => `${k} ${fmt(v, 1)} KiB`)
        .join(" + ");
      lines.push(
        `| ${p} | ${fmt(x.streams)} (${fmt(x.started)} started) | ${fmt(x.upstreamBytesP50 / 1024)} · ${fmt(x.upstreamBytesMax / 1024)} KiB | ${fmt(kernel / 1024)} KiB | ` +
          `${fmt(Math.max(0, x.upstreamBytesP50 - kernel) / 1024)} KiB | ${fmt(x.blocked)} · ${fmt(x.finished)} | ${rssCell(x, "service")} | ${rssCell(x, "envoy")} | ${perStream} | ` +
          `${x.probe.ok ? `answered in ${fmt(x.probe.ms, 0)} ms` : `failed: ${x.probe.error ?? "?"}`} |`,
      );
    }
    lines.push("");
  }
  lines.push("Targets (issue 24; ratios and differences within this run):", "");
  for (const t of r.targets ?? targets(r))
    lines.push(
      `- ${t.target}. ${t.met === undefined ? "not measured at the issue's scale" : t.met ? "**met**" : "**missed**"}: ${t.name} — ${t.figure}`,
    );
  const errors = r.paths.map((p) => [p, integrityOf(r, p).firstError] as const).filter(([, e]) => e);
  if (errors.length) {
    lines.push("", "First error per path:", "");
    for (const [p, e] of errors) lines.push(`- ${p}: \`${e}\``);
  }
  lines.push("");
  return lines.join("\n");
}

const COLORS: Record<PathName, string> = {
  raw: "#9467bd",
  direct: "#555555",
  grpc: "#1f77b4",
  "grpc-conversation": "#8c564b",
  "grpc-resumable": "#aec7e8",
  http: "#2ca02c",
  openai: "#ff7f0e",
  responses: "#17becf",
  reference: "#d62728",
};

/** Tokens/s against concurrency, one line per path: a small hand-written SVG. */
export function renderChart(r: BenchResult): string {
  const W = 720,
    H = 420,
    left = 80,
    right = 220,
    top = 40,
    bottom = 60;
  const series = r.paths
    .map((p) => ({ p, points: (r.load[p] ?? []).map((l) => [l.concurrency, l.tokensPerSecond] as const) }))
    .filter((s) => s.points.length);
  const levels = [...new Set(series.flatMap((s) => s.points.map(([c]) => c)))].sort((a, b) => a - b);
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map(([, y]) => y)));
  const step = niceStep(maxY / 5);
  const yMax = Math.ceil(maxY / step) * step;
  const x = (c: number) =>
    left + (levels.length < 2 ? 0 : (levels.indexOf(c) / (levels.length - 1)) * (W - left - right));
  const y = (v: number) => top + (1 - v / yMax) * (H - top - bottom);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${left}" y="22" font-size="14" font-weight="bold">Aggregate tokens/s against concurrent streams (${r.date.slice(0, 10)}, ${r.machine.cpus} cores)</text>`,
  );
  for (let v = 0; v <= yMax; v += step) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const c of levels) {
    out.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${top}" y2="${H - bottom}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x(c)}" y="${H - bottom + 18}" text-anchor="middle">${fmt(c)}</text>`);
  }
  out.push(
    `<text x="${(left + W - right) / 2}" y="${H - 18}" text-anchor="middle">concurrent streams (log scale)</text>`,
  );
  out.push(
    `<text transform="translate(18 ${(top + H - bottom) / 2}) rotate(-90)" text-anchor="middle">tokens/s</text>`,
  );
  series.forEach((s, i) => {
    const d = s.points.map(([c, v], j) => `${j ? "L" : "M"}${x(c).toFixed(1)} ${y(v).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[s.p]}" stroke-width="2.5"/>`);
    for (const [c, v] of s.points)
      out.push(`<circle cx="${x(c).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${COLORS[s.p]}"/>`);
    const ly = top + 10 + i * 22;
    out.push(
      `<line x1="${W - right + 16}" x2="${W - right + 40}" y1="${ly}" y2="${ly}" stroke="${COLORS[s.p]}" stroke-width="2.5"/>`,
    );
    out.push(`<text x="${W - right + 46}" y="${ly + 4}">${s.p}</text>`);
  });
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}

function niceStep(raw: number): number {
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}
