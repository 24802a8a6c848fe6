// Builds the gRPC server: ChatService, grpc.health.v1 and server reflection, on one port.
import type { ServerOptions as Http2ServerOptions, Settings as Http2Settings } from "node:http2";
import {
  Server,
  ServerCredentials,
  status,
  type ServerInterceptor,
  type ServerWritableStream,
  type handleUnaryCall,
} from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation } from "grpc-health-check";
import {
  ChatServiceService,
  type ChatServiceServer,
  ConversationServiceService,
  type ConversationServiceServer,
  OpenAIServiceService,
  type OpenAIServiceServer,
  type GetUsageRequest,
  type GetUsageResponse,
  type ListModelsRequest,
  type ListModelsResponse,
} from "../contract/chat.js";
import type { ChatService } from "../chat/service.js";
import { chatRequestDecoder } from "../chat/decode.js";
import { encodeChatResponse } from "../chat/encode.js";
import { encodeHttpBody } from "../api/openai/bodies.js";
import { readDescriptorSet, reflectionDefinition } from "../contract/descriptor.js";

export const CHAT_SERVICE_NAME = "chat.v1.ChatService";

/**
 * The most metadata (HTTP/2 header list, uncompressed) one call may carry: advertised in SETTINGS and
 * enforced per stream, so an oversized call is reset alone (RESOURCE_EXHAUSTED) and its connection's
 * other streams carry on. Without it Node advertises no limit. Envoy passes on HTTP headers up to its
 * own 60 KiB, so this sits just above. Clients that honour the advertised limit (grpc-go and grpcurl,
 * grpc-java, C-core) never send more. Two limits of nghttp2 itself end the whole connection before
 * any setting is consulted, for clients that send more anyway: a header block of more than 8
 * CONTINUATION frames after its HEADERS frame (not configurable from Node), and a single header over
 * 64 KiB once HPACK-encoded (COMPRESSION_ERROR; a constant of nghttp2). MAX_FRAME_SIZE moves the first
 * out of reach for clients that cut a header block by the frame size the server advertises; grpc-js,
 * Node and curl always cut it into 16 KiB frames, so from them ~144 KiB encoded still ends the
 * connection (docs/streaming.md#metadata-size).
 */
export const MAX_METADATA_BYTES = 64 * 1024;

/**
 * The largest frame the server accepts (SETTINGS_MAX_FRAME_SIZE, HTTP/2's own maximum; Node's
 * default is the minimum, 16 KiB). nghttp2 allows a header block at most 8 CONTINUATION frames, so
 * with 16 KiB frames a client's 1 MiB of metadata ended every stream of its connection even though
 * the call itself was over MAX_METADATA_BYTES; in frames this size it is refused alone. It does not
 * make anything larger reach the service: flow control still bounds DATA, MAX_METADATA_BYTES headers.
 */
export const MAX_FRAME_SIZE = 2 ** 24 - 1;

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
  /** Chat's, ResumeChat's and CancelChat's grpc-js handlers (chat/service.ts's `chatImplementation`). */
  chat: Pick<ChatServiceServer, "chat" | "resumeChat" | "cancelChat">;
  /** The OpenAI API (src/api/openai/service.ts). */
  openai: OpenAIServiceServer;
  /** The ListModels handler (src/chat/models.ts). */
  listModels: handleUnaryCall<ListModelsRequest, ListModelsResponse>;
  /** The GetUsage handler (src/limits/usage-rpc.ts). */
  getUsage: handleUnaryCall<GetUsageRequest, GetUsageResponse>;
  /** ConversationService (src/conversations/rpc.ts). */
  conversations: ConversationServiceServer;
}

export async function startServer(chat: ChatService, options: ServerOptions): Promise<GatewayServer> {
  const server = new Server({
    // Keep idle client connections healthy through NATs and proxies without flooding them.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_permit_without_calls": 1,
    interceptors: options.interceptors ?? [],
  });
  setHttp2Settings(server, { maxHeaderListSize: MAX_METADATA_BYTES, maxFrameSize: MAX_FRAME_SIZE });
  // The generated deserializer, but noticing invalid UTF-8 (see chat/decode.ts); the generated
  // serializer's bytes, written in one allocation per token (see chat/encode.ts).
  const definition = {
    ...ChatServiceService,
    chat: {
      ...ChatServiceService.chat,
      requestDeserialize: chatRequestDecoder(),
      responseSerialize: encodeChatResponse,
    },
    resumeChat: { ...ChatServiceService.resumeChat, responseSerialize: encodeChatResponse },
  };
  server.addService(definition, { ...options.chat, listModels: options.listModels, getUsage: options.getUsage });
  // Every OpenAIService method answers google.api.HttpBody (test/unit/encode.test.ts checks the proto).
  const openai = Object.fromEntries(
    Object.entries(OpenAIServiceService).map(([name, method]) => [
      name,
      { ...method, responseSerialize: encodeHttpBody },
    ]),
  ) as typeof OpenAIServiceService;
  server.addService(openai, options.openai);
  server.addService(ConversationServiceService, options.conversations);

  const health = new HealthImplementation({ "": "SERVING", [CHAT_SERVICE_NAME]: "SERVING" });
  const watches = addHealthService(server, health);

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

/**
 * grpc-js has no option for the HTTP/2 settings it gives node:http2 (only `grpc.max_concurrent_streams`
 * becomes one), so they are added to the options object it keeps for creating its http2 servers,
 * before it binds. Checked, so a grpc-js that stores them elsewhere fails at start-up, not silently.
 */
function setHttp2Settings(server: Server, settings: Http2Settings): void {
  const internals = server as unknown as { commonServerOptions?: Http2ServerOptions };
  if (typeof internals.commonServerOptions !== "object") {
    throw new Error("cannot set HTTP/2 settings on this version of grpc-js (no commonServerOptions)");
  }
  internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, ...settings };
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
