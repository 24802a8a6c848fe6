// The processes under test, each started on free loopback ports, and what /proc says about them.
import { spawn, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { ROOT, startEnvoy, type RunningEnvoy } from "../src/dev/envoy.js";
import { freePort } from "../src/dev/free-port.js";

export { freePort };

export { ROOT };

export interface Proc {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, graceMs = 5_000): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };
}

/** The bench upstream (upstream.ts) in its own process. */
export async function startUpstream(): Promise<Proc> {
  const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench", "upstream.ts")], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await firstLine(child, "bench upstream");
  return { pid: child.pid!, port: (JSON.parse(line) as { port: number }).port, stop: stopper(child) };
}

/**
 * The gateway as deployed: `node dist/main.js`, configured by environment; `root` is the checkout
 * whose build runs (bench:cpu-ab runs two).
 */
export async function startService(
  upstreamPort: number,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
  root = ROOT,
): Promise<Proc> {
  const port = await freePort();
  // Its stored conversations (grpc-conversation's) in a folder of its own, gone when it stops.
  const dataDir = mkdtempSync(join(tmpdir(), "bench-data-"));
  const child = spawn(process.execPath, [...nodeArgs, join(root, "dist", "main.js")], {
    cwd: root,
    stdio: ["ignore", "ignore", "inherit"],
    env: {
      PATH: process.env.PATH ?? "",
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: String(port),
      OPENAI_BASE_URL: `http://127.0.0.1:${upstreamPort}/v1`,
      OPENAI_API_KEY: "sk-bench",
      CHAT_MODEL: "bench-model",
      // As `npm start` runs it: logs at info (one line per stream, to stdout, here discarded) and
      // the Prometheus endpoint on.
      LOG_LEVEL: "info",
      METRICS_HOST: "127.0.0.1",
      METRICS_PORT: String(await freePort()),
      UPSTREAM_MAX_RETRIES: "0",
      AUTH: "none",
      DATA_DIR: dataDir,
      ...env,
    },
  });
  await waitForPort(port, child, "service");
  const stop = stopper(child);
  return {
    pid: child.pid!,
    port,
    stop: () => stop().finally(() => rmSync(dataDir, { recursive: true, force: true })),
  };
}

/** The reference FastAPI app under uvicorn (defaults: one worker), in the bench's virtualenv. */
export async function startReference(upstreamPort: number): Promise<Proc> {
  const port = await freePort();
  const venv = join(ROOT, ".tools", "bench-venv");
  // `python -m uvicorn`, not the `uvicorn` script: a virtualenv that was moved keeps the old path in
  // its scripts' shebang lines.
  const child = spawn(
    join(venv, "bin", "python"),
    [
      "-m",
      "uvicorn",
      "app:app",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--log-level",
      "warning",
      "--no-access-log",
    ],
    {
      cwd: join(ROOT, "bench", "reference"),
      stdio: ["ignore", "ignore", "pipe"],
      env: {
        PATH: process.env.PATH ?? "",
        OPENAI_BASE_URL: `http://127.0.0.1:${upstreamPort}/v1`,
        OPENAI_API_KEY: "sk-bench",
        CHAT_MODEL: "bench-model",
        OPENAI_MAX_RETRIES: "0",
      },
    },
  );
  // asyncio warns once per write to a socket the bench has cancelled; pass on anything else.
  createInterface({ input: child.stderr! }).on("line", (line) => {
    if (!line.includes("socket.send() raised exception")) process.stderr.write(`[reference] ${line}\n`);
  });
  await waitForPort(port, child, "reference app");
  return { pid: child.pid!, port, stop: stopper(child) };
}

export async function startEnvoyFor(servicePort: number): Promise<Proc & { envoy: RunningEnvoy }> {
  const envoy = await startEnvoy({ servicePort, httpPort: 0, adminPort: 0, stderr: "inherit", logLevel: "error" });
  return { pid: envoy.pid, port: envoy.httpPort, stop: () => envoy.stop(), envoy };
}

async function firstLine(child: ChildProcess, what: string): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, "exit").then(() => {
    throw new Error(`${what} exited before it was ready`);
  });
  const [line] = (await Promise.race([once(lines, "line"), exited])) as [string];
  return line;
}

export async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: "127.0.0.1" });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  child.kill("SIGKILL");
  throw new Error(`${what} did not listen on ${port} within 30 s`);
}

const TICK_MS = 1000 / 100; // USER_HZ, 100 on Linux

/** CPU time (user + system) of a process, in milliseconds. */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

/** Resident set size of a process, in KiB. */
export function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(match?.[1] ?? 0);
}
