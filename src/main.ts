// Composition root of the gRPC service: read the configuration, build the gateway, serve until a
// signal, then drain.
import { loadConfigOrExit } from "./config.js";
import { createLogger } from "./logger.js";
import { startGateway } from "./gateway.js";
import { startupFields } from "./startup.js";

async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env);
  const logger = createLogger({ level: config.logLevel, format: config.log.format });
  const gateway = await startGateway(config, logger);
  logger.info(startupFields(config, gateway), "chat gateway listening");

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "draining");
    gateway
      .shutdown(config.shutdownGraceMs)
      .then(() => {
        logger.info("stopped");
        // Idle keep-alive sockets to the upstream would otherwise hold the process open.
        logger.flush(() => process.exit(0));
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        gateway.forceShutdown();
        logger.flush(() => process.exit(1));
      });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

void main();
