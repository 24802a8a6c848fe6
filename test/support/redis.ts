// A real redis-server (Debian's package, installed by scripts/setup.sh) for the tests: its own
// config in a temporary folder, on a free loopback port, no persistence. Tests stop it, freeze it and
// start it again on the same port to see what the gateway does meanwhile.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { freePort } from "../../src/dev/free-port.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface RunningRedis {
  readonly port: number;
  /** `redis://127.0.0.1:<port>`, with the password when there is one. */
  readonly url: string;
  /** Kills it (SIGKILL by default): connections are refused from then on. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again, empty, on the same port. */
  restart(): Promise<void>;
  /** SIGSTOP: the port still accepts connections, but nothing answers (a hung Redis). */
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

/** With `password`, clients must AUTH (`requirepass`). */
export async function startRedis(options: { password?: string } = {}): Promise<RunningRedis> {
  const dir = mkdtempSync(join(tmpdir(), "chat-redis-"));
  let port = 0;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const config = join(dir, "redis.conf");
    writeFileSync(
      config,
      [
        "bind 127.0.0.1",
        `port ${port}`,
        `dir ${dir}`,
        'save ""',
        "appendonly no",
        "daemonize no",
        'logfile ""',
        "databases 1",
        ...(options.password ? [`requirepass ${options.password}`] : []),
      ].join("\n"),
    );
    const proc = spawn("redis-server", [config], { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    const output: string[] = [];
    exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      proc.once("error", (error) =>
        reject(
          new Error(`cannot run redis-server (${error.message}): run \`bash scripts/setup.sh\`, which installs it`),
        ),
      );
      createInterface({ input: proc.stdout! }).on("line", (line) => {
        output.push(line);
        if (line.includes("Ready to accept connections")) resolve();
      });
      void exited.then(() => reject(new Error(`redis-server exited before it was ready:\n${output.join("\n")}`)));
    });
  };

  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await launch();
      break;
    } catch (error) {
      // Another process may have taken the port between our probe and redis-server's bind.
      if (attempt >= 3) throw error;
    }
  }

  const stop = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT");
      child.kill(signal);
    }
    await exited;
  };

  return {
    port,
    url: `redis://${options.password ? `:${encodeURIComponent(options.password)}@` : ""}127.0.0.1:${port}`,
    stop,
    restart: launch,
    freeze: () => void child?.kill("SIGSTOP"),
    thaw: () => void child?.kill("SIGCONT"),
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
