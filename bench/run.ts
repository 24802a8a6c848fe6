// `npm run bench`: every path against the same bench upstream, in one run, on loopback.
//   --quick (default)  a few minutes on 2 cores: RSS at 1,000 streams
//   --full             longer windows, more samples, RSS at 1,000 and 10,000 streams
//   --smoke            the smallest run, Node paths only, grpc-conversation included (the test suite runs it)
//   --paths a,b        a subset of raw,direct,grpc,grpc-conversation,grpc-resumable,http,openai,responses,reference
//                      (grpc-conversation only when named)
//   --sections a,b     a subset of ttft,single,load,paced,rss,leak,slow (for quick A/B runs while optimising)
//   --redis URL        REDIS_URL for the service processes (resumable streams kept in Redis)
//   --out DIR          where the results go (default bench/results)
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  directClient,
  grpcClient,
  httpClient,
  rawClient,
  responsesClient,
  DEFAULT_PATHS,
  PATHS,
  type PathClient,
  type PathName,
} from "./clients.js";
import {
  measureLeak,
  measureLoad,
  measureRss,
  measureSingleStream,
  measureTtft,
  type LeakResult,
  type LoadResult,
  type RssResult,
  type SingleStreamResult,
  type TtftResult,
} from "./measure.js";
import { ROOT, startEnvoyFor, startReference, startService, startUpstream, type Proc } from "./procs.js";
import { renderChart, renderMarkdown, targets, type Target } from "./report.js";
import { measureFloor, type Floor } from "./floor.js";
import { measureSlowReaders, type SlowReadersResult } from "./slow.js";
import type { ReplyShape } from "./tokens.js";
import { PLANS, type Mode } from "./plans.js";

export type { Mode } from "./plans.js";

export interface BenchResult {
  date: string;
  mode: Mode;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    envoy: string;
    python: string;
    commit: string;
  };
  shapes: {
    ttft: ReplyShape;
    single: ReplyShape;
    load: ReplyShape;
    rss: Record<number, ReplyShape>;
    paced?: ReplyShape;
    leak?: ReplyShape;
    slow?: ReplyShape;
  };
  paths: PathName[];
  ttft: Partial<Record<PathName, TtftResult>>;
  /** First-byte time of raw node:http2 and of a bare grpc-js call between two processes. */
  floor?: Floor;
  single: Partial<Record<PathName, SingleStreamResult>>;
  load: Partial<Record<PathName, LoadResult[]>>;
  rss: Partial<Record<PathName, RssResult[]>>;
  /** Streams of tokens 20 ms apart at 100 concurrent: CPU per token and the gaps clients see. Absent in runs before it existed. */
  paced?: Partial<Record<PathName, LoadResult>>;
  /** The service's idle RSS after each cycle of many streams (gRPC path, one process). */
  leak?: LeakResult;
  /** Clients that stop reading long replies (gRPC and HTTP only). Absent in runs before it existed. */
  slow?: Partial<Record<PathName, SlowReadersResult>>;
  /** Issue 24's targets, met or missed, with the figure each was judged on (report.ts). */
  targets?: Target[];
}

/**
 * The openai Python SDK's default connection limit: the reference cannot hold more upstream streams
 * open at once, the rest wait for a connection, so its RSS is measured up to this many.
 */
const REFERENCE_MAX_STREAMS = 1_000;

const TTFT_SHAPE: ReplyShape = { tokens: 8, size: 4, firstMs: 0, delayMs: 0 };

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean" },
      full: { type: "boolean" },
      smoke: { type: "boolean" },
      paths: { type: "string" },
      sections: { type: "string" },
      out: { type: "string" },
      redis: { type: "string" },
    },
  });
  // `--redis URL`: every service process gets REDIS_URL (resumable streams' events, and the caller
  // budgets, kept there): the cost of resumable streams across replicas.
  const serviceEnv: Record<string, string> = values.redis ? { REDIS_URL: values.redis } : {};
  const mode: Mode = values.smoke ? "smoke" : values.full ? "full" : "quick";
  const plan = PLANS[mode];
  const paths = (values.paths?.split(",") ??
    (mode === "smoke" ? ["raw", "direct", "grpc", "grpc-conversation", "http"] : DEFAULT_PATHS)) as PathName[];
  for (const p of paths) if (!PATHS.includes(p)) throw new Error(`unknown path ${p}`);
  const sections = new Set(
    values.sections?.split(",") ?? ["ttft", "single", "load", "paced", "rss", "leak", ...(plan.slow ? ["slow"] : [])],
  );
  const out = values.out ?? join(ROOT, "bench", "results");
  mkdirSync(out, { recursive: true });

  const result: BenchResult = {
    date: new Date().toISOString(),
    mode,
    machine: machine(paths.includes("reference")),
    shapes: {
      ttft: TTFT_SHAPE,
      single: plan.single.shape,
      load: plan.load.shape,
      rss: Object.fromEntries(plan.rss.streams.map((n) => [n, plan.rss.shape(n)])),
      paced: plan.paced.shape,
      leak: plan.leak.shape,
      ...(plan.slow && { slow: plan.slow.shape }),
    },
    paths,
    ttft: {},
    single: {},
    load: {},
    rss: {},
    paced: {},
    slow: {},
  };

  const stack: Proc[] = [];
  const start = async <T extends Proc>(p: Promise<T>): Promise<T> => {
    const proc = await p;
    stack.push(proc);
    return proc;
  };
  const stopAll = async () => {
    for (const p of stack.splice(0).reverse()) await p.stop().catch(() => undefined);
  };
  process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));

  try {
    log(`mode ${mode}, paths ${paths.join(", ")}`);
    const upstream = await start(startUpstream());
    const service = await start(startService(upstream.port, serviceEnv));
    const envoy = ["http", "openai", "responses"].some((p) => paths.includes(p as PathName))
      ? await start(startEnvoyFor(service.port))
      : undefined;
    const reference = paths.includes("reference") ? await start(startReference(upstream.port)) : undefined;
    const pidsOf: Record<PathName, Record<string, number>> = {
      raw: {},
      direct: {},
      grpc: { service: service.pid },
      "grpc-conversation": { service: service.pid },
      "grpc-resumable": { service: service.pid },
      http: { service: service.pid, ...(envoy && { envoy: envoy.pid }) },
      openai: { service: service.pid, ...(envoy && { envoy: envoy.pid }) },
      responses: { service: service.pid, ...(envoy && { envoy: envoy.pid }) },
      reference: reference ? { reference: reference.pid } : {},
    };
    const clients = paths.map((p) => clientFor(p, { upstream, service, envoy, reference }));

    log("warming up");
    await measureTtft(clients, mode === "smoke" ? 2 : 50, TTFT_SHAPE);

    if (sections.has("ttft")) {
      log(`time to first token: ${plan.ttftSamples} samples per path, paths taking turns`);
      const ttft = await measureTtft(clients, plan.ttftSamples, TTFT_SHAPE);
      for (const [name, r] of ttft) result.ttft[name as PathName] = r;
      if (paths.includes("grpc")) {
        log("transport floor: raw node:http2 and bare grpc-js, first byte between two processes");
        result.floor = await measureFloor(plan.ttftSamples);
      }
    }

    for (const client of sections.has("single") ? clients : []) {
      log(`single stream: ${client.name}`);
      result.single[client.name] = await measureSingleStream(client, plan.single.shape, plan.single.runs);
    }

    for (const level of sections.has("load") ? plan.load.levels : []) {
      for (const client of clients) {
        log(`load: ${client.name} at ${level} concurrent streams`);
        const r = await measureLoad(client, level, plan.load.shape, plan.load, pidsOf[client.name]);
        (result.load[client.name] ??= []).push(r);
      }
    }
    for (const client of sections.has("paced") ? clients : []) {
      log(
        `paced: ${client.name}, ${plan.paced.concurrency} streams of ${plan.paced.shape.tokens} deltas ${plan.paced.shape.delayMs} ms apart`,
      );
      result.paced![client.name] = await measureLoad(
        client,
        plan.paced.concurrency,
        plan.paced.shape,
        plan.paced,
        pidsOf[client.name],
        upstream.pid,
      );
    }
    for (const c of clients) c.close();
    await stopAll();

    // The leak curve: one fresh service, cycles of many streams, its idle RSS after each.
    if (sections.has("leak") && paths.includes("grpc")) {
      const { cycles, streams, shape, settleMs } = plan.leak;
      log(`leak: ${cycles} cycles of ${streams} gRPC streams, the service's idle RSS after each`);
      const up = await start(startUpstream());
      const svc = await start(startService(up.port, serviceEnv));
      const client = clientFor("grpc", { upstream: up, service: svc }, Math.ceil(streams / 1_000));
      await measureTtft([client], 20, TTFT_SHAPE);
      await new Promise((resolve) => setTimeout(resolve, 500));
      result.leak = await measureLeak(client, cycles, streams, shape, svc.pid, settleMs);
      client.close();
      await stopAll();
    }

    // RSS per open stream: fresh processes per measurement, so earlier load does not count.
    for (const streams of sections.has("rss") ? plan.rss.streams : []) {
      for (const path of paths) {
        if (path === "direct" || path === "raw") continue;
        if (path === "reference" && streams > REFERENCE_MAX_STREAMS) {
          log(
            `rss: reference skipped at ${streams} streams (its AsyncOpenAI pool holds ${REFERENCE_MAX_STREAMS} connections)`,
          );
          continue;
        }
        log(`rss: ${path} with ${streams} slow streams`);
        const up = await start(startUpstream());
        const svc = path === "reference" ? undefined : await start(startService(up.port, serviceEnv));
        const env =
          path === "http" || path === "openai" || path === "responses"
            ? await start(startEnvoyFor(svc!.port))
            : undefined;
        const ref = path === "reference" ? await start(startReference(up.port)) : undefined;
        const client = clientFor(
          path,
          { upstream: up, service: svc, envoy: env, reference: ref },
          Math.ceil(streams / 1_000),
        );
        await measureTtft([client], 20, TTFT_SHAPE);
        await new Promise((resolve) => setTimeout(resolve, 500));
        const pids: Record<string, number> = {
          ...(svc && { service: svc.pid }),
          ...(env && { envoy: env.pid }),
          ...(ref && { reference: ref.pid }),
        };
        (result.rss[path] ??= []).push(
          await measureRss(client, streams, plan.rss.shape(streams), pids, plan.rss.settleMs),
        );
        client.close();
        await stopAll();
      }
    }

    // Slow readers: fresh processes per path, so the RSS before is an idle gateway's.
    const slowPlan = sections.has("slow") ? plan.slow : undefined;
    for (const path of slowPlan ? paths : []) {
      if (path !== "grpc" && path !== "http") continue;
      log(`slow readers: ${path}, ${slowPlan!.streams} clients that stop reading`);
      const up = await start(startUpstream());
      // The idle watchdog off: a stalled reader is not a stalled upstream (issue 8), and here the
      // readers stay stalled for longer than its 60 s default.
      const svc = await start(startService(up.port, { ...serviceEnv, UPSTREAM_IDLE_TIMEOUT_MS: "0" }));
      const env = path === "http" ? await start(startEnvoyFor(svc.port)) : undefined;
      const probe = clientFor(path, { upstream: up, service: svc, envoy: env }, 1);
      await measureTtft([probe], 20, TTFT_SHAPE);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const pids = { service: svc.pid, ...(env && { envoy: env.pid }) };
      const ports = { upstream: up.port, service: svc.port, ...(env && { envoy: env.port }) };
      result.slow![path] = await measureSlowReaders(path, ports, slowPlan!.streams, slowPlan!.shape, pids, probe);
      probe.close();
      await stopAll();
    }
  } finally {
    await stopAll();
  }

  result.targets = targets(result);
  const stamp = result.date.slice(0, 19).replace(/[:T]/g, "-");
  const base = mode === "quick" ? "" : `${mode}-`;
  writeFileSync(join(out, `${base}run-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(out, `${base}latest.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(out, `${base}latest.md`), renderMarkdown(result));
  writeFileSync(join(out, `${base}throughput.svg`), renderChart(result));
  process.stdout.write(renderMarkdown(result));
  log(`results in ${out}`);
}

function clientFor(
  path: PathName,
  procs: { upstream: Proc; service?: Proc | undefined; envoy?: Proc | undefined; reference?: Proc | undefined },
  channels = 4,
): PathClient {
  switch (path) {
    case "raw":
      return rawClient(procs.upstream.port);
    case "direct":
      return directClient(procs.upstream.port);
    case "grpc":
      return grpcClient(procs.service!.port, channels);
    // The same, each request on a stored conversation (the service's SQLite, in a temporary DATA_DIR).
    case "grpc-conversation":
      return grpcClient(procs.service!.port, channels, undefined, { conversations: true });
    case "grpc-resumable":
      return grpcClient(procs.service!.port, channels, undefined, { resumable: true });
    case "http":
      return httpClient("http", procs.envoy!.port);
    // The same reader as `raw`, of the gateway's OpenAI API instead of the upstream's.
    case "openai":
      return rawClient(procs.envoy!.port, "openai");
    case "responses":
      return responsesClient(procs.envoy!.port);
    case "reference":
      return httpClient("reference", procs.reference!.port);
  }
}

function machine(python: boolean): BenchResult["machine"] {
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
    } catch {
      return "unknown";
    }
  };
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    envoy: /envoy\/\S+|\d+\.\d+\.\d+/.exec(run(join(ROOT, ".tools", "bin", "envoy"), ["--version"]))?.[0] ?? "unknown",
    python: python ? run(join(ROOT, ".tools", "bench-venv", "bin", "python"), ["--version"]) : "not used",
    commit: run("git", ["rev-parse", "--short", "HEAD"]),
  };
}

await main();
