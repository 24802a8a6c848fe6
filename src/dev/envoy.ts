// Runs the real Envoy with the project's envoy.yaml for `npm start`, `npm run start:cluster`, the
// end-to-end tests and the benchmark, and renders the same file for docker-compose.yml and deploy/.
// Only addresses are changed (ports, the service replicas' addresses, the descriptor's path, the CORS
// origin), plus what a test names to reach a limit quickly (`runtime`, `limits`): the filters, routes,
// timeouts and load-balancing settings under test are the ones in envoy.yaml. Envoy runs under
// scripts/envoy-sidecar.sh, as in docker-compose.yml and deploy/: it drains before it stops, and it
// stops when this process dies, however it dies.
import { spawn, type ChildProcess } from "node:child_process";
import { isIP } from "node:net";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { parse } from "yaml";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const TOOLS_BIN = join(ROOT, ".tools", "bin");
/** Envoy's `--drain-time-s`: how long a draining listener still accepts connections. */
export const DRAIN_TIME_S = 5;

/** One address of the gRPC service: an IP and port, or a DNS name standing for every replica it resolves to. */
export interface ServiceEndpoint {
  address: string;
  port: number;
}

export interface EnvoyOptions {
  /** Port of the one gRPC service on 127.0.0.1 that Envoy forwards to (`npm start`, most tests). */
  servicePort?: number;
  /**
   * The service replicas Envoy balances over, instead of `servicePort`: several ports on this
   * machine (`npm run start:cluster`), or a DNS name that resolves to every replica (docker
   * compose's `chat`, a Kubernetes headless Service), which makes the cluster STRICT_DNS.
   */
  serviceEndpoints?: readonly ServiceEndpoint[];
  /** Where Envoy reads the descriptor set (default: this checkout's, by absolute path). */
  descriptorPath?: string;
  /** Where Envoy reads the chat page's files (default: this checkout's dist/page). */
  pageDir?: string;
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
  /**
   * Smaller limits than envoy.yaml's, so a test reaches them at once; and a slower health check, so a
   * test can see what happens before Envoy's next one.
   */
  limits?: {
    requestHeadersTimeout?: string;
    streamIdleTimeout?: string;
    maxDownstreamConnections?: number;
    healthCheckInterval?: string;
  };
  /** How long the service behind it lets streams run when stopping; `stopGracefully` waits that plus 5 s at most. */
  graceMs?: number;
  /**
   * Serve the listener over TLS with this certificate and key (PEM files), offering HTTP/2 and
   * HTTP/1.1 by ALPN, as the TLS snippet in docs/operations.md does: how browsers reach Envoy over HTTP/2.
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

/** envoy.yaml as parsed: untyped (what is changed here is a small part of Envoy's schema). */
type EnvoyYaml = ReturnType<typeof parse>;

export function renderEnvoyConfig(options: EnvoyOptions): string {
  const config: EnvoyYaml = parse(readFileSync(join(ROOT, "envoy.yaml"), "utf8"));
  applyAddresses(config, options);
  applyTestLimits(config, options);
  if (options.tls) applyTls(config, options.tls);
  applyHealthCheckInterval(config, options);
  applyServiceEndpoints(config, options);
  // JSON, which Envoy reads as YAML too, so no scalar changes type between YAML versions.
  return JSON.stringify(config, null, 2);
}

/** Sets the admin and listener addresses, the descriptor's and the page files' paths, and the CORS origin. */
function applyAddresses(config: EnvoyYaml, options: EnvoyOptions): void {
  const admin: SocketAddress = config.admin.address.socket_address;
  admin.port_value = options.adminPort ?? 9901;

  const listener: SocketAddress = config.static_resources.listeners[0].address.socket_address;
  listener.port_value = options.httpPort ?? 8080;
  if (options.httpHost) listener.address = options.httpHost;

  const hcm = httpConnectionManager(config);
  const transcoder = hcm.http_filters.find(
    (f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder",
  );
  transcoder.typed_config.proto_descriptor =
    options.descriptorPath ?? join(ROOT, transcoder.typed_config.proto_descriptor);
  // The chat page's files (dist/page): in this checkout, or where a deployment mounts them.
  for (const route of hcm.route_config.virtual_hosts.flatMap((host: { routes: EnvoyRoute[] }) => host.routes)) {
    const body = route.direct_response?.body;
    if (body?.filename)
      body.filename = options.pageDir ? join(options.pageDir, basename(body.filename)) : join(ROOT, body.filename);
  }
  if (options.corsAllowOrigin) {
    const cors = hcm.route_config.virtual_hosts[0].typed_per_filter_config["envoy.filters.http.cors"];
    cors.allow_origin_string_match = [{ exact: options.corsAllowOrigin }];
  }
}

/** Shrinks envoy.yaml's runtime settings and limits to what a test names; throws for one it lacks. */
function applyTestLimits(config: EnvoyYaml, options: EnvoyOptions): void {
  const hcm = httpConnectionManager(config);
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
  if (options.limits?.streamIdleTimeout) {
    if (!hcm.stream_idle_timeout) throw new Error("envoy.yaml sets no stream_idle_timeout");
    hcm.stream_idle_timeout = options.limits.streamIdleTimeout;
  }
  if (options.limits?.maxDownstreamConnections) {
    const monitor = config.overload_manager?.resource_monitors?.find(
      (m: { name: string }) => m.name === "envoy.resource_monitors.global_downstream_max_connections",
    );
    if (!monitor) throw new Error("envoy.yaml sets no global_downstream_max_connections");
    monitor.typed_config.max_active_downstream_connections = options.limits.maxDownstreamConnections;
  }
}

/** The listener's HTTP connection manager: its filters, routes and timeouts. */
function httpConnectionManager(config: EnvoyYaml): EnvoyYaml {
  return config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
}

/** Serves the listener over TLS with this certificate and key, offering HTTP/2 and HTTP/1.1 by ALPN. */
function applyTls(config: EnvoyYaml, tls: NonNullable<EnvoyOptions["tls"]>): void {
  config.static_resources.listeners[0].filter_chains[0].transport_socket = {
    name: "envoy.transport_sockets.tls",
    typed_config: {
      "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
      common_tls_context: {
        alpn_protocols: ["h2", "http/1.1"],
        tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }],
      },
    },
  };
}

/** A test's slower health check of the service's replicas; throws when envoy.yaml has none. */
function applyHealthCheckInterval(config: EnvoyYaml, options: EnvoyOptions): void {
  if (options.limits?.healthCheckInterval) {
    const check = config.static_resources.clusters.find((c: { name: string }) => c.name === SERVICE_CLUSTER)
      ?.health_checks?.[0];
    if (!check) throw new Error("envoy.yaml sets no health check");
    check.interval = check.no_traffic_interval = options.limits.healthCheckInterval;
  }
}

/** Puts the service's replicas in its cluster, which becomes a DNS cluster when one is a name. */
function applyServiceEndpoints(config: EnvoyYaml, options: EnvoyOptions): void {
  // The replicas: envoy.yaml names one (127.0.0.1:50051); its entry is the pattern for each.
  const cluster = config.static_resources.clusters.find((c: { name: string }) => c.name === SERVICE_CLUSTER);
  const locality = cluster.load_assignment.endpoints[0];
  const [pattern] = locality.lb_endpoints;
  const endpoints = serviceEndpointsOf(options);
  locality.lb_endpoints = endpoints.map(({ address, port }) => {
    const entry = structuredClone(pattern);
    entry.endpoint.address.socket_address = { ...entry.endpoint.address.socket_address, address, port_value: port };
    return entry;
  });
  // A name (not an IP) stands for every replica it resolves to: compose's service name, a
  // Kubernetes headless Service (whose answers are the ready pods). Resolved again every 5 s, so a
  // new replica gets streams within seconds of being ready and a removed one leaves; between two
  // resolutions the health check and outlier detection cover a replica that went away.
  if (endpoints.some((e) => isIP(e.address) === 0)) {
    delete cluster.type;
    cluster.cluster_type = {
      name: "envoy.cluster.dns",
      typed_config: {
        "@type": "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
        dns_refresh_rate: "5s",
        dns_lookup_family: "V4_PREFERRED",
      },
    };
  }
}

/** The cluster in envoy.yaml that holds the service's replicas. */
export const SERVICE_CLUSTER = "chat_service";

function serviceEndpointsOf(options: EnvoyOptions): readonly ServiceEndpoint[] {
  if (options.serviceEndpoints && options.servicePort !== undefined)
    throw new Error("give servicePort or serviceEndpoints, not both");
  const endpoints =
    options.serviceEndpoints ??
    (options.servicePort === undefined ? [] : [{ address: "127.0.0.1", port: options.servicePort }]);
  if (endpoints.length === 0) throw new Error("no service endpoint for Envoy: give servicePort or serviceEndpoints");
  return endpoints;
}

/** One replica as Envoy sees it (admin `/clusters`). */
export interface ClusterHost {
  address: string;
  port: number;
  /** Envoy's health flags for it: `healthy`, or e.g. `/failed_active_hc`, `/failed_outlier_check`. */
  healthFlags: string;
  /** Requests (streams) in flight to it now, and routed to it so far. */
  rqActive: number;
  rqTotal: number;
}

/** The service's replicas as the Envoy behind this admin port sees them now. */
export async function serviceHosts(adminPort: number): Promise<ClusterHost[]> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/clusters`)).text();
  const hosts = new Map<string, ClusterHost>();
  for (const line of text.split("\n")) {
    const m = /^([^:]+)::([\d.]+):(\d+)::(health_flags|rq_active|rq_total)::(.*)$/.exec(line.trim());
    if (!m || m[1] !== SERVICE_CLUSTER) continue;
    const key = `${m[2]}:${m[3]}`;
    const host = hosts.get(key) ?? { address: m[2]!, port: Number(m[3]), healthFlags: "", rqActive: 0, rqTotal: 0 };
    if (m[4] === "health_flags") host.healthFlags = m[5]!;
    else if (m[4] === "rq_active") host.rqActive = Number(m[5]);
    else host.rqTotal = Number(m[5]);
    hosts.set(key, host);
  }
  return [...hosts.values()];
}

export async function startEnvoy(options: EnvoyOptions): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), "chat-envoy-"));
  const paths: SidecarPaths = {
    config: join(dir, "envoy.json"),
    admin: join(dir, "admin-address"),
    pid: join(dir, "envoy.pid"),
  };
  writeFileSync(paths.config, renderEnvoyConfig({ httpPort: 0, adminPort: 0, ...options }));
  // Ready once every replica on this machine has passed its first health check (a DNS name: one).
  const endpoints = serviceEndpointsOf(options);
  const replicas = endpoints.every((e) => isIP(e.address) !== 0) ? endpoints.length : 1;

  const child = spawnSidecar(options, paths);
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
  const admin = (path: string) => (port: number) =>
    fetch(`http://127.0.0.1:${port}${path}`, { method: "POST" }).then((r) => r.text());

  const stop = async () => {
    if (running()) child.stdin?.end();
    await gone;
  };

  try {
    const { httpPort, adminPort, pid } = await untilReady(paths, replicas, () => exited);
    return {
      httpPort,
      adminPort,
      pid,
      process: child,
      accessLog,
      log,
      async drain() {
        await admin("/healthcheck/fail")(adminPort);
        await admin("/drain_listeners?graceful")(adminPort);
      },
      async stopGracefully() {
        if (running()) child.kill("SIGTERM");
        await gone;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Where the sidecar's Envoy reads its configuration and writes its admin address and process id. */
interface SidecarPaths {
  config: string;
  admin: string;
  pid: string;
}

/** Starts Envoy under scripts/envoy-sidecar.sh in a process group of its own. */
function spawnSidecar(options: EnvoyOptions, paths: SidecarPaths): ChildProcess {
  return spawn(
    "bash",
    [
      join(ROOT, "scripts", "envoy-sidecar.sh"),
      // The pipe on its stdin closes when this process dies, even by SIGKILL: Envoy goes with it.
      "--exit-with-stdin",
      join(TOOLS_BIN, "envoy"),
      "-c",
      paths.config,
      "--admin-address-path",
      paths.admin,
      // Several Envoys (tests, npm start) may run on one machine at once.
      "--disable-hot-restart",
      "--log-level",
      options.logLevel ?? "warn",
      "--concurrency",
      "2",
      // Access log lines are written in batches; Envoy's default waits up to 10 s.
      "--file-flush-interval-msec",
      "200",
      // Once draining, the listener keeps accepting this long (new requests then meet the draining
      // service's 503), then closes. As in docker-compose.yml.
      "--drain-time-s",
      String(DRAIN_TIME_S),
    ],
    {
      stdio: ["pipe", options.accessLog ?? "ignore", options.stderr ?? "inherit"],
      env: { ...process.env, ENVOY_PID_FILE: paths.pid, SHUTDOWN_GRACE_MS: String(options.graceMs ?? 30_000) },
      // Its own process group: Ctrl-C in a terminal signals the whole foreground group at once, and
      // Envoy must wait for the service's streams instead of exiting with them.
      detached: true,
    },
  );
}

/**
 * Polls every 50 ms, for 20 s at most, until Envoy's listener is up and `replicas` replicas are
 * healthy: then its ports and process id. Throws once `exited` says Envoy is gone.
 */
async function untilReady(
  paths: SidecarPaths,
  replicas: number,
  exited: () => string | undefined,
): Promise<{ httpPort: number; adminPort: number; pid: number }> {
  const deadline = Date.now() + 20_000;
  let adminPort = 0;
  let httpPort = 0;
  while (Date.now() < deadline) {
    const why = exited();
    if (why) throw new Error(why);
    try {
      adminPort ||= Number(readFileSync(paths.admin, "utf8").trim().split(":").pop());
      const listeners = (await (await fetch(`http://127.0.0.1:${adminPort}/listeners?format=json`)).json()) as {
        listener_statuses: { local_address: { socket_address: { port_value: number } } }[];
      };
      httpPort = listeners.listener_statuses[0]?.local_address.socket_address.port_value ?? 0;
      // Wait for the first health checks to pass, so the first requests are routed normally.
      const healthy = (await serviceHosts(adminPort)).filter((h) => h.healthFlags === "healthy").length;
      if (httpPort && healthy >= replicas) return { httpPort, adminPort, pid: Number(readFileSync(paths.pid, "utf8")) };
    } catch {
      // Not up yet.
    }
    await sleep(50);
  }
  throw new Error("envoy did not become ready within 20 s");
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
