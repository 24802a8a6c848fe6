// A real PostgreSQL server (Debian's package, installed by scripts/setup.sh) for the tests: a new
// cluster in a temporary folder (initdb), on a free loopback port, trust authentication, stopped and
// removed by close(). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../src/dev/free-port.js";

const run = promisify(execFile);

export interface RunningPostgres {
  /** `postgres://gateway@127.0.0.1:<port>/gateway` */
  readonly url: string;
  /** Stops the server (`pg_ctl stop -m fast`: open connections are closed), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same data folder and port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** The newest installed server's bin folder (/usr/lib/postgresql/<major>/bin). */
function binDir(): string {
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (majors.length === 0)
    throw new Error("no PostgreSQL server found: run `bash scripts/setup.sh`, which installs it");
  return join(root, majors[0]!, "bin");
}

export async function startPostgres(): Promise<RunningPostgres> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "chat-postgres-"));
  const asRoot = userInfo().uid === 0;
  if (asRoot) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const pg = (tool: string, args: string[]) =>
    asRoot ? run("runuser", ["-u", "postgres", "--", join(bin, tool), ...args]) : run(join(bin, tool), args);
  const data = join(dir, "data");
  const port = await freePort();
  await pg("initdb", ["-D", data, "-U", "gateway", "-A", "trust", "--no-sync", "-E", "UTF8"]);
  // -k: the socket in the folder (not /var/run/postgresql); fsync off: a test's data need not survive a crash.
  const start = async () => {
    await pg("pg_ctl", [
      "-D",
      data,
      "-w",
      "-l",
      join(dir, "log"),
      "-o",
      `-h 127.0.0.1 -p ${port} -k ${dir} -F`,
      "start",
    ]);
  };
  await start();
  await pg("createdb", ["-h", "127.0.0.1", "-p", String(port), "-U", "gateway", "gateway"]);
  return {
    url: `postgres://gateway@127.0.0.1:${port}/gateway`,
    async stop() {
      await pg("pg_ctl", ["-D", data, "-w", "-m", "fast", "stop"]);
    },
    start,
    async close() {
      await pg("pg_ctl", ["-D", data, "-w", "-m", "immediate", "stop"]).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
