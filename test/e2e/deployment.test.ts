// docker-compose.yml and deploy/ cannot be run here (no Docker engine, no cluster), so they are kept
// right by construction: these checks tie them to envoy.yaml, the Dockerfile, the setup script, the
// config schema and the renderer (deploy/'s manifests are also validated against the Kubernetes
// schemas by scripts/check.sh). The Envoy drain script they run is tested with the real Envoy in
// shutdown.test.ts, its probe mode here, and the image's HEALTHCHECK command against the real
// service here.
import { problemsOf } from "../support/config.js";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { DRAIN_TIME_S, ROOT, SERVICE_CLUSTER, startEnvoy } from "../../src/dev/envoy.js";
import { ENVOY_CONFIG_DIR, REPLICAS_SERVICE, renderDeploy } from "../../src/dev/render-deploy.js";
import { CONFIG_VARIABLES, loadConfig } from "../../src/server/config.js";
import { loadLauncherConfig } from "../../src/dev/config.js";
import { CHAT_SERVICE_NAME, FORCE_AFTER_GRACE_MS } from "../../src/server/server.js";
import { credentials } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream } from "../support/fake-model.js";
import { startServiceProcess } from "../support/processes.js";
import { hold } from "../support/gates.js";
import { httpChat, tokensFor, promptOf } from "../support/replicas.js";

const read = (file: string) => readFileSync(join(ROOT, file), "utf8");
const compose = parse(read("docker-compose.yml"));
const envoy = parse(read("envoy.yaml"));
const hcm = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
const transcoder = hcm.http_filters.find(
  (f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder",
).typed_config;
const listenerPort: number = envoy.static_resources.listeners[0].address.socket_address.port_value;
const envoyVersion = /ENVOY_VERSION=([\d.]+)/.exec(read("scripts/setup.sh"))?.[1];
/** The front Envoy's files as deploy:render writes them (deploy/generated/, here in a scratch folder). */
const rendered = mkdtempSync(join(tmpdir(), "chat-deploy-"));
const renderedFiles = renderDeploy(rendered);
const renderedEnvoy = JSON.parse(readFileSync(join(rendered, "envoy.json"), "utf8"));
afterAll(() => rmSync(rendered, { recursive: true, force: true }));
const KNOWN = new Set(CONFIG_VARIABLES);
/** A compose value with each `${VAR:-default}` as its default (`${VAR:?...}`, required: a placeholder). */
const defaultOf = (value: unknown) =>
  String(value).replace(/\$\{[^}]*\}/g, (ref) => /:-([^}]*)\}/.exec(ref)?.[1] ?? "sk-placeholder");

describe("the front Envoy's files, as deploy:render writes them", () => {
  it("are envoy.yaml for the replicas behind one DNS name, reading the descriptor where compose and deploy/ mount it", () => {
    expect(renderedFiles.sort()).toEqual([
      "app.css",
      "app.js",
      "chat.binpb",
      "envoy-sidecar.sh",
      "envoy.json",
      "index.html",
    ]);
    const cluster = renderedEnvoy.static_resources.clusters.find((c: { name: string }) => c.name === SERVICE_CLUSTER);
    expect(cluster.type).toBeUndefined();
    expect(cluster.cluster_type.typed_config["@type"]).toBe(
      "type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster",
    );
    const endpoints = cluster.load_assignment.endpoints[0].lb_endpoints.map(
      (e: { endpoint: { address: { socket_address: unknown } } }) => e.endpoint.address.socket_address,
    );
    expect(endpoints).toEqual([{ address: REPLICAS_SERVICE.address, port_value: REPLICAS_SERVICE.port }]);
    // Everything else is envoy.yaml's: the balancing, health checks, ejection, the listener.
    const own = envoy.static_resources.clusters.find((c: { name: string }) => c.name === SERVICE_CLUSTER);
    for (const key of ["lb_policy", "health_checks", "outlier_detection", "circuit_breakers"])
      expect(cluster[key]).toEqual(own[key]);
    expect(renderedEnvoy.static_resources.listeners[0].address.socket_address).toEqual(
      envoy.static_resources.listeners[0].address.socket_address,
    );
    expect(renderedEnvoy.admin.address.socket_address).toEqual({ address: "127.0.0.1", port_value: 9901 });
    const renderedTranscoder =
      renderedEnvoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters.find(
        (f: { name: string }) => f.name === "envoy.filters.http.grpc_json_transcoder",
      ).typed_config;
    expect(renderedTranscoder.proto_descriptor).toBe(`${ENVOY_CONFIG_DIR}/chat.binpb`);
    expect(readFileSync(join(rendered, "chat.binpb"))).toEqual(readFileSync(join(ROOT, transcoder.proto_descriptor)));
    expect(readFileSync(join(rendered, "envoy-sidecar.sh"), "utf8")).toBe(read("scripts/envoy-sidecar.sh"));
  });

  it("make a DNS cluster that finds a replica by name and serves through it", { timeout: 30_000 }, async () => {
    const upstream = await startFakeUpstream({ reply: (r) => ({ tokens: tokensFor(promptOf(r)) }) });
    const service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });
    const proxy = await startEnvoy({
      serviceEndpoints: [{ address: "localhost", port: service.port }],
      httpHost: "127.0.0.1",
      stderr: "ignore",
    }).catch(async (error: unknown) => {
      await service.stop("SIGKILL");
      await upstream.close();
      throw error;
    });
    try {
      const o = await httpChat(proxy.httpPort, "by name").done;
      expect(o).toMatchObject({ ok: true, text: tokensFor("by name").join("") });
    } finally {
      await proxy.stop();
      await service.stop("SIGKILL");
      await upstream.close();
    }
  });
});

describe("docker-compose.yml", () => {
  const { chat, envoy: front, redis, postgres } = compose.services;
  const chatEnv: Record<string, string> = chat.environment;

  it("runs replicas of the service, Redis, PostgreSQL, and one front Envoy: the shape of deploy/", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["chat", "envoy", "postgres", "redis"]);
    expect(defaultOf(chat.deploy.replicas)).toBe(String(loadLauncherConfig({}).replicas));
    expect(front.network_mode).toBeUndefined();
    expect(front.depends_on).toEqual(["chat"]);
    // The service migrates the schema at start and exits without its database: it waits for it.
    expect(chat.depends_on).toEqual({
      redis: { condition: "service_started" },
      postgres: { condition: "service_healthy" },
    });
    expect(postgres.healthcheck.test).toContain("pg_isready");
  });

  it("gives the replicas the PostgreSQL it runs, its password from one variable (a demo default), kept on a volume", () => {
    const url = new URL(defaultOf(chatEnv.DATABASE_URL));
    expect([url.protocol, url.hostname, url.port, url.username, url.pathname]).toEqual([
      "postgres:",
      "postgres",
      "5432",
      postgres.environment.POSTGRES_USER,
      `/${postgres.environment.POSTGRES_DB}`,
    ]);
    // The password: the same variable, with the same default, in the URL and in the server's setting.
    const password = postgres.environment.POSTGRES_PASSWORD;
    expect(password).toMatch(/^\$\{POSTGRES_PASSWORD:-[^}]+\}$/);
    expect(chatEnv.DATABASE_URL).toContain(`:${password}@`);
    const defaults = Object.fromEntries(Object.entries(chatEnv).map(([k, v]) => [k, defaultOf(v)]));
    expect(loadConfig({ ...defaults, AUTH: "none" }).conversations.databaseUrl).toBe(url.href);
    expect(postgres.ports).toBeUndefined();
    expect(postgres.volumes).toEqual(["postgres-data:/var/lib/postgresql/data"]);
    expect(Object.keys(compose.volumes)).toEqual(["postgres-data"]);
    // The major version the tests run on (Debian's, test/support/postgres.ts).
    const majors = readdirSync("/usr/lib/postgresql");
    expect(majors).toContain(/^postgres:(\d+)\.\d+-alpine$/.exec(postgres.image)?.[1]);
  });

  it("runs the envoyproxy/envoy image of the version the tests run, with deploy:render's files where they name each other", () => {
    expect(front.image).toBe(`envoyproxy/envoy:v${envoyVersion}`);
    expect(front.volumes).toEqual([`./deploy/generated:${ENVOY_CONFIG_DIR}:ro`]);
    expect(front.command.slice(0, 5)).toEqual([
      "bash",
      `${ENVOY_CONFIG_DIR}/envoy-sidecar.sh`,
      "envoy",
      "-c",
      `${ENVOY_CONFIG_DIR}/envoy.json`,
    ]);
    expect(
      front.command.slice(front.command.indexOf("--drain-time-s"), front.command.indexOf("--drain-time-s") + 2),
    ).toEqual(["--drain-time-s", String(DRAIN_TIME_S)]);
  });

  it("gives Envoy the chat page's files where the rendered routes read them", () => {
    const files: string[] =
      renderedEnvoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts
        .flatMap((host: { routes: { direct_response?: { body?: { filename?: string } } }[] }) => host.routes)
        .flatMap(
          (route: { direct_response?: { body?: { filename?: string } } }) =>
            route.direct_response?.body?.filename ?? [],
        );
    expect(files).toEqual(["index.html", "app.js", "app.css"].map((f) => `${ENVOY_CONFIG_DIR}/${f}`));
    for (const file of files)
      expect(readFileSync(join(rendered, file.slice(ENVOY_CONFIG_DIR.length + 1)))).toEqual(
        readFileSync(join(ROOT, "dist", "page", file.split("/").pop()!)),
      );
  });

  it("names the replicas as the rendered Envoy config does: the service `chat`, on its gRPC port", () => {
    expect(REPLICAS_SERVICE.address).toBe("chat");
    expect(Number(defaultOf(chatEnv.GRPC_PORT))).toBe(REPLICAS_SERVICE.port);
    expect(chat.ports).toBeUndefined(); // replicas are reached through Envoy only; many cannot share a host port
  });

  it("gives the replicas the Redis it runs", () => {
    expect(redis.image).toMatch(/^redis:\d+\.\d+\.\d+-alpine$/);
    expect(chatEnv.REDIS_URL).toBe("redis://redis:6379");
  });

  it("lets streams finish on stop: Envoy's drain waits as long as the replicas', and neither is killed before", () => {
    const grace = chatEnv.SHUTDOWN_GRACE_MS!;
    expect(front.environment.SHUTDOWN_GRACE_MS).toBe(grace);
    const graceMs = Number(defaultOf(grace));
    for (const stop of [front.stop_grace_period, chat.stop_grace_period]) {
      expect(Number(/^(\d+)s$/.exec(stop)?.[1]) * 1000).toBeGreaterThan(graceMs + FORCE_AFTER_GRACE_MS);
    }
  });

  it("sets only variables the service reads, and with its defaults refuses to start without caller keys", () => {
    for (const name of Object.keys(chatEnv)) expect(KNOWN, name).toContain(name);
    const defaults = Object.fromEntries(Object.entries(chatEnv).map(([k, v]) => [k, defaultOf(v)]));
    expect(defaults.AUTH).toBe("keys");
    expect(problemsOf(defaults)).toEqual([expect.stringMatching(/^CALLER_KEYS: caller keys are required/)]);
    expect(loadConfig({ ...defaults, CALLER_KEYS: "ops ops-key-0123456789" }).auth?.keys).toHaveLength(1);
    expect(loadConfig({ ...defaults, AUTH: "none" }).auth).toBeUndefined();
  });

  it("publishes Envoy's listener only (behind the caller keys); nothing else, metrics included", () => {
    expect(front.ports).toEqual([expect.stringMatching(new RegExp(`^${listenerPort}:${listenerPort}(\\s|$)`))]);
    expect(redis.ports).toBeUndefined();
    expect(postgres.ports).toBeUndefined();
    expect(chat.ports).toBeUndefined();
  });

  it("builds the image with the descriptor where the service reads it", () => {
    expect(read("Dockerfile")).toContain(
      `COPY --from=build /app/${transcoder.proto_descriptor} ${transcoder.proto_descriptor}`,
    );
  });
});

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  // biome-ignore lint/suspicious/noExplicitAny: parsed YAML, read field by field
  spec: Record<string, any>;
  [key: string]: unknown;
}

describe("deploy/ (Kubernetes)", () => {
  const kustomization = parse(read("deploy/kustomization.yaml"));
  const objects: K8sObject[] = (kustomization.resources as string[]).flatMap((file) =>
    parseAllDocuments(read(`deploy/${file}`)).map((d) => d.toJS() as K8sObject),
  );
  const find = (kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`deploy/ has no ${kind} ${name}`);
    return found;
  };
  const workloads = objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
  const chat = find("Deployment", "chat");
  const edge = find("Deployment", "chat-edge");
  const env = Object.fromEntries(
    read("deploy/chat.env")
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("#"))
      .map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]),
  );
  const graceMs = Number(env.SHUTDOWN_GRACE_MS);
  const container = (d: K8sObject) => d.spec.template.spec.containers[0];
  const preStopSleepMs = (d: K8sObject) => {
    const command: string[] = container(d).lifecycle.preStop.exec.command;
    expect(command[0]).toBe("sleep");
    return Number(command[1]) * 1000;
  };

  it("runs every container as a non-root user, on a read-only root filesystem, with no privilege to gain", () => {
    expect(workloads.map((d) => d.metadata.name).sort()).toEqual(["chat", "chat-edge", "chat-postgres", "chat-redis"]);
    for (const d of workloads) {
      const pod = d.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot, d.metadata.name).toBe(true);
      expect(pod.securityContext.runAsUser, d.metadata.name).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of pod.containers) {
        expect(c.securityContext, `${d.metadata.name}/${c.name}`).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        });
      }
    }
  });

  it("sets resource requests and limits on every container, requests within limits", () => {
    const quantity = (q: string) => {
      const m = /^(\d+(?:\.\d+)?)(m|Mi|Gi)?$/.exec(String(q));
      if (!m) throw new Error(`unexpected quantity ${q}`);
      return Number(m[1]) * ({ m: 0.001, Mi: 2 ** 20, Gi: 2 ** 30 }[m[2] as "m"] ?? 1);
    };
    for (const d of workloads) {
      for (const c of d.spec.template.spec.containers) {
        for (const resource of ["cpu", "memory"]) {
          const { requests, limits } = c.resources;
          expect(quantity(requests[resource]), `${d.metadata.name} ${resource}`).toBeLessThanOrEqual(
            quantity(limits[resource]),
          );
        }
      }
    }
  });

  it("probes the replicas with the native gRPC probe: readiness on chat.v1.ChatService (NOT_SERVING while draining), liveness on the server", () => {
    const c = container(chat);
    const grpcPort = loadConfig({ ...env, AUTH: "none", CALLER_KEYS_FILE: undefined }).grpc.port;
    expect(c.ports).toContainEqual({ name: "grpc", containerPort: grpcPort });
    expect(c.readinessProbe.grpc).toEqual({ port: grpcPort, service: CHAT_SERVICE_NAME });
    expect(c.startupProbe.grpc).toEqual({ port: grpcPort, service: CHAT_SERVICE_NAME });
    expect(c.livenessProbe.grpc).toEqual({ port: grpcPort });
  });

  it("gives every pod longer to stop than its preStop and drain take, and the edge's drain as long as the replicas'", () => {
    // The replica: preStop, then SHUTDOWN_GRACE_MS for open streams, then the service's hard deadline.
    expect(chat.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      preStopSleepMs(chat) + graceMs + FORCE_AFTER_GRACE_MS,
    );
    // The edge: preStop, then envoy-sidecar.sh waits SHUTDOWN_GRACE_MS + 5 s for HTTP streams.
    const sidecarGrace = container(edge).env.find((e: { name: string }) => e.name === "SHUTDOWN_GRACE_MS");
    expect(sidecarGrace.valueFrom.configMapKeyRef).toEqual({ name: "chat-gateway-env", key: "SHUTDOWN_GRACE_MS" });
    const sidecarExtraMs = Number(/extra_ms=(\d+)/.exec(read("scripts/envoy-sidecar.sh"))?.[1]);
    expect(edge.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      preStopSleepMs(edge) + graceMs + sidecarExtraMs,
    );
  });

  it("has a PodDisruptionBudget and a HorizontalPodAutoscaler for the replicas and the edge", () => {
    for (const d of [chat, edge]) {
      const labels = d.spec.selector.matchLabels;
      expect(d.spec.template.metadata.labels).toMatchObject(labels);
      const pdb = objects.find(
        (o) =>
          o.kind === "PodDisruptionBudget" && JSON.stringify(o.spec.selector.matchLabels) === JSON.stringify(labels),
      );
      expect(pdb, d.metadata.name).toBeDefined();
      const hpa = objects.find(
        (o) => o.kind === "HorizontalPodAutoscaler" && o.spec.scaleTargetRef.name === d.metadata.name,
      );
      expect(hpa?.spec.scaleTargetRef.kind).toBe("Deployment");
      // Never fewer pods than a disruption may leave standing with one down.
      expect(hpa!.spec.minReplicas - (pdb!.spec.maxUnavailable as number)).toBeGreaterThanOrEqual(1);
    }
  });

  it("lets Envoy find the replicas where deploy:render points it: the headless Service `chat` on the gRPC port", () => {
    const service = find("Service", REPLICAS_SERVICE.address);
    expect(service.spec.clusterIP).toBe("None");
    expect(service.spec.selector).toEqual(chat.spec.selector.matchLabels);
    expect(service.spec.ports.find((p: { name: string }) => p.name === "grpc").port).toBe(REPLICAS_SERVICE.port);
    expect(Number(env.GRPC_PORT)).toBe(REPLICAS_SERVICE.port);
  });

  it("runs the edge on the rendered files, mounted where they name each other, under the drain script", () => {
    const c = container(edge);
    expect(c.image).toBe(`envoyproxy/envoy:v${envoyVersion}`);
    expect(c.command.slice(0, 5)).toEqual([
      "bash",
      `${ENVOY_CONFIG_DIR}/envoy-sidecar.sh`,
      "envoy",
      "-c",
      `${ENVOY_CONFIG_DIR}/envoy.json`,
    ]);
    expect(c.volumeMounts).toContainEqual({ name: "config", mountPath: ENVOY_CONFIG_DIR, readOnly: true });
    const volume = edge.spec.template.spec.volumes.find((v: { name: string }) => v.name === "config");
    const generator = kustomization.configMapGenerator.find((g: { name: string }) => g.name === volume.configMap.name);
    expect(generator.files.sort()).toEqual(renderedFiles.map((f) => `generated/${f}`).sort());
    expect(c.ports).toEqual([{ name: "http", containerPort: listenerPort }]);
    // Probes ask Envoy's admin (loopback only) through the drain script's probe mode.
    const adminFile = c.command[c.command.indexOf("--admin-address-path") + 1];
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      expect(probe.exec.command).toEqual(["bash", `${ENVOY_CONFIG_DIR}/envoy-sidecar.sh`, "--ready", adminFile]);
    }
    const front = find("Service", "chat-gateway");
    expect(front.spec.selector).toEqual(edge.spec.selector.matchLabels);
    expect(front.spec.ports).toEqual([{ name: "http", port: listenerPort, targetPort: "http" }]);
  });

  it("configures the replicas with variables the service reads, closed by default, with the Redis it deploys", () => {
    for (const name of Object.keys(env)) expect(KNOWN, name).toContain(name);
    const dir = mkdtempSync(join(tmpdir(), "chat-keys-"));
    try {
      writeFileSync(join(dir, "caller-keys"), "billing billing-key-0123456789\n");
      const config = loadConfig({
        ...env,
        CALLER_KEYS_FILE: join(dir, "caller-keys"),
        OPENAI_API_KEY: "sk-placeholder",
      });
      expect(config.auth?.keys.map((k) => k.name)).toEqual(["billing"]);
      expect(config.metrics).toEqual({ host: "0.0.0.0", port: Number(env.METRICS_PORT) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const mount = container(chat).volumeMounts.find((m: { name: string }) => m.name === "secrets");
    expect(env.CALLER_KEYS_FILE).toBe(`${mount.mountPath}/caller-keys`);
    const redis = find("Service", "chat-redis");
    expect(env.REDIS_URL).toBe(`redis://${redis.metadata.name}:${redis.spec.ports[0].port}`);
    expect(kustomization.configMapGenerator.find((g: { name: string }) => g.name === "chat-gateway-env").envs).toEqual([
      "chat.env",
    ]);
  });

  it("gives the replicas the PostgreSQL it deploys through the Secret only, reachable from the replicas alone", () => {
    const secretRef = (c: { env: { name: string; valueFrom?: { secretKeyRef?: unknown } }[] }, name: string) =>
      c.env.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
    expect(secretRef(container(chat), "DATABASE_URL")).toEqual({ name: "chat-gateway-secrets", key: "DATABASE_URL" });
    expect(env.DATABASE_URL).toBeUndefined();
    const postgres = find("StatefulSet", "chat-postgres");
    const server = container(postgres);
    expect(secretRef(server, "POSTGRES_PASSWORD")).toEqual({ name: "chat-gateway-secrets", key: "POSTGRES_PASSWORD" });
    const setting = (name: string) => server.env.find((e: { name: string }) => e.name === name)?.value;
    // The Secret's template names the Service, its port, the user and the database the server creates.
    const service = find("Service", "chat-postgres");
    const secret = parse(read("deploy/secret.example.yaml"));
    const url = new URL(secret.stringData.DATABASE_URL);
    expect([url.protocol, url.hostname, url.port, url.username, url.pathname]).toEqual([
      "postgres:",
      service.metadata.name,
      String(service.spec.ports[0].port),
      setting("POSTGRES_USER"),
      `/${setting("POSTGRES_DB")}`,
    ]);
    expect(service.spec.selector).toEqual(postgres.spec.template.metadata.labels);
    expect(postgres.spec.volumeClaimTemplates[0].metadata.name).toBe("data");
    // No password in any manifest applied, nor in the replicas' ConfigMap.
    const applied = [...(kustomization.resources as string[]).map((f) => read(`deploy/${f}`)), read("deploy/chat.env")];
    for (const text of applied) {
      expect(text).not.toMatch(/postgres(ql)?:\/\/[^\s@]*:[^\s@]*@/);
      expect(text).not.toMatch(/PASSWORD\s*[=:]\s*\S/);
    }
    // Only the replicas may connect to it.
    const policy = find("NetworkPolicy", "chat-postgres");
    expect(policy.spec.podSelector.matchLabels).toEqual(postgres.spec.selector.matchLabels);
    expect(policy.spec.ingress).toEqual([
      {
        from: [{ podSelector: { matchLabels: chat.spec.selector.matchLabels } }],
        ports: [{ protocol: "TCP", port: service.spec.ports[0].port }],
      },
    ]);
  });

  it("ships the Secret as a template only: not applied, and holding no key", () => {
    expect(kustomization.resources).not.toContain("secret.example.yaml");
    const secret = parse(read("deploy/secret.example.yaml"));
    expect(secret.kind).toBe("Secret");
    expect(secret.metadata.name).toBe(container(chat).env[0].valueFrom.secretKeyRef.name);
    for (const value of Object.values(secret.stringData as Record<string, string>)) {
      expect(value).not.toMatch(/sk-[A-Za-z0-9]{8,}|[0-9a-f]{64}/);
    }
  });
});

describe("envoy-sidecar.sh --ready (deploy/'s probe of the edge)", () => {
  it("passes while Envoy is up and fails once it drains", { timeout: 30_000 }, async () => {
    const upstream = await startFakeUpstream();
    const service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });
    const proxy = await startEnvoy({ servicePort: service.port, httpHost: "127.0.0.1", stderr: "ignore" });
    const dir = mkdtempSync(join(tmpdir(), "chat-probe-"));
    const adminFile = join(dir, "admin-address");
    writeFileSync(adminFile, `127.0.0.1:${proxy.adminPort}`);
    const probe = () =>
      promisify(execFile)("bash", [join(ROOT, "scripts", "envoy-sidecar.sh"), "--ready", adminFile]).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
    try {
      expect(await probe()).toBe(0);
      await proxy.drain();
      expect(await probe()).toBe(1);
      writeFileSync(adminFile, "127.0.0.1:9");
      expect(await probe()).toBe(1);
    } finally {
      await proxy.stop();
      await service.stop("SIGKILL");
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
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
    expect(JSON.parse(healthcheck ?? "null")).toEqual(["node", "dist/server/healthcheck.js"]);
    expect(existsSync(join(ROOT, "src", "server", "healthcheck.ts"))).toBe(true);
  });

  it("whose command passes while the service serves, and fails while it drains and once it is gone", {
    timeout: 30_000,
  }, async () => {
    const check = (port: number) =>
      promisify(execFile)(process.execPath, [join(ROOT, "dist", "server", "healthcheck.js")], {
        env: { PATH: process.env.PATH ?? "", GRPC_PORT: String(port), AUTH: "none" },
      }).then(
        ({ stdout }) => ({ code: 0, out: stdout.trim() }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: (e.stdout + e.stderr).trim() }),
      );
    const { promise: held, release } = hold();
    const upstream = await startFakeUpstream({
      reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? held : undefined) }),
    });
    const service = await startServiceProcess({
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-test",
      SHUTDOWN_GRACE_MS: "60000",
    });
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
