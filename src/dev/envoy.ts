// Runs the real Envoy with the project's envoy.yaml for `npm start`, the end-to-end tests and the
// benchmark. Only addresses are changed (ports, the service's port, the CORS origin), plus what a
// test names to reach a limit quickly (`runtime`, `limits`): the filters, routes and timeouts under
// test are the ones in envoy.yaml. Envoy runs under scripts/envoy-sidecar.sh, as in
// docker-compose.yml: it drains before it stops, and it stops when this process dies, however it dies.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "yaml";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const TOOLS_BIN = join(ROOT, ".tools", "bin");
/** Envoy's `--drain-time-s`: how long a draining listener still accepts connections. */
export const DRAIN_TIME_S = 5;

export interface EnvoyOptions {
  /** Port of the gRPC service Envoy forwards to. */
  servicePort: number;
  /** HTTP listener port; 0 picks a free one. */
  httpPort?: number;
  httpHost?: string;
  /** Admin port; 0 picks a free one. Admin listens on 127.0.0.1 only. */
  adminPort?: number;
  corsAllowOrigin?: string;
  logLevel?: string;
  /** Envoy's own log (warnings, errors) goes here (defaults to this process's stderr). */
  stderr?: "inherit" | "pipe" | "ignore";
  /** Envoy's access log, JSON lines on its stdout: shown, kept (`RunningEnvoy.accessLog`) or dropped (default). */
  accessLog?: "inherit" | "pipe" | "ignore";
  /** Values for envoy.yaml's runtime settings, e.g. `{ "chat_gateway.refuse_grpc_reflection": 100 }`. */
  runtime?: Record<string, number>;
  /** Smaller limits than envoy.yaml's, so a test reaches them at once. */
  limits?: { requestHeadersTimeout?: string; maxDownstreamConnections?: number };
  /** How long the service behind it lets streams run when stopping; `stopGracefully` waits that plus 5 s at most. */
  graceMs?: number;
  /**
   * Serve the listener over TLS with this certificate and key (PEM files), offering HTTP/2 and
   * HTTP/1.1 by ALPN, as the README's TLS snippet does: how browsers reach Envoy over HTTP/2.
   */
  tls?: { certFile: string; keyFile: string };
}

/** Lines an Envoy wrote, as they arrive. */
export interface OutputLines {
  readonly lines: string[];
  /** Resolves with the first line, past or future, that `match` accepts. */
  find(match: (line: string) => boolean): Promise<string>;
}

export interface RunningEnvoy {
  readonly httpPort: number;
  readonly adminPort: number;
  /** Envoy's own process id. */
  readonly pid: number;
  /** The sidecar script Envoy runs under; it exits when Envoy has stopped. */
  readonly process: ChildProcess;
  /** With `accessLog: "pipe"`: the access log's lines. */
  readonly accessLog: OutputLines;
  /** With `stderr: "pipe"`: Envoy's own log lines. */
  readonly log: OutputLines;
  /**
   * Stops taking new requests: fails Envoy's health check (every response then closes its
   * connection) and drains its listeners gracefully. Requests in flight go on.
   */
  drain(): Promise<void>;
  /** Drains, waits until no request is in flight through Envoy (at most graceMs + 5 s), then stops it. */
  stopGracefully(): Promise<void>;
  /** Stops Envoy now, cutting whatever is in flight. */
  stop(): Promise<void>;
}

interface EnvoyRoute {
  direct_response?: { body?: { filename?: string } };
}

interface SocketAddress {
  address: string;
  port_value: number;
}

export function renderEnvoyConfig(options: EnvoyOptions): string {
  const config = parse(readFileSync(join(ROOT, "envoy.yaml"), "utf8"));
  const admin: SocketAddress = config.admin.address.socket_address;
  admin.port_value = options.adminPort ?? 9901;

  const listener: SocketAddress = config.static_resources.listeners[0].address.socket_address;
  listener.port_value = options.httpPort ?? 8080;
  if (options.httpHost) listener.address = options.httpHost;

  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const transcoder = hcm.http_filters.find((f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder");
  transcoder.typed_config.proto_descriptor = join(ROOT, transcoder.typed_config.proto_descriptor);
  // The chat page's files (dist/page), wherever Envoy's working directory is.
  for (const route of hcm.route_config.virtual_hosts.flatMap((host: { routes: EnvoyRoute[] }) => host.routes)) {
    const body = route.direct_response?.body;
    if (body?.filename) body.filename = join(ROOT, body.filename);
  }
  if (options.corsAllowOrigin) {
    const cors = hcm.route_config.virtual_hosts[0].typed_per_filter_config["envoy.filters.http.cors"];
    cors.allow_origin_string_match = [{ exact: options.corsAllowOrigin }];
  }

  // A test may shrink a limit envoy.yaml sets, never add one it lacks.
  const settings = config.layered_runtime?.layers?.[0]?.static_layer ?? {};
  for (const [key, value] of Object.entries(options.runtime ?? {})) {
    if (!(key in settings)) throw new Error(`envoy.yaml has no runtime setting ${key}`);
    settings[key] = value;
  }
  if (options.limits?.requestHeadersTimeout) {
    if (!hcm.request_headers_timeout) throw new Error("envoy.yaml sets no request_headers_timeout");
    hcm.request_headers_timeout = options.limits.requestHeadersTimeout;
  }
  if (options.limits?.maxDownstreamConnections) {
    const monitor = config.overload_manager?.resource_monitors?.find(
      (m: { name: string }) => m.name === "envoy.resource_monitors.global_downstream_max_connections",
    );
    if (!monitor) throw new Error("envoy.yaml sets no global_downstream_max_connections");
    monitor.typed_config.max_active_downstream_connections = options.limits.maxDownstreamConnections;
  }

  if (options.tls) {
    config.static_resources.listeners[0].filter_chains[0].transport_socket = {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        common_tls_context: {
          alpn_protocols: ["h2", "http/1.1"],
          tls_certificates: [{ certificate_chain: { filename: options.tls.certFile }, private_key: { filename: options.tls.keyFile } }],
        },
      },
    };
  }

  const endpoint: SocketAddress =
    config.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  endpoint.port_value = options.servicePort;
  // JSON, which Envoy reads as YAML too, so no scalar changes type between YAML versions.
  return JSON.stringify(config, null, 2);
}

export async function startEnvoy(options: EnvoyOptions): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), "chat-envoy-"));
  const configPath = join(dir, "envoy.json");
  const adminPath = join(dir, "admin-address");
  const pidPath = join(dir, "envoy.pid");
  writeFileSync(configPath, renderEnvoyConfig({ httpPort: 0, adminPort: 0, ...options }));

  const child = spawn(
    "bash",
    [
      join(ROOT, "scripts", "envoy-sidecar.sh"),
      // The pipe on its stdin closes when this process dies, even by SIGKILL: Envoy goes with it.
      "--exit-with-stdin",
      join(TOOLS_BIN, "envoy"),
      "-c", configPath,
      "--admin-address-path", adminPath,
      // Several Envoys (tests, npm start) may run on one machine at once.
      "--disable-hot-restart",
      "--log-level", options.logLevel ?? "warn",
      "--concurrency", "2",
      // Access log lines are written in batches; Envoy's default waits up to 10 s.
      "--file-flush-interval-msec", "200",
      // Once draining, the listener keeps accepting this long (new requests then meet the draining
      // service's 503), then closes. As in docker-compose.yml.
      "--drain-time-s", String(DRAIN_TIME_S),
    ],
    {
      stdio: ["pipe", options.accessLog ?? "ignore", options.stderr ?? "inherit"],
      env: { ...process.env, ENVOY_PID_FILE: pidPath, SHUTDOWN_GRACE_MS: String(options.graceMs ?? 30_000) },
      // Its own process group: Ctrl-C in a terminal signals the whole foreground group at once, and
      // Envoy must wait for the service's streams instead of exiting with them.
      detached: true,
    },
  );
  const accessLog = outputLines(child.stdout);
  const log = outputLines(child.stderr);
  let exited: string | undefined;
  const gone = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exited = `envoy exited (${code ?? signal})`;
      rmSync(dir, { recursive: true, force: true });
      resolve();
    }),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  const admin = (path: string) => (port: number) => fetch(`http://127.0.0.1:${port}${path}`, { method: "POST" }).then((r) => r.text());

  const stop = async () => {
    if (running()) child.stdin?.end();
    await gone;
  };

  try {
    const deadline = Date.now() + 20_000;
    let adminPort = 0;
    let httpPort = 0;
    while (Date.now() < deadline) {
      if (exited) throw new Error(exited);
      try {
        adminPort ||= Number(readFileSync(adminPath, "utf8").trim().split(":").pop());
        const listeners = (await (await fetch(`http://127.0.0.1:${adminPort}/listeners?format=json`)).json()) as {
          listener_statuses: { local_address: { socket_address: { port_value: number } } }[];
        };
        httpPort = listeners.listener_statuses[0]?.local_address.socket_address.port_value ?? 0;
        const clusters = await (await fetch(`http://127.0.0.1:${adminPort}/clusters`)).text();
        // Wait for the first health check to pass, so the first request is routed normally.
        if (httpPort && /chat_service::.*::health_flags::healthy/.test(clusters)) {
          const port = adminPort;
          return {
            httpPort,
            adminPort,
            pid: Number(readFileSync(pidPath, "utf8")),
            process: child,
            accessLog,
            log,
            async drain() {
              await admin("/healthcheck/fail")(port);
              await admin("/drain_listeners?graceful")(port);
            },
            async stopGracefully() {
              if (running()) child.kill("SIGTERM");
              await gone;
            },
            stop,
          };
        }
      } catch {
        // Not up yet.
      }
      await sleep(50);
    }
    throw new Error("envoy did not become ready within 20 s");
  } catch (error) {
    await stop();
    throw error;
  }
}

function outputLines(stream: NodeJS.ReadableStream | null): OutputLines {
  const lines: string[] = [];
  const waiting = new Set<(line: string) => boolean>();
  if (stream) {
    createInterface({ input: stream }).on("line", (line) => {
      lines.push(line);
      for (const check of waiting) if (check(line)) waiting.delete(check);
    });
  }
  return {
    lines,
    find(match) {
      return new Promise((resolve) => {
        const found = lines.find(match);
        if (found !== undefined) return resolve(found);
        waiting.add((line) => (match(line) ? (resolve(line), true) : false));
      });
    },
  };
}
