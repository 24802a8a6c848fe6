// Builds the gRPC server: ChatService, grpc.health.v1 and server reflection, on one port.
import { Server, ServerCredentials, status, type ServerInterceptor, type ServerWritableStream } from "@grpc/grpc-js";
import { loadFileDescriptorSetFromBuffer } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { ChatServiceService } from "./gen/chat/v1/chat.js";
import type { ChatService } from "./chat/service.js";
import { readDescriptorSet } from "./descriptor.js";

export const CHAT_SERVICE_NAME = "chat.v1.ChatService";

/**
 * How long after the grace period an orderly shutdown may still take (streams told to stop sending
 * their last error, connections closing) before every connection is cut.
 */
export const FORCE_AFTER_GRACE_MS = 5_000;

/** `drained`: every call ended and the port closed in order; `forced`: the hard deadline cut what was left. */
export type ShutdownOutcome = "drained" | "forced";

export interface GatewayServer {
  readonly port: number;
  /**
   * Marks the service NOT_SERVING, drains open streams within `graceMs`, ends the health Watch
   * streams, then closes the port. Whatever is still open `forceAfterMs` after the grace period is
   * cut, so this always ends.
   */
  shutdown(graceMs: number, forceAfterMs?: number): Promise<ShutdownOutcome>;
  /** Closes everything now. */
  forceShutdown(): void;
}

export interface ServerOptions {
  host: string;
  port: number;
  credentials?: ServerCredentials;
  /** Run on every call, first to last from the network to the handler (auth, metrics). */
  interceptors?: ServerInterceptor[];
}

export async function startServer(chat: ChatService, options: ServerOptions): Promise<GatewayServer> {
  const server = new Server({
    // Keep idle client connections healthy through NATs and proxies without flooding them.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_permit_without_calls": 1,
    interceptors: options.interceptors ?? [],
  });
  server.addService(ChatServiceService, chat.implementation);

  const health = new HealthImplementation({ "": "SERVING", [CHAT_SERVICE_NAME]: "SERVING" });
  const watches = addHealthService(server, health);

  // The descriptor set holds grpc.health.v1 too, so grpcurl can call health checks.
  const reflection = new ReflectionService(loadFileDescriptorSetFromBuffer(readDescriptorSet()));
  reflection.addToServer(server);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(
      `${options.host.includes(":") ? `[${options.host}]` : options.host}:${options.port}`,
      options.credentials ?? ServerCredentials.createInsecure(),
      (error, boundPort) => (error ? reject(error) : resolve(boundPort)),
    );
  });

  return {
    port,
    async shutdown(graceMs, forceAfterMs = FORCE_AFTER_GRACE_MS) {
      // Watchers (load balancers, client-side health checking) hear NOT_SERVING at once.
      health.setStatus("", "NOT_SERVING");
      health.setStatus(CHAT_SERVICE_NAME, "NOT_SERVING");
      const orderly = (async (): Promise<ShutdownOutcome> => {
        await chat.drain(graceMs);
        // A Watch stream never ends by itself, and grpc-js's tryShutdown waits for every call.
        watches.endAll();
        await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
        return "drained";
      })();
      let timer: NodeJS.Timeout | undefined;
      const forced = new Promise<ShutdownOutcome>((resolve) => {
        timer = setTimeout(() => {
          server.forceShutdown();
          resolve("forced");
        }, graceMs + forceAfterMs);
      });
      try {
        return await Promise.race([orderly, forced]);
      } finally {
        clearTimeout(timer);
      }
    },
    forceShutdown() {
      server.forceShutdown();
    },
  };
}

type WatchCall = ServerWritableStream<{ service: string }, { status: string }>;

/**
 * grpc.health.v1 from grpc-health-check, with its Watch streams tracked so shutdown can end them:
 * anyone may open one (health is open to all callers), and each would otherwise hold the server.
 */
function addHealthService(server: Server, health: HealthImplementation): { endAll(): void } {
  const open = new Set<WatchCall>();
  health.addToServer({
    addService(service, implementation) {
      const watch = implementation.watch as (call: WatchCall) => void;
      server.addService(service, {
        ...implementation,
        watch: (call: WatchCall) => {
          open.add(call);
          const forget = () => open.delete(call);
          call.once("cancelled", forget);
          call.once("finish", forget);
          watch(call);
        },
      });
    },
  });
  return {
    endAll() {
      for (const call of open) {
        call.emit("error", { code: status.UNAVAILABLE, details: "server shutting down" });
      }
      open.clear();
    },
  };
}
