// docker-compose.yml cannot be run here (no Docker engine), so it is kept right by construction:
// these checks tie it to envoy.yaml, the Dockerfile, the setup script and the config schema. The
// Envoy sidecar script it runs is tested with the real Envoy in shutdown-e2e.test.ts, and the
// image's HEALTHCHECK command against the real service here.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DRAIN_TIME_S, ROOT } from "../src/dev/envoy.js";
import { CONFIG_VARIABLES, ConfigError, loadConfig } from "../src/config.js";
import { credentials } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient } from "../src/gen/chat/v1/chat.js";
import { startFakeUpstream } from "../src/demo/upstream.js";
import { startServiceProcess } from "./support/processes.js";
import { hold } from "./support/gates.js";

const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
const compose = parse(read("docker-compose.yml"));
const envoy = parse(read("envoy.yaml"));
const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const transcoder = hcm.http_filters.find((f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder").typed_config;

describe("docker-compose.yml", () => {
  it("runs the envoyproxy/envoy image of the version the tests run", () => {
    const version = /ENVOY_VERSION=([\d.]+)/.exec(read("scripts/setup.sh"))?.[1];
    expect(compose.services.envoy.image).toBe(`envoyproxy/envoy:v${version}`);
  });

  it("gives Envoy the same envoy.yaml and the descriptor at the path envoy.yaml names", () => {
    const { working_dir: dir, volumes, command } = compose.services.envoy;
    expect(volumes).toContain("./envoy.yaml:/app/envoy.yaml:ro");
    expect(volumes).toContain(`./${transcoder.proto_descriptor}:${dir}/${transcoder.proto_descriptor}:ro`);
    expect(command.slice(2, 5)).toEqual(["envoy", "-c", "/app/envoy.yaml"]);
  });

  it("gives Envoy the chat page's files at the paths envoy.yaml's routes read them from", () => {
    const { working_dir: dir, volumes } = compose.services.envoy;
    const files: string[] = hcm.route_config.virtual_hosts
      .flatMap((host: { routes: { direct_response?: { body?: { filename?: string } } }[] }) => host.routes)
      .flatMap((route: { direct_response?: { body?: { filename?: string } } }) => route.direct_response?.body?.filename ?? []);
    expect(files).toEqual(["dist/page/index.html", "dist/page/app.js", "dist/page/app.css"]);
    for (const file of files) {
      expect(volumes.some((volume: string) => {
        const [from, to] = volume.split(":");
        return file.startsWith(`${from!.replace(/^\.\//, "")}/`) && `${dir}/${file}`.startsWith(`${to}/`);
      }), file).toBe(true);
    }
  });

  it("runs Envoy under the sidecar script, so it outlasts the service's drain instead of exiting on SIGTERM", () => {
    const { volumes, command, environment, stop_grace_period: envoyStop } = compose.services.envoy;
    expect(volumes).toContain("./scripts/envoy-sidecar.sh:/app/envoy-sidecar.sh:ro");
    // bash runs it: the file's mode on the host does not matter, and the envoyproxy/envoy image has bash.
    expect(command.slice(0, 2)).toEqual(["bash", "/app/envoy-sidecar.sh"]);
    expect(command.slice(command.indexOf("--drain-time-s"), command.indexOf("--drain-time-s") + 2)).toEqual(["--drain-time-s", String(DRAIN_TIME_S)]);
    // The sidecar waits as long as the service lets streams run, and neither is killed before.
    const grace = compose.services.chat.environment.SHUTDOWN_GRACE_MS;
    expect(environment.SHUTDOWN_GRACE_MS).toBe(grace);
    const graceMs = Number(/:-(\d+)\}/.exec(grace)?.[1]);
    for (const stop of [envoyStop, compose.services.chat.stop_grace_period]) {
      expect(Number(/^(\d+)s$/.exec(stop)?.[1]) * 1000).toBeGreaterThan(graceMs + 5_000);
    }
  });

  it("puts Envoy in the service's network namespace, where envoy.yaml expects the service", () => {
    expect(compose.services.envoy.network_mode).toBe("service:chat");
    const endpoint = envoy.static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    expect(endpoint.address).toBe("127.0.0.1");
    expect(endpoint.port_value).toBe(loadConfig({ AUTH: "none" }).grpc.port);
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    expect(compose.services.chat.ports).toEqual(expect.arrayContaining([`${endpoint.port_value}:${endpoint.port_value}`, expect.stringMatching(`^${listener}:${listener}`)]));
  });

  it("sets only variables the service's configuration accepts, and with its defaults refuses to start without caller keys", () => {
    const env: Record<string, string> = compose.services.chat.environment;
    for (const name of Object.keys(env)) expect(CONFIG_VARIABLES).toContain(name);
    const defaults = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, /\$\{/.test(v) ? (/:-([^}]*)\}/.exec(v)?.[1] ?? "sk-placeholder") : v]),
    );
    expect(defaults.AUTH).toBe("keys");
    expect(problemsOf(defaults)).toEqual([expect.stringMatching(/^CALLER_KEYS: caller keys are required/)]);
    expect(loadConfig({ ...defaults, CALLER_KEYS: "ops ops-key-0123456789" }).auth?.keys).toHaveLength(1);
    // Opening it takes saying so.
    expect(loadConfig({ ...defaults, AUTH: "none" }).auth).toBeUndefined();
  });

  it("publishes only what caller keys guard, and metrics on the host's loopback only", () => {
    const config = loadConfig({ AUTH: "none" });
    const listener = envoy.static_resources.listeners[0].address.socket_address.port_value;
    const guarded = new Set([config.grpc.port, listener]);
    const metricsPort = Number(/:-(\d+)\}/.exec(compose.services.chat.environment.METRICS_PORT)?.[1]);
    const ports: string[] = compose.services.chat.ports.map((p: string) => p.replace(/\s.*/, ""));
    for (const port of ports) {
      const parts = port.split(":");
      const published = Number(parts.at(-2));
      const onLoopback = parts.length === 3 && parts[0] === "127.0.0.1";
      expect(onLoopback || guarded.has(published), `port ${port}: loopback or behind caller keys`).toBe(true);
    }
    expect(ports).toContain(`127.0.0.1:${metricsPort}:${metricsPort}`);
    expect(compose.services.envoy.ports).toBeUndefined();
  });

  it("builds the image with the descriptor where the service reads it", () => {
    expect(read("Dockerfile")).toContain(`COPY --from=build /app/${transcoder.proto_descriptor} ${transcoder.proto_descriptor}`);
  });
});

describe("Dockerfile", () => {
  const dockerfile = read("Dockerfile");

  it("builds and runs on a pinned base image: the exact Node release the project runs (the `node` package)", () => {
    const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { version: string }> };
    const version = lock.packages["node_modules/node"]?.version;
    expect(version).toMatch(/^24\.\d+\.\d+$/);
    const bases = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(bases).toEqual([`node:${version}-slim`, `node:${version}-slim`]);
  });

  it("has a HEALTHCHECK that runs a script the image builds", () => {
    const healthcheck = /^HEALTHCHECK .*CMD (\[.*\])$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(healthcheck ?? "null")).toEqual(["node", "dist/healthcheck.js"]);
    expect(existsSync(join(ROOT, "src", "healthcheck.ts"))).toBe(true);
  });

  it("whose command passes while the service serves, and fails while it drains and once it is gone", { timeout: 30_000 }, async () => {
    const check = (port: number) =>
      promisify(execFile)(process.execPath, [join(ROOT, "dist", "healthcheck.js")], {
        env: { PATH: process.env.PATH ?? "", GRPC_PORT: String(port), AUTH: "none" },
      }).then(
        ({ stdout }) => ({ code: 0, out: stdout.trim() }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: (e.stdout + e.stderr).trim() }),
      );
    const { promise: held, release } = hold();
    const upstream = await startFakeUpstream({ reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? held : undefined) }) });
    const service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test", SHUTDOWN_GRACE_MS: "60000" });
    const client = new ChatServiceClient(`127.0.0.1:${service.port}`, credentials.createInsecure());
    try {
      expect(await check(service.port)).toEqual({ code: 0, out: "SERVING" });
      // An open stream holds the service in its drain after SIGTERM.
      const call = client.chat(ChatRequest.fromPartial({ text: "hold" }));
      await new Promise((resolve) => call.once("data", resolve));
      service.process.kill("SIGTERM");
      await service.logLine((l) => l.msg === "draining");
      expect(await check(service.port)).toEqual({ code: 1, out: "NOT_SERVING" });
      release();
      expect(await service.stop()).toBe(0);
      const gone = await check(service.port);
      expect(gone.code).toBe(1);
      expect(gone.out).toMatch(/^health check failed: /);
    } finally {
      client.close();
      await service.stop("SIGKILL");
      await upstream.close();
    }
  });
});

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}
