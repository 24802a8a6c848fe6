// `npm start`: the whole stack on one machine. The gRPC service (in this process), Envoy in front of
// it, and, when no upstream is configured, the built-in demo upstream so it works with no setup.
import { loadConfigOrExit } from "./config.js";
import { createLogger } from "./logger.js";
import { startGateway } from "./gateway.js";
import { startupFields } from "./startup.js";
import { startFakeUpstream, type FakeUpstream } from "./demo/upstream.js";
import { startEnvoy } from "./dev/envoy.js";

async function main(): Promise<void> {
  const env = { ...process.env };
  let demo: FakeUpstream | undefined;
  if (!env.OPENAI_BASE_URL && !env.OPENAI_API_KEY) {
    demo = await startFakeUpstream();
    env.OPENAI_BASE_URL = demo.baseURL;
    env.CHAT_MODEL ??= "demo";
  }
  // Metrics on by default here, on the port OpenTelemetry's Prometheus exporter uses.
  env.METRICS_PORT ??= "9464";
  const config = loadConfigOrExit(env);
  const logger = createLogger({ level: config.logLevel, format: config.log.format });
  const gateway = await startGateway(config, logger);
  const httpPort = config.stack.httpPort;
  const envoy = await startEnvoy({
    servicePort: gateway.port,
    httpPort,
    adminPort: config.stack.adminPort,
    // One JSON line per request on this terminal, as a deployed Envoy writes them to its stdout.
    accessLog: "inherit",
    ...(config.stack.corsAllowOrigin && { corsAllowOrigin: config.stack.corsAllowOrigin }),
  });
  logger.info(
    {
      ...startupFields(config, gateway),
      grpc: `localhost:${gateway.port}`,
      http: `http://localhost:${envoy.httpPort}/chat`,
      envoyAdmin: `http://127.0.0.1:${envoy.adminPort}`,
      upstream: demo ? "built-in demo (set OPENAI_BASE_URL / OPENAI_API_KEY for a real model)" : config.upstream.baseURL,
      model: config.upstream.model,
    },
    "stack up: try  curl -N localhost:%d/chat -H 'content-type: application/json' -d '{\"text\":\"hello\"}'",
    envoy.httpPort,
  );

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping");
    await envoy.stop();
    await gateway.shutdown(Math.min(config.shutdownGraceMs, 5_000));
    await demo?.close();
    logger.info("stopped");
    logger.flush();
  };
  envoy.process.once("exit", (code) => {
    if (!stopping) {
      logger.error({ code }, "envoy exited; stopping");
      void stop("SIGTERM").then(() => (process.exitCode = 1));
    }
  });
  process.on("SIGINT", (s) => void stop(s));
  process.on("SIGTERM", (s) => void stop(s));
}

void main();
