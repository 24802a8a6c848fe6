// `npm run start:cluster`: the gateway as a cluster, on this machine. Redis, REPLICAS copies of the
// service (`node dist/main.js`, each its own process on its own port, all given REDIS_URL so they
// share callers' budgets), and one Envoy on HTTP_PORT (8080) in front of them, from the same
// envoy.yaml rendered with every replica: it balances streams by least-request, health-checks each
// replica over grpc.health.v1, takes out one that fails, and tries a stream on another replica only
// when no replica had it. With no upstream configured, one demo upstream serves them all, as in
// `npm start`.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createConnection } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { prettyFactory } from "pino-pretty";
import { createLogger, type Logger } from "./observability/logger.js";
import { ROOT, startEnvoy, type RunningEnvoy } from "./dev/envoy.js";
import { freePort } from "./dev/free-port.js";
import { localEnv, localEnvoyOptions, type LocalEnv } from "./dev/local-env.js";
import { loadLocalConfigOrExit } from "./dev/config.js";
import type { Config } from "./server/config.js";
import { redactUrl } from "./observability/redact-url.js";

/** As in `npm start`: Ctrl-C should not take the deployed 30 s. */
const CLUSTER_GRACE_MS = 5_000;
/** Runs a child so that it stops when this process dies, however it dies. */
const EXIT_WITH_STDIN = join(ROOT, "scripts", "exit-with-stdin.sh");

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<number | null>;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<number | null>;
}

interface Replica extends Child {
  readonly index: number;
  readonly port: number;
}

async function main(): Promise<void> {
  const { env, demo } = await localEnv(process.env);
  if (!env.SHUTDOWN_GRACE_MS) env.SHUTDOWN_GRACE_MS = String(CLUSTER_GRACE_MS);
  // Checked here once, so a mistake is reported once rather than by every replica.
  const { config, launcher } = loadLocalConfigOrExit(env);
  const logger = createLogger({ level: config.logLevel, format: config.log.format });
  const graceMs = config.shutdownGraceMs;

  const children: Child[] = [];
  const abort = (error: unknown) => {
    logger.error({ err: error }, "cluster did not start");
    for (const child of children) child.process.kill("SIGKILL");
    void demo?.close();
    logger.flush(() => process.exit(1));
  };

  let redis: Child | undefined;
  try {
    if (!env.REDIS_URL) {
      const port = await freePort();
      redis = await startRedis(port);
      children.push(redis);
      env.REDIS_URL = `redis://127.0.0.1:${port}`;
    }
  } catch (error) {
    return abort(error);
  }

  const forward = lineForwarder(config.log.format);
  let replicas: Replica[];
  try {
    replicas = await startReplicas(launcher.replicas, env, config, forward, children);
  } catch (error) {
    return abort(error);
  }

  const replicaHost = ["0.0.0.0", "::"].includes(config.grpc.host) ? "127.0.0.1" : config.grpc.host;
  let envoy;
  try {
    envoy = await startEnvoy({
      ...localEnvoyOptions(launcher, graceMs),
      serviceEndpoints: replicas.map((r) => ({ address: replicaHost, port: r.port })),
    });
  } catch (error) {
    return abort(error);
  }
  const running = envoy;

  logger.info(
    {
      http: `http://localhost:${running.httpPort}/chat`,
      grpc: `localhost:${running.httpPort} (through Envoy; each replica also on its own port)`,
      replicas: replicas.map((r) => `localhost:${r.port}`),
      redis: redis ? `${env.REDIS_URL} (started here)` : redactUrl(env.REDIS_URL ?? ""),
      envoyAdmin: `http://127.0.0.1:${running.adminPort}`,
      auth: config.auth
        ? `caller keys required (${config.auth.keys.map((k) => k.name).join(", ")})`
        : "open: AUTH=none, so any caller may call",
      upstream: demo
        ? "built-in demo (set OPENAI_BASE_URL / OPENAI_API_KEY for a real model)"
        : redactUrl(config.upstream.baseURL),
    },
    "cluster up: %d replicas behind Envoy; try  curl -N localhost:%d/chat -H 'content-type: application/json' -d '{\"text\":\"hello\"}'",
    replicas.length,
    running.httpPort,
  );

  superviseCluster({ logger, graceMs, envoy: running, replicas, redis, demo });
}

/** Replicas i = 0…count-1 at once; each one started joins `children`, even when another failed (then its error is thrown). */
async function startReplicas(
  count: number,
  env: Record<string, string | undefined>,
  config: Config,
  forward: (line: string, replica: number) => void,
  children: Child[],
): Promise<Replica[]> {
  // Replica i on GRPC_PORT + i and METRICS_PORT + i (or free ports, for 0).
  const offset = (port: number | undefined, i: number) => (port === undefined ? undefined : port === 0 ? 0 : port + i);
  const replicas: Replica[] = [];
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, index) =>
      startReplica(
        index,
        {
          ...env,
          GRPC_PORT: String(offset(config.grpc.port, index)),
          ...(config.metrics && { METRICS_PORT: String(offset(config.metrics.port, index)) }),
        },
        forward,
      ),
    ),
  );
  for (const s of started) if (s.status === "fulfilled") replicas.push(s.value);
  children.push(...replicas);
  const failed = started.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  return replicas;
}

/** The running cluster, as `superviseCluster` stops it. */
interface Cluster {
  logger: Logger;
  graceMs: number;
  envoy: RunningEnvoy;
  replicas: Replica[];
  redis: Child | undefined;
  demo: LocalEnv["demo"];
}

/** Stops the cluster in order on SIGINT or SIGTERM, or once Envoy, Redis or every replica is gone. */
function superviseCluster({ logger, graceMs, envoy: running, replicas, redis, demo }: Cluster): void {
  // In order, as `npm start` does: Envoy stops taking new requests, every replica drains its
  // streams, then Envoy goes, then Redis.
  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal: why, graceMs }, "stopping: Envoy takes no new requests, open streams may finish");
    await running.drain().catch(() => undefined);
    const codes = await Promise.all(replicas.map((r) => r.stop()));
    await running.stopGracefully();
    await redis?.stop();
    await demo?.close();
    logger.info({ replicas: codes }, "stopped");
    logger.flush(() => process.exit(why === "SIGINT" || why === "SIGTERM" ? 0 : 1));
  };

  // A replica that dies is what the cluster is for: Envoy sends its streams elsewhere. The cluster
  // stops when none is left, or when Envoy or Redis is gone.
  for (const replica of replicas) {
    void replica.exited.then((code) => {
      if (stopping) return;
      logger.error({ replica: replica.index, code }, "replica exited; Envoy sends new streams to the others");
      if (replicas.every((r) => r.process.exitCode !== null || r.process.signalCode !== null))
        void stop("every replica exited");
    });
  }
  running.process.once("exit", (code) => {
    if (!stopping) {
      logger.error({ code }, "envoy exited; stopping");
      void stop("envoy exited");
    }
  });
  void redis?.exited.then((code) => {
    if (!stopping) {
      logger.error({ code }, "redis exited; stopping");
      void stop("redis exited");
    }
  });
  process.on("SIGINT", (s) => void stop(s));
  process.on("SIGTERM", (s) => void stop(s));
}

/** Runs `command` under scripts/exit-with-stdin.sh, in a process group of its own (Ctrl-C reaches this process only). */
function spawnChild(
  command: string[],
  options: { env?: Record<string, string | undefined>; stdout: "pipe" | "ignore" },
): Child {
  const child = spawn("bash", [EXIT_WITH_STDIN, ...command], {
    stdio: ["pipe", options.stdout, "inherit"],
    env: options.env ?? process.env,
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    process: child,
    exited,
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}

async function startRedis(port: number): Promise<Child> {
  if (spawnSync("redis-server", ["--version"]).error) {
    throw new Error(
      "redis-server not found: install it (scripts/setup.sh does, with apt-get), or set REDIS_URL to a Redis or Valkey of your own",
    );
  }
  // On loopback, and nothing kept on disk: the counters live as long as the cluster.
  const redis = spawnChild(
    [
      "redis-server",
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--save",
      "",
      "--appendonly",
      "no",
      "--loglevel",
      "warning",
    ],
    { stdout: "ignore" },
  );
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (redis.process.exitCode !== null) throw new Error(`redis-server exited (${redis.process.exitCode})`);
    if (await answersPing(port)) return redis;
    await sleep(50);
  }
  redis.process.kill("SIGKILL");
  throw new Error(`redis-server did not answer on port ${port} within 10 s`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
    socket.once("close", () => resolve(false));
    socket.once("error", () => resolve(false));
  });
}

/** One replica: `node dist/main.js` with its own port; its log lines are passed on, marked with its number. */
async function startReplica(
  index: number,
  env: Record<string, string | undefined>,
  forward: (line: string, replica: number) => void,
): Promise<Replica> {
  // JSON lines, so this process can read the port and mark each line; shown pretty here if asked.
  const child = spawnChild([process.execPath, join(ROOT, "dist", "main.js")], {
    env: { ...env, LOG_FORMAT: "json" },
    stdout: "pipe",
  });
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.process.stdout! }).on("line", (line) => {
      forward(line, index);
      const entry = parseJson(line);
      if (entry?.msg === "chat gateway listening" && typeof entry.port === "number") resolve(entry.port);
    });
    void child.exited.then((code) => reject(new Error(`replica ${index} exited (${code}) before listening`)));
  });
  return { ...child, index, port };
}

function lineForwarder(format: "auto" | "json" | "pretty"): (line: string, replica: number) => void {
  const human = format === "pretty" || (format === "auto" && process.stdout.isTTY === true);
  const pretty = human
    ? prettyFactory({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "service,pid,hostname" })
    : undefined;
  return (line, replica) => {
    const entry = parseJson(line);
    if (!entry) return void process.stdout.write(`[replica ${replica}] ${line}\n`);
    const marked = { ...entry, replica };
    process.stdout.write(pretty ? pretty(marked) : `${JSON.stringify(marked)}\n`);
  };
}

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

void main();
