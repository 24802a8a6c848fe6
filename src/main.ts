// Composition root of the gRPC service: read the configuration, build the gateway, serve until a
// signal, then drain.
import { loadConfigOrExit } from "./server/config.js";
import { createLogger } from "./observability/logger.js";
import { startGateway } from "./server/gateway.js";
import { startupFields } from "./server/startup.js";
import { FORCE_AFTER_GRACE_MS } from "./server/server.js";
import { startHeapTrimmer } from "./server/heap-trim.js";

async function main(): Promise<void> {
  const config = loadConfigOrExit(process.env);
  const logger = createLogger({ level: config.logLevel, format: config.log.format });
  const gateway = await startGateway(config, logger);
  // A process-wide concern, so here and not in the gateway (which tests run in their own process):
  // the memory of a peak goes back to the OS once the process is idle (server/heap-trim.ts).
  const trimmer = startHeapTrimmer({
    onTrim: (before, after, ms) =>
      logger.debug({ heapBytesBefore: before, heapBytesAfter: after, pauseMs: Math.round(ms) }, "heap trimmed"),
  });

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "draining");
    trimmer.stop();
    const exit = (code: number) => {
      // flush() calls back only once the log's destination took everything: a stdout pipe whose
      // reader stopped reading may never take it, and must not keep a stopped process alive.
      setTimeout(() => process.exit(code), 1000).unref();
      logger.flush(() => process.exit(code));
    };
    // A last guard, past the server's own hard deadline: closing the metrics endpoint or flushing
    // spans must not hold the process either.
    setTimeout(
      () => {
        logger.error("shutdown did not finish; exiting");
        exit(1);
      },
      config.shutdownGraceMs + 2 * FORCE_AFTER_GRACE_MS,
    ).unref();
    gateway
      .shutdown(config.shutdownGraceMs)
      .then((outcome) => {
        logger.info({ outcome }, "stopped");
        // Idle keep-alive sockets to the upstream would otherwise hold the process open.
        exit(0);
      })
      .catch((error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        gateway.forceShutdown();
        exit(1);
      });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  // Only now: whoever waits for this line (an orchestrator, a test) may signal at once.
  logger.info(startupFields(config, gateway), "chat gateway listening");
}

void main();
