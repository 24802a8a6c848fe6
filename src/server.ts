// Builds the gRPC server: ChatService, grpc.health.v1 and server reflection, on one port.
import { Server, ServerCredentials, type ServerInterceptor, type handleUnaryCall } from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import { ChatServiceService, type ListModelsRequest, type ListModelsResponse } from "./gen/chat/v1/chat.js";
import type { ChatService } from "./chat/service.js";
import { readDescriptorSet, reflectionDefinition } from "./descriptor.js";

export const CHAT_SERVICE_NAME = "chat.v1.ChatService";

export interface GatewayServer {
  readonly port: number;
  /** Marks the service NOT_SERVING, drains open streams within `graceMs`, then closes the port. */
  shutdown(graceMs: number): Promise<void>;
  /** Closes everything now. */
  forceShutdown(): void;
}

export interface ServerOptions {
  host: string;
  port: number;
  credentials?: ServerCredentials;
  /** Run on every call, first to last from the network to the handler (auth, metrics). */
  interceptors?: ServerInterceptor[];
  /** The ListModels handler (src/chat/models.ts). */
  listModels: handleUnaryCall<ListModelsRequest, ListModelsResponse>;
}

export async function startServer(chat: ChatService, options: ServerOptions): Promise<GatewayServer> {
  const server = new Server({
    // Keep idle client connections healthy through NATs and proxies without flooding them.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_permit_without_calls": 1,
    interceptors: options.interceptors ?? [],
  });
  server.addService(ChatServiceService, { ...chat.implementation, listModels: options.listModels });

  const health = new HealthImplementation({ "": "SERVING", [CHAT_SERVICE_NAME]: "SERVING" });
  health.addToServer(server);

  // The descriptor set holds grpc.health.v1 too, so grpcurl can call health checks.
  const reflection = new ReflectionService(reflectionDefinition(readDescriptorSet()));
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
    async shutdown(graceMs) {
      health.setStatus("", "NOT_SERVING");
      health.setStatus(CHAT_SERVICE_NAME, "NOT_SERVING");
      await chat.drain(graceMs);
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
    forceShutdown() {
      server.forceShutdown();
    },
  };
}
