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
  name: string;
  figure: string;
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

/** The gap a client saw between deltas beyond the upstream's own delay, p50 and p99. */
export function addedGap(r: BenchResult, p: PathName): { p50: number; p99: number } | undefined {
  const x = r.paced?.[p];
  const delay = r.shapes.paced?.delayMs;
  if (x?.gapP50Ms === undefined || x.gapP99Ms === undefined || delay === undefined) return undefined;
  return { p50: x.gapP50Ms - delay, p99: x.gapP99Ms - delay };
}

/** Idle RSS growth over the last cycles of the leak curve (KiB), and the bound it is held to. */
export function leakGrowth(r: BenchResult): { growthKiB: number; boundKiB: number } | undefined {
  const c = r.leak?.afterCycleKiB;
  if (!c || c.length < 3) return undefined;
  const from = c.at(-2)!;
  // "Stops growing": the last cycle added at most 5% (or 4 MiB). RSS read without a collection
  // moves with V8's heap sizing; bench/leak-heap.ts reads the live heap after one.
  return { growthKiB: c.at(-1)! - from, boundKiB: Math.max(4_096, from * 0.05) };
}

/** The issue's targets (issue 10: a lean hot path), as ratios and deltas within one run. */
export function targets(r: BenchResult): Target[] {
  const list: Target[] = [];
  const base = baselineOf(r);
  const refAdded = addedTtft(r, "reference");
  for (const p of ["grpc", "http", "openai", "responses"] as const) {
    const a = addedTtft(r, p);
    const via = {
      grpc: "over gRPC",
      http: "through Envoy",
      openai: "on /v1/chat/completions",
      responses: "on /v1/responses",
    }[p];
    list.push({
      name: `added TTFT p50 ${via} ≤ 1.0 ms (vs ${base}, c=1)`,
      figure: `${fmt(a?.p50, 3)} ms`,
      met: a === undefined ? undefined : a.p50 <= 1.0,
    });
    list.push({
      name: `added TTFT p99 ${via} ≤ 3 ms`,
      figure: `${fmt(a?.p99, 3)} ms`,
      met: a === undefined ? undefined : a.p99 <= 3,
    });
    list.push({
      name: `added TTFT p50 ${via} ≤ 0.5 × the FastAPI reference's`,
      figure:
        a && refAdded
          ? `${ratio(a.p50, refAdded.p50)} (${fmt(a.p50, 2)} vs ${fmt(refAdded.p50, 2)} ms)`
          : "reference not measured",
      met: a && refAdded ? a.p50 <= 0.5 * refAdded.p50 : undefined,
    });
  }
  for (const p of ["grpc", "http"] as const) {
    const tps = r.single[p]?.tokensPerSecond;
    const raw = r.single.raw?.tokensPerSecond;
    const direct = r.single.direct?.tokensPerSecond;
    list.push({
      name: `single-stream burst ${p === "grpc" ? "over gRPC" : "through Envoy"} ≥ 0.5 × the raw reader`,
      figure: `${ratio(tps, raw)} raw (${ratio(tps, direct)} direct SDK)`,
      met: tps === undefined || raw === undefined ? undefined : tps / raw >= 0.5,
    });
  }
  for (const p of ["grpc", "http", "openai", "responses"] as const) {
    const cpu = r.paced?.[p]?.cpuMsPer1kTokens.service;
    const n = r.paced?.[p]?.concurrency;
    list.push({
      name: `service CPU per 1,000 tokens ≤ 8 ms, ${fmt(n)} streams of deltas ${r.shapes.paced?.delayMs ?? "?"} ms apart — ${p}`,
      figure: `${fmt(cpu, 2)} ms`,
      met: cpu === undefined || n !== 100 ? undefined : cpu <= 8,
    });
  }
  for (const p of ["grpc", "http"] as const) {
    const g = addedGap(r, p);
    const n = r.paced?.[p]?.concurrency;
    const rawGap = addedGap(r, "raw");
    list.push({
      name: `added inter-token gap p99 ≤ 1 ms at ${fmt(n)} streams — ${p}`,
      figure: g
        ? `${fmt(g.p99, 2)} ms (p50 ${fmt(g.p50, 2)} ms; the raw reader's own: p99 ${fmt(rawGap?.p99, 2)} ms)`
        : "not measured",
      met: g === undefined || n !== 100 ? undefined : g.p99 <= 1,
    });
  }
  const big = r.rss.grpc?.find((x) => x.streams >= 10_000);
  const anyRss = big ?? r.rss.grpc?.at(-1);
  const rssIntegrity = anyRss?.integrity;
  const clean =
    rssIntegrity && rssIntegrity.lost + rssIntegrity.duplicated + rssIntegrity.corrupt + rssIntegrity.errors === 0;
  list.push({
    name: "RSS per open stream ≤ 48 KiB at 10,000 open streams, 0 lost",
    figure: anyRss
      ? `${fmt(anyRss.perStreamKiB, 1)} KiB/stream at ${fmt(anyRss.streams)} streams (${fmt(anyRss.open)} open at the reading), ${rssIntegrity!.lost} lost, ${rssIntegrity!.errors} errors`
      : "not measured",
    met: big ? big.perStreamKiB <= 48 && big.open === big.streams && !!clean : undefined,
  });
  const leak = leakGrowth(r);
  list.push({
    name: `no leak: idle RSS stops growing over five cycles of 5,000 streams`,
    figure: r.leak
      ? `${leakCurve(r)}; growth over the last cycle ${fmt((leak?.growthKiB ?? NaN) / 1024, 1)} MiB (bound ${fmt((leak?.boundKiB ?? NaN) / 1024, 1)} MiB)`
      : "not measured",
    met:
      r.leak && leak && r.leak.streams >= 5_000 && r.leak.afterCycleKiB.length >= 5
        ? leak.growthKiB <= leak.boundKiB
        : undefined,
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
            Object.entries(r.paced?.[p]?.cpuMsPer1kTokens ?? {})
              .map(([k, v]) => (p === "http" || p === "openai" || p === "responses" ? `${k} ${fmt(v, 1)}` : fmt(v, 2)))
              .join(" + ") || "–",
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
      `Paced: ${fmt(pacedN)} concurrent streams of ${s.tokens} deltas ${s.delayMs} ms apart (as a model writes them); CPU of the gateway's processes per 1,000 tokens, ` +
        `and the gap each client saw between two deltas of a stream minus the upstream's ${s.delayMs} ms (the raw reader's shows the upstream's own timer jitter).`,
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
  lines.push("Targets:", "");
  for (const t of targets(r))
    lines.push(
      `- ${t.met === undefined ? "not measured in this mode" : t.met ? "**met**" : "**missed**"}: ${t.name} — ${t.figure}`,
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
