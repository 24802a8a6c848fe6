// Turns a run's JSON into the markdown table (with ratios against direct and against the reference)
// and the throughput chart.
import type { BenchResult } from "./run.js";
import type { PathName } from "./clients.js";
import type { Integrity } from "./measure.js";
import type { SlowReadersResult } from "./slow.js";

const LABEL: Record<PathName, string> = {
  direct: "direct (openai SDK → upstream)",
  grpc: "gRPC (grpc-js → service)",
  http: "HTTP (→ Envoy → service)",
  reference: "reference (FastAPI + uvicorn)",
};

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || !Number.isFinite(n) ? "–" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
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

export function targets(r: BenchResult): Target[] {
  const added = (p: PathName) => (r.ttft[p] && r.ttft.direct ? r.ttft[p].p50Ms - r.ttft.direct.p50Ms : undefined);
  const list: Target[] = [];
  const grpcAdded = added("grpc");
  list.push({ name: "added TTFT p50 over gRPC ≤ 0.5 ms", figure: `${fmt(grpcAdded, 3)} ms`, met: grpcAdded === undefined ? undefined : grpcAdded <= 0.5 });
  const httpAdded = added("http");
  list.push({ name: "added TTFT p50 through Envoy ≤ 1.5 ms", figure: `${fmt(httpAdded, 3)} ms`, met: httpAdded === undefined ? undefined : httpAdded <= 1.5 });
  const single = r.single.grpc && r.single.direct ? r.single.grpc.tokensPerSecond / r.single.direct.tokensPerSecond : undefined;
  list.push({ name: "single-stream tokens/s over gRPC ≥ 0.8 × direct", figure: `${fmt(single, 2)}×`, met: single === undefined ? undefined : single >= 0.8 });
  const big = r.rss.grpc?.find((x) => x.streams >= 10_000);
  const anyRss = big ?? r.rss.grpc?.at(-1);
  const rssIntegrity = anyRss?.integrity;
  const clean = rssIntegrity && rssIntegrity.lost + rssIntegrity.duplicated + rssIntegrity.corrupt + rssIntegrity.errors === 0;
  list.push({
    name: "10,000 open streams in one process, ≤ 16 KiB RSS each, 0 tokens lost",
    figure: anyRss
      ? `${fmt(anyRss.perStreamKiB, 1)} KiB/stream at ${fmt(anyRss.streams)} streams (${fmt(anyRss.open)} open at the reading), ${rssIntegrity!.lost} lost, ${rssIntegrity!.errors} errors`
      : "not measured",
    met: big ? big.perStreamKiB <= 16 && big.open === big.streams && !!clean : undefined,
  });
  for (const p of ["http", "grpc"] as const) {
    const ours = r.load[p]?.at(-1);
    const ref = r.load.reference?.at(-1);
    if (!ours || !ref) continue;
    const x = ours.tokensPerSecond / ref.tokensPerSecond;
    list.push({
      name: `aggregate tokens/s ≥ 5 × reference at saturation (${fmt(ours.concurrency)} streams), lower p99 TTFT — ${p}`,
      figure: `${fmt(x, 1)}× (${fmt(ours.tokensPerSecond)} vs ${fmt(ref.tokensPerSecond)} tokens/s); p99 TTFT ${fmt(ours.ttftP99Ms, 1)} vs ${fmt(ref.ttftP99Ms, 1)} ms`,
      met: x >= 5 && ours.ttftP99Ms < ref.ttftP99Ms,
    });
  }
  return list;
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
  const head = [
    "path",
    "TTFT p50 / p99 (ms)",
    "added TTFT p50",
    "single-stream tokens/s",
    ...levels.map((c) => `tokens/s @${fmt(c)}`),
    `CPU ms / 1k tokens @${fmt(cpuLevel)}`,
    ...rssLevels.map((n) => `RSS / stream @${fmt(n)}`),
    "replies · lost · dup · errors",
  ];
  lines.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
  const direct = r.ttft.direct;
  const ref = r.load.reference;
  for (const p of r.paths) {
    const t = r.ttft[p];
    const single = r.single[p]?.tokensPerSecond;
    const load = r.load[p] ?? [];
    const cpu = load.find((l) => l.concurrency === cpuLevel)?.cpuMsPer1kTokens ?? {};
    const cpuText = Object.keys(cpu).length
      ? Object.entries(cpu).map(([k, v]) => (Object.keys(cpu).length > 1 ? `${k} ${fmt(v, 1)}` : fmt(v, 1))).join(" + ")
      : "–";
    const integrity = integrityOf(r, p);
    const cells = [
      LABEL[p],
      t ? `${fmt(t.p50Ms, 2)} / ${fmt(t.p99Ms, 2)}` : "–",
      p === "direct" ? "(baseline)" : t && direct ? `${fmt(t.p50Ms - direct.p50Ms, 2)} ms` : "–",
      `${fmt(single)}${p === "direct" ? "" : ` (${ratio(single, r.single.direct?.tokensPerSecond)})`}`,
      ...levels.map((c) => {
        const here = load.find((l) => l.concurrency === c)?.tokensPerSecond;
        const d = r.load.direct?.find((l) => l.concurrency === c)?.tokensPerSecond;
        const rr = ref?.find((l) => l.concurrency === c)?.tokensPerSecond;
        const notes = [p !== "direct" && d ? `${ratio(here, d)} direct` : "", p !== "reference" && p !== "direct" && rr ? `${ratio(here, rr, 1)} ref` : ""].filter(Boolean);
        return `${fmt(here)}${notes.length ? ` (${notes.join(", ")})` : ""}`;
      }),
      cpuText,
      ...rssLevels.map((n) => {
        const x = r.rss[p]?.find((y) => y.streams === n);
        return x ? `${fmt(x.perStreamKiB, 1)} KiB${x.open < x.streams ? ` (${fmt(x.open)} open)` : ""}` : "–";
      }),
      `${fmt(integrity.replies)} · ${integrity.lost} · ${integrity.duplicated} · ${integrity.errors}${integrity.corrupt ? ` · ${integrity.corrupt} corrupt` : ""}`,
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  lines.push("TTFT under load, p50 / p99 (ms): every stream started before the window's end, the ramp-up included:", "");
  lines.push(`| path | ${levels.map((c) => `@${fmt(c)}`).join(" | ")} |`, `|---|${levels.map(() => "---").join("|")}|`);
  for (const p of r.paths) {
    lines.push(`| ${p} | ${levels.map((c) => { const x = r.load[p]?.find((l) => l.concurrency === c); return x ? `${fmt(x.ttftP50Ms, 1)} / ${fmt(x.ttftP99Ms, 1)}` : "–"; }).join(" | ")} |`);
  }
  lines.push("");
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
        "\"in the kernel\" is what the socket queues between the upstream and the service hold (both ends); the rest has gone past them, into the service, Envoy and the clients' buffers.",
      "",
    );
    const mib = (kib: number | undefined) => fmt((kib ?? NaN) / 1024, 0);
    const rssCell = (x: SlowReadersResult, name: string) =>
      x.rssKiB.before[name] === undefined ? "–" : `${mib(x.rssKiB.before[name])} → ${mib(x.rssKiB.during[name])} → ${mib(x.rssKiB.after[name])}`;
    lines.push(
      "| path | clients | upstream bytes / stream (p50 · max) | in the kernel / stream | past the upstream's socket / stream | upstream blocked · finished | RSS service, MiB (before → stalled → after) | RSS Envoy, MiB | RSS / stalled stream | a new request meanwhile |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const [p, x] of slow) {
      const kernel = x.kernelUpstreamBytes / x.streams;
      const perStream = Object.entries(x.perStreamKiB).map(([k, v]) => `${k} ${fmt(v, 1)} KiB`).join(" + ");
      lines.push(
        `| ${p} | ${fmt(x.streams)} (${fmt(x.started)} started) | ${fmt(x.upstreamBytesP50 / 1024)} · ${fmt(x.upstreamBytesMax / 1024)} KiB | ${fmt(kernel / 1024)} KiB | ` +
          `${fmt(Math.max(0, x.upstreamBytesP50 - kernel) / 1024)} KiB | ${fmt(x.blocked)} · ${fmt(x.finished)} | ${rssCell(x, "service")} | ${rssCell(x, "envoy")} | ${perStream} | ` +
          `${x.probe.ok ? `answered in ${fmt(x.probe.ms, 0)} ms` : `failed: ${x.probe.error ?? "?"}`} |`,
      );
    }
    lines.push("");
  }
  lines.push("Targets:", "");
  for (const t of targets(r)) lines.push(`- ${t.met === undefined ? "not measured in this mode" : t.met ? "**met**" : "**missed**"}: ${t.name} — ${t.figure}`);
  const errors = r.paths.map((p) => [p, integrityOf(r, p).firstError] as const).filter(([, e]) => e);
  if (errors.length) {
    lines.push("", "First error per path:", "");
    for (const [p, e] of errors) lines.push(`- ${p}: \`${e}\``);
  }
  lines.push("");
  return lines.join("\n");
}

const COLORS: Record<PathName, string> = { direct: "#555555", grpc: "#1f77b4", http: "#2ca02c", reference: "#d62728" };

/** Tokens/s against concurrency, one line per path: a small hand-written SVG. */
export function renderChart(r: BenchResult): string {
  const W = 720, H = 420, left = 80, right = 220, top = 40, bottom = 60;
  const series = r.paths.map((p) => ({ p, points: (r.load[p] ?? []).map((l) => [l.concurrency, l.tokensPerSecond] as const) })).filter((s) => s.points.length);
  const levels = [...new Set(series.flatMap((s) => s.points.map(([c]) => c)))].sort((a, b) => a - b);
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map(([, y]) => y)));
  const step = niceStep(maxY / 5);
  const yMax = Math.ceil(maxY / step) * step;
  const x = (c: number) => left + (levels.length < 2 ? 0 : (levels.indexOf(c) / (levels.length - 1)) * (W - left - right));
  const y = (v: number) => top + (1 - v / yMax) * (H - top - bottom);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${left}" y="22" font-size="14" font-weight="bold">Aggregate tokens/s against concurrent streams (${r.date.slice(0, 10)}, ${r.machine.cpus} cores)</text>`);
  for (let v = 0; v <= yMax; v += step) {
    out.push(`<line x1="${left}" x2="${W - right}" y1="${y(v)}" y2="${y(v)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const c of levels) {
    out.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${top}" y2="${H - bottom}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x(c)}" y="${H - bottom + 18}" text-anchor="middle">${fmt(c)}</text>`);
  }
  out.push(`<text x="${(left + W - right) / 2}" y="${H - 18}" text-anchor="middle">concurrent streams (log scale)</text>`);
  out.push(`<text transform="translate(18 ${(top + H - bottom) / 2}) rotate(-90)" text-anchor="middle">tokens/s</text>`);
  series.forEach((s, i) => {
    const d = s.points.map(([c, v], j) => `${j ? "L" : "M"}${x(c).toFixed(1)} ${y(v).toFixed(1)}`).join(" ");
    out.push(`<path d="${d}" fill="none" stroke="${COLORS[s.p]}" stroke-width="2.5"/>`);
    for (const [c, v] of s.points) out.push(`<circle cx="${x(c).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3.5" fill="${COLORS[s.p]}"/>`);
    const ly = top + 10 + i * 22;
    out.push(`<line x1="${W - right + 16}" x2="${W - right + 40}" y1="${ly}" y2="${ly}" stroke="${COLORS[s.p]}" stroke-width="2.5"/>`);
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
