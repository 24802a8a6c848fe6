// The real processes of an end-to-end test: the built service (`node dist/main.js`), the real Envoy
// with the project's envoy.yaml, and grpcurl; each on free loopback ports.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { promisify } from "node:util";
import { ROOT, TOOLS_BIN, startEnvoy, type EnvoyOptions, type RunningEnvoy } from "../../src/dev/envoy.js";
import { openUnlessKeyed } from "./grpc.js";

export interface ServiceProcess {
  readonly port: number;
  readonly process: ChildProcess;
  /** Every line the process wrote to stdout and stderr so far. */
  readonly output: string[];
  /** Resolves with the first JSON log line, past or future, that `match` accepts. */
  logLine(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServiceProcess(env: Record<string, string>): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [join(ROOT, "dist", "main.js")], {
    env: {
      PATH: process.env.PATH ?? "",
      GRPC_HOST: "127.0.0.1",
      GRPC_PORT: "0",
      LOG_LEVEL: "info",
      // Each process its own SQLite file unless the test shares one (or sets DATABASE_URL).
      DATA_DIR: mkdtempSync(join(tmpdir(), "gateway-data-")),
      ...openUnlessKeyed(env),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const record = (line: string) => {
    output.push(line);
    for (const l of listeners) l(line);
  };
  createInterface({ input: child.stderr! }).on("line", record);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      record(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "chat gateway listening" && entry.port) resolve(entry.port);
      } catch {
        // not JSON
      }
    });
    void exited.then((code) => reject(new Error(`service exited (${code}) before listening:\n${output.join("\n")}`)));
  });

  const parse = (line: string): Record<string, unknown> | undefined => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };

  return {
    port,
    process: child,
    output,
    logLine(match) {
      return new Promise((resolve) => {
        const check = (line: string) => {
          const entry = parse(line);
          if (entry && match(entry)) {
            listeners.delete(check);
            resolve(entry);
            return true;
          }
          return false;
        };
        if (!output.some(check)) listeners.add(check);
      });
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface Stack {
  service: ServiceProcess;
  envoy: RunningEnvoy;
  stop(): Promise<void>;
}

/** The built service behind the real Envoy; Envoy's access log and its own log are kept (`stack.envoy`). */
export async function startStack(
  env: Record<string, string>,
  envoyOptions: Partial<EnvoyOptions> = {},
): Promise<Stack> {
  const service = await startServiceProcess(env);
  try {
    const envoy = await startEnvoy({
      servicePort: service.port,
      httpHost: "127.0.0.1",
      stderr: "pipe",
      accessLog: "pipe",
      ...envoyOptions,
    });
    return {
      service,
      envoy,
      async stop() {
        await envoy.stop();
        await service.stop("SIGKILL");
      },
    };
  } catch (error) {
    await service.stop("SIGKILL");
    throw error;
  }
}

const execFileAsync = promisify(execFile);

/**
 * Runs `grpcurl -plaintext [flags] 127.0.0.1:port [verb and arguments]` with no proto files:
 * everything comes from server reflection.
 */
export async function grpcurl(
  port: number,
  flags: string[],
  ...rest: string[]
): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      join(TOOLS_BIN, "grpcurl"),
      ["-plaintext", ...flags, `127.0.0.1:${port}`, ...rest],
      { timeout: 15_000 },
    );
    return { stdout, stderr, code: 0 };
  } catch (error: unknown) {
    const e = error as { stdout?: string; stderr?: string; code?: number };
    return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: e.code ?? -1 };
  }
}

/**
 * Starts grpcurl like `grpcurl()` but leaves it running, for streams that do not end by themselves
 * (`Health/Watch`): `output` resolves once its stdout holds `text`.
 */
export function spawnGrpcurl(port: number, flags: string[], ...rest: string[]) {
  const child = spawn(join(TOOLS_BIN, "grpcurl"), ["-plaintext", ...flags, `127.0.0.1:${port}`, ...rest], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return {
    output(text: string): Promise<string> {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (stdout.includes(text)) {
            child.stdout!.off("data", check);
            resolve(stdout);
          }
        };
        child.stdout!.on("data", check);
        check();
        void exited.then((code) =>
          reject(new Error(`grpcurl exited (${code}) before writing ${text}: ${stdout}${stderr}`)),
        );
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

export interface StackProcess {
  readonly process: ChildProcess;
  /** The "stack up" log line: ports and URLs. */
  readonly up: {
    grpc: string;
    http: string;
    envoyAdmin: string;
    auth: string;
    upstream: string;
    [key: string]: unknown;
  };
  readonly grpcPort: number;
  readonly httpPort: number;
  /** Every line written to stdout so far. */
  readonly output: string[];
  readonly exited: Promise<number | null>;
}

/**
 * `npm start`'s process (`node dist/stack.js`) on free ports, in a process group of its own so a
 * test can signal the group as a terminal's Ctrl-C does.
 */
export async function startStackProcess(env: Record<string, string> = {}): Promise<StackProcess> {
  const child = spawn(process.execPath, [join(ROOT, "dist", "stack.js")], {
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
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const up = await new Promise<StackProcess["up"]>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      output.push(line);
      if (line.includes('"msg":"stack up')) resolve(JSON.parse(line) as StackProcess["up"]);
    });
    void exited.then((code) =>
      reject(new Error(`npm start's process exited (${code}) before the stack was up:\n${output.join("\n")}`)),
    );
  });
  return {
    process: child,
    up,
    grpcPort: Number(up.grpc.split(":").pop()),
    httpPort: Number(new URL(up.http).port),
    output,
    exited,
  };
}
