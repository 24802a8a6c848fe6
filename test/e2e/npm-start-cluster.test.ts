// `npm run start:cluster` as a user runs it: Redis, three replicas of the service (each its own
// process on its own port, given REDIS_URL) and one Envoy in front; stopped by SIGTERM without
// cutting a stream, and leaving nothing behind when killed.
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, it } from "vitest";
import { ROOT, serviceHosts } from "../../src/dev/envoy.js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { hold } from "../support/gates.js";
import { httpChat, promptOf, tokensFor } from "../support/replicas.js";

interface ClusterUp {
  http: string;
  replicas: string[];
  redis: string;
  envoyAdmin: string;
}

let upstream: FakeUpstream | undefined;
let pid: number | undefined;
afterEach(async () => {
  if (pid) for (const p of [pid, ...descendants(pid)]) tryKill(p);
  await upstream?.close();
  upstream = pid = undefined;
});

async function startCluster(env: Record<string, string>) {
  const child = spawn(process.execPath, [join(ROOT, "dist", "cluster.js")], {
    env: {
      PATH: process.env.PATH ?? "",
      GRPC_PORT: "0",
      HTTP_PORT: "0",
      ENVOY_ADMIN_PORT: "0",
      METRICS_PORT: "0",
      LOG_FORMAT: "json",
      ...env,
    },
    stdio: ["ignore", "pipe", "ignore"],
    detached: true,
  });
  pid = child.pid;
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const up = await new Promise<ClusterUp>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output.push(line);
      if (line.includes('"msg":"cluster up')) resolve(JSON.parse(line) as ClusterUp);
    });
    void exited.then((code) =>
      reject(new Error(`start:cluster exited (${code}) before it was up:\n${output.join("\n")}`)),
    );
  });
  return {
    child,
    up,
    output,
    exited,
    httpPort: Number(new URL(up.http).port),
    adminPort: Number(new URL(up.envoyAdmin).port),
  };
}

/** Every process below `root`, from /proc (Linux). */
function descendants(root: number): number[] {
  const children = (p: number): number[] => {
    try {
      return readdirSync(`/proc/${p}/task`).flatMap((t) =>
        readFileSync(`/proc/${p}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number),
      );
    } catch {
      return [];
    }
  };
  const all: number[] = [];
  for (let queue = children(root); queue.length > 0; ) {
    const p = queue.shift()!;
    all.push(p);
    queue.push(...children(p));
  }
  return all;
}

const commandLine = (p: number) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0").filter(Boolean);
const environment = (p: number) =>
  Object.fromEntries(
    readFileSync(`/proc/${p}/environ`, "utf8")
      .split("\0")
      .filter(Boolean)
      .map((kv) => kv.split(/=(.*)/s).slice(0, 2)),
  );
const alive = (p: number) => {
  try {
    process.kill(p, 0);
    return true;
  } catch {
    return false;
  }
};
function tryKill(p: number) {
  try {
    process.kill(p, "SIGKILL");
  } catch {
    // gone
  }
}
const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => (socket.destroy(), resolve(true)));
    socket.once("error", () => resolve(false));
  });

it("starts Redis, three replicas on their own ports and one Envoy; stops on SIGTERM without cutting a stream", {
  timeout: 90_000,
}, async () => {
  const { promise: held, release } = hold();
  upstream = await startFakeUpstream({
    reply: (r) => ({
      tokens: tokensFor(promptOf(r)),
      gate: (i) => (i === 1 && promptOf(r) === "hold" ? held : undefined),
    }),
  });
  const cluster = await startCluster({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });

  // Three replicas, each a `node dist/main.js` of its own on its own port, given the Redis it started.
  const ports = cluster.up.replicas.map((r) => Number(r.split(":").pop()));
  expect(new Set(ports).size).toBe(3);
  const redisUrl = /^(redis:\/\/127\.0\.0\.1:\d+) \(started here\)$/.exec(cluster.up.redis)?.[1];
  expect(redisUrl).toBeDefined();
  const processes = descendants(cluster.child.pid!);
  const names = new Map(processes.map((p) => [p, commandLine(p).join(" ")]));
  const replicas = processes.filter(
    (p) => commandLine(p).at(-1) === join(ROOT, "dist", "main.js") && commandLine(p)[0] === process.execPath,
  );
  expect(replicas).toHaveLength(3);
  for (const p of replicas) expect(environment(p).REDIS_URL).toBe(redisUrl);
  expect(processes.some((p) => /^redis-server /.test(commandLine(p)[0] ?? ""))).toBe(true);
  expect((await serviceHosts(cluster.adminPort)).map((h) => h.port).sort()).toEqual([...ports].sort());

  // Streams through Envoy reach every replica. One at a time, least-request picks at random among
  // idle replicas: 9 streams missed one replica 8% of the time ((2/3)^9 × 3), 30 miss one 0.002%.
  const texts = Array.from({ length: 30 }, (_, i) => `hello-${i}`);
  for (const text of texts) expect((await httpChat(cluster.httpPort, text).done).text).toBe(tokensFor(text).join(""));
  const hosts = await serviceHosts(cluster.adminPort);
  expect(
    hosts.every((h) => h.rqTotal > 0),
    JSON.stringify(hosts),
  ).toBe(true);

  // SIGTERM with a stream in flight: it finishes, then everything exits.
  const inFlight = httpChat(cluster.httpPort, "hold");
  await inFlight.first;
  cluster.child.kill("SIGTERM");
  await sleep(200);
  release();
  const o = await inFlight.done;
  expect(o.ok, `${o.how} ${o.message ?? ""}`).toBe(true);
  expect(await cluster.exited).toBe(0);
  // What the processes left to their parents (a watcher subshell, say) is gone a moment later.
  const deadline = Date.now() + 5_000;
  for (const p of processes) {
    while (alive(p) && Date.now() < deadline) await sleep(20);
    expect(alive(p), names.get(p)).toBe(false);
  }
  for (const port of [...ports, cluster.httpPort, cluster.adminPort, Number(new URL(redisUrl!).port)])
    expect(await listening(port)).toBe(false);
});

it("leaves no replica, Redis or Envoy behind when killed with SIGKILL", { timeout: 90_000 }, async () => {
  const cluster = await startCluster({ REPLICAS: "2" });
  expect(cluster.up.replicas).toHaveLength(2);
  const processes = descendants(cluster.child.pid!);
  expect(processes.length).toBeGreaterThanOrEqual(5);
  cluster.child.kill("SIGKILL");
  await cluster.exited;
  for (const p of processes) {
    while (alive(p)) await sleep(50);
  }
  expect(await listening(cluster.httpPort)).toBe(false);
});
