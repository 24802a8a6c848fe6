// Wires a configured gateway from its parts; main.ts and the `npm start` stack both call it.
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import { createChatService } from "./chat/service.js";
import { logStreamEnd } from "./stream-log.js";
import { startServer, type GatewayServer } from "./server.js";
import { OpenAIUpstream, type ChatUpstream } from "./upstream/openai.js";
import { FallbackUpstream } from "./upstream/fallback.js";

export interface Gateway extends GatewayServer {
  readonly config: Config;
}

export async function startGateway(config: Config, logger: Logger, upstream?: ChatUpstream): Promise<Gateway> {
  const chat = createChatService({
    upstream: upstream ?? upstreamFrom(config),
    defaultModel: config.upstream.model,
    limits: {
      ...config.limits,
      idleTimeoutMs: config.upstream.idleTimeoutMs,
    },
    logger,
    secrets: [config.upstream.apiKey, config.fallback?.apiKey].filter((k): k is string => k !== undefined),
    onStreamEnd: (s) => logStreamEnd(logger, s),
  });
  const server = await startServer(chat, config.grpc);
  return Object.assign(server, { config });
}

function upstreamFrom(config: Config): ChatUpstream {
  const primary = new OpenAIUpstream(config.upstream);
  if (!config.fallback) return primary;
  const fallback = new OpenAIUpstream({ ...config.upstream, ...config.fallback });
  return new FallbackUpstream(primary, fallback, { model: config.fallback.model });
}
