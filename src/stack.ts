// `npm start`: the whole stack on one machine. The gRPC service (in this process), Envoy in front of
// it, and, when no upstream is configured, the built-in demo upstream so it works with no setup.
import { createLogger } from "./observability/logger.js";
import { startGateway } from "./server/gateway.js";
import { startupFields } from "./server/startup.js";
import { startEnvoy } from "./dev/envoy.js";
import { localEnv, localEnvoyOptions } from "./dev/local-env.js";
import { loadLocalConfigOrExit } from "./dev/config.js";

/** npm start is for trying things out: Ctrl-C should not take the deployed 30 s. */
const STACK_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const { env, demo } = await localEnv(process.env);
  const { config, launcher } = loadLocalConfigOrExit(env);
  const logger = createLogger({ level: config.logLevel, format: config.log.format });
  const graceMs = Math.min(config.shutdownGraceMs, STACK_GRACE_MS);
  const gateway = await startGateway(config, logger);
  const envoy = await startEnvoy({ ...localEnvoyOptions(launcher, graceMs), servicePort: gateway.port }).catch(
    (error: unknown) => {
      gateway.forceShutdown();
      throw error;
    },
  );
  const fields = startupFields(config, gateway);
  logger.info(
    {
      ...fields,
      grpc: `localhost:${gateway.port}`,
      page: `http://localhost:${envoy.httpPort}/`,
      http: `http://localhost:${envoy.httpPort}/chat`,
      envoyAdmin: `http://127.0.0.1:${envoy.adminPort}`,
      upstream: demo ? "built-in demo (set OPENAI_BASE_URL / OPENAI_API_KEY for a real model)" : fields.upstream,
      model: config.upstream.model,
    },
    "stack up: open http://localhost:%d/ or try  curl -N localhost:%d/chat -H 'content-type: application/json' -d '{\"text\":\"hello\"}'",
    envoy.httpPort,
    envoy.httpPort,
  );

  // In order, so that HTTP callers get the grace period gRPC callers get: Envoy stops taking new
  // requests, the service drains its streams, and Envoy stops once nothing is in flight through it.
  // Envoy runs in a process group of its own, so a Ctrl-C (which signals the terminal's whole
  // foreground group) reaches this process only; and it dies with this process however it dies
  // (scripts/envoy-sidecar.sh).
  let stopping = false;
  const stop = async (signal: NodeJS.Signals | "envoy exited") => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs }, "stopping: Envoy takes no new requests, open streams may finish");
    await envoy.drain().catch(() => undefined); // Envoy may be gone already
    const outcome = await gateway.shutdown(graceMs);
    await envoy.stopGracefully();
    await demo?.close();
    logger.info({ outcome }, "stopped");
    // Idle keep-alive sockets to a real upstream would otherwise hold the process open.
    logger.flush(() => process.exit(signal === "envoy exited" ? 1 : 0));
  };
  envoy.process.once("exit", (code) => {
    if (!stopping) {
      logger.error({ code }, "envoy exited; stopping");
      void stop("envoy exited");
    }
  });
  process.on("SIGINT", (s) => void stop(s));
  process.on("SIGTERM", (s) => void stop(s));
}

void main();
