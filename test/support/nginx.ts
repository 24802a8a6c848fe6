// A real nginx (Debian's package) as a reverse proxy in front of Envoy, as a deployment would run
// it: its own configuration in a temporary directory, on a free loopback port, one process
// (`master_process off`, so it runs as whoever runs the tests), stopped with the test.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { freePort } from "../../src/dev/free-port.js";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The nginx binary, when installed (scripts/setup.sh installs it as root). */
export const NGINX = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"].find((path) => existsSync(path));

export interface RunningNginx {
  readonly port: number;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** Envoy's HTTP port on 127.0.0.1. */
  upstreamPort: number;
  /** `proxy_read_timeout`: the longest nginx waits between two reads from Envoy (nginx's default: 60s). */
  readTimeout: string;
}

export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  if (!NGINX) throw new Error("nginx is not installed (scripts/setup.sh installs Debian's nginx-light as root)");
  const dir = mkdtempSync(join(tmpdir(), "chat-nginx-"));
  const port = await freePort();
  // The settings a streaming deployment needs: HTTP/1.1 to the upstream, no buffering of the
  // response (Envoy also sends X-Accel-Buffering: no), and a read timeout.
  writeFileSync(
    join(dir, "nginx.conf"),
    `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${options.upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout ${options.readTimeout};
    }
  }
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ["-p", dir, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit");
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const log = existsSync(join(dir, "error.log")) ? readFileSync(join(dir, "error.log"), "utf8") : "";
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start: ${stderr}${log}`);
    }
    await sleep(20);
  }
  return {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
