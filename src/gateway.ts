// Wires a configured gateway from its parts; main.ts and the `npm start` stack both call it.
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import { createChatService } from "./chat/service.js";
import { logStreamEnd } from "./stream-log.js";
import { startServer, type GatewayServer } from "./server.js";
import { OpenAIUpstream, type ChatUpstream } from "./upstream/openai.js";

export interface Gateway extends GatewayServer {
  readonly config: Config;
}

export async function startGateway(config: Config, logger: Logger, upstream?: ChatUpstream): Promise<Gateway> {
  const chat = createChatService({
    upstream: upstream ?? new OpenAIUpstream(config.upstream),
    defaultModel: config.upstream.model,
    limits: {
      ...config.limits,
      idleTimeoutMs: config.upstream.idleTimeoutMs,
    },
    logger,
    secrets: config.upstream.apiKey ? [config.upstream.apiKey] : [],
    onStreamEnd: (s) => logStreamEnd(logger, s),
  });
  const server = await startServer(chat, config.grpc);
  return Object.assign(server, { config });
}
