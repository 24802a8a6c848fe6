// A/B of the service's CPU per token between two builds (two `dist/` directories), on the same
// bench upstream, taking turns (A B B A) so the machine's load hits both alike: CPU time of each service
// process (/proc) per 1,000 tokens, for one long text-only stream, for 100 concurrent streams, and for
// 100 paced streams (64 deltas 20 ms apart, the bench's paced section).
// CPU time depends much less than tokens/s on what else the machine runs.
//   npm run bench:cpu-ab -- --a /path/to/checkout-A --b /path/to/checkout-B [--rounds 3]
// (each a checkout with `npm run setup` done: its dist/ is what runs).
import { parseArgs } from "node:util";
import { cpuMs, startService, startUpstream } from "./procs.js";
import { grpcClient } from "./clients.js";
import { promptFor, type ReplyShape } from "./tokens.js";

const { values } = parseArgs({ options: { a: { type: "string" }, b: { type: "string" }, rounds: { type: "string" } } });
const roots = { A: values.a ?? "", B: values.b ?? "" };
const rounds = Number(values.rounds ?? 3);

const upstream = await startUpstream();
async function service(root: string) {
  const proc = await startService(upstream.port, {}, [], root);
  return { pid: proc.pid, client: grpcClient(proc.port), stop: proc.stop };
}
const services = { A: await service(roots.A), B: await service(roots.B) };

const single: ReplyShape = { tokens: 20_000, size: 4, firstMs: 0, delayMs: 0 };
const load: ReplyShape = { tokens: 200, size: 4, firstMs: 0, delayMs: 0 };
const paced: ReplyShape = { tokens: 64, size: 4, firstMs: 0, delayMs: 20 };
const tiny: ReplyShape = { tokens: 1, size: 4, firstMs: 0, delayMs: 0 };
type Section = "single" | "load" | "paced" | "request";
const results: Record<"A" | "B", Record<Section | "singleTps", number[]>> = {
  A: { single: [], load: [], paced: [], request: [], singleTps: [] },
  B: { single: [], load: [], paced: [], request: [], singleTps: [] },
};

/** CPU ms the service spent per 1,000 tokens on `run`, and the tokens/s it took. */
async function measure(side: "A" | "B", tokens: number, run: (s: (typeof services)["A"]) => Promise<void>) {
  const s = services[side];
  const before = cpuMs(s.pid);
  const started = performance.now();
  await run(s);
  return { cpu: ((cpuMs(s.pid) - before) / tokens) * 1000, tps: tokens / ((performance.now() - started) / 1000) };
}
const oneStream = async (s: (typeof services)["A"]) => {
  const reply = await s.client.chat(promptFor(single));
  if (!reply.complete) throw new Error(String(reply.error));
};
// 100 streams at once, 20 replies each.
const hundredStreams = (s: (typeof services)["A"]) =>
  Promise.all(
    Array.from({ length: 100 }, async () => {
      for (let i = 0; i < 20; i++) await s.client.chat(promptFor(load));
    }),
  ).then(() => undefined);

// 100 paced streams at once, 5 replies each.
const hundredPaced = (s: (typeof services)["A"]) =>
  Promise.all(
    Array.from({ length: 100 }, async () => {
      for (let i = 0; i < 5; i++) await s.client.chat(promptFor(paced));
    }),
  ).then(() => undefined);

// 100 streams at once, 20 one-token replies each: the cost of a request.
const requests = (s: (typeof services)["A"]) =>
  Promise.all(
    Array.from({ length: 100 }, async () => {
      for (let i = 0; i < 20; i++) await s.client.chat(promptFor(tiny));
    }),
  ).then(() => undefined);

// Each section in rounds of A B B A (after a warm-up of both), so drift hits both sides alike.
for (const [section, tokens, run] of [
  ["single", single.tokens, oneStream],
  ["load", 100 * 20 * load.tokens, hundredStreams],
  ["paced", 100 * 5 * paced.tokens, hundredPaced],
  ["request", 100 * 20, requests],
] as const) {
  for (const side of ["A", "B"] as const) await run(services[side]);
  for (let round = 0; round < rounds; round++) {
    for (const side of ["A", "B", "B", "A"] as const) {
      const { cpu, tps } = await measure(side, tokens, run);
      results[side][section].push(cpu);
      if (section === "single") results[side].singleTps.push(tps);
    }
  }
}
const median = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)] ?? NaN;
for (const side of ["A", "B"] as const) {
  const r = results[side]!;
  console.log(
    `${side} ${roots[side]}: CPU ms/1k tokens single ${r.single.map((x) => x.toFixed(1)).join(" ")} (median ${median(r.single).toFixed(2)}), ` +
      `@100 ${r.load.map((x) => x.toFixed(1)).join(" ")} (median ${median(r.load).toFixed(2)}), ` +
      `paced @100 ${r.paced.map((x) => x.toFixed(1)).join(" ")} (median ${median(r.paced).toFixed(2)}); ` +
      `CPU ms per request ${r.request.map((x) => (x / 1000).toFixed(3)).join(" ")} (median ${(median(r.request) / 1000).toFixed(3)}); ` +
      `single tokens/s median ${median(r.singleTps).toFixed(0)}`,
  );
}
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
console.log(
  `B/A, total CPU over all rounds: single ${(sum(results.B.single) / sum(results.A.single)).toFixed(3)}, ` +
    `@100 ${(sum(results.B.load) / sum(results.A.load)).toFixed(3)}, paced @100 ${(sum(results.B.paced) / sum(results.A.paced)).toFixed(3)}, ` +
    `per request ${(sum(results.B.request) / sum(results.A.request)).toFixed(3)}`,
);
for (const s of Object.values(services)) {
  s.client.close();
  await s.stop();
}
await upstream.stop();
