// Wires a configured gateway from its parts; main.ts and the `npm start` stack both call it. The
// path of a Chat call: server.ts (grpc-js) → auth.ts, limits/interceptor.ts, metrics (interceptors)
// → call-context.ts (its context) → chat/service.ts (validate → upstream → events → write).
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { ServerCredentials, status, type Metadata } from "@grpc/grpc-js";
import { createMemoryLog } from "../resume/memory-log.js";
import { Runs } from "../resume/runs.js";
import { teeLog } from "../resume/tee-log.js";
import { EVENT_OVERHEAD_BYTES, type EventLog } from "../resume/log.js";
import type { Config } from "./config.js";
import type { Logger } from "../observability/logger.js";
import { chatImplementation, createChatService, type ChatService } from "../chat/service.js";
import { createModelCatalog, listModelsHandler, type ModelSource } from "../chat/models.js";
import { toGatewayStatus } from "../chat/errors.js";
import { createRefusalLog } from "../observability/refusal-log.js";
import { startServer, type GatewayServer } from "./server.js";
import type { ChatUpstream } from "../upstream/port.js";
import { FallbackUpstream } from "../upstream/fallback.js";
import { UpstreamRouter } from "../upstream/router.js";
import { OpenAIUpstream } from "../providers/openai/upstream.js";
import { bodyKeys } from "../providers/openai/params.js";
import { createMetrics, type GatewayMetrics } from "../observability/metrics.js";
import { createCallerAuth } from "./auth.js";
import { Callers } from "./callers.js";
import { callContexts } from "./call-context.js";
import { openAIService } from "../api/openai/service.js";
import { createTracing } from "../observability/tracing.js";
import { createCallerBudgets, type CallerBudgets } from "../limits/budgets.js";
import { budgetInterceptor } from "../limits/interceptor.js";
import { createMemoryStore } from "../limits/memory-store.js";
import { createStoreErrorLog } from "../limits/store-errors.js";
import { getUsageHandler } from "../limits/usage-rpc.js";
import { openConversationStore } from "../conversations/kysely-store.js";
import { conversationService } from "../conversations/rpc.js";
import type { ConversationStore } from "../conversations/store.js";
import { conversationHistory } from "./conversation-history.js";
import { responseHistory } from "./response-history.js";

export interface Gateway extends GatewayServer {
  readonly config: Config;
  readonly metrics: GatewayMetrics;
  readonly budgets: CallerBudgets;
  readonly conversations: ConversationStore;
  /** Port of the Prometheus endpoint; undefined when METRICS_PORT is unset. */
  readonly metricsPort: number | undefined;
}

// The wiring in the order it happens, read top to bottom; each part is built by a named function
// (below, or in its own module), so this stays a list.
export async function startGateway(config: Config, logger: Logger, upstream?: ChatUpstream): Promise<Gateway> {
  let chat: ChatService | undefined;
  const callers = new Callers();
  const callerOf = callers.of.bind(callers);
  const logRefusal = createRefusalLog(logger);
  const budgets = await callerBudgetsFrom(config, logger, () => metrics);
  const metrics = createMetrics({
    callerOf,
    activeStreams: () => chat?.active ?? 0,
    ...(config.auth && { activeByCaller: () => budgets.active() }),
  });
  const tracing = await createTracing(config.tracing);
  const knownModels = knownModelsOf(config);
  const secrets = [config.upstream.apiKey, config.fallback?.apiKey, ...config.upstreams.map((u) => u.apiKey)].filter(
    (k): k is string => k !== undefined,
  );
  const upstreams = upstreamFrom(config);
  const conversations = await conversationStoreFrom(config);
  const history = conversationHistory(conversations, {
    maxTurns: config.conversations.maxHistoryTurns,
    leaseMs: config.conversations.leaseMs,
    flushMs: config.conversations.flushMs,
    flushChars: config.conversations.flushChars,
    logger,
  });
  const ownerOf = (metadata: Metadata) => callerOf(metadata) ?? "anonymous";
  const onStoreError = (operation: string, error: unknown) =>
    logger.error({ err: error, operation }, "conversation store failed");
  const resumeLog = await resumeLogFrom(config, logger);
  const runs = new Runs(config.resume.graceMs, (id) => resumeLog.attachedElsewhere(id));
  // A cancel asked of another replica stops the generation running here.
  resumeLog.onCancel((id) => runs.cancel(id));
  chat = createChatService({
    upstream: upstream ?? upstreams.chat,
    defaultModel: config.upstream.model,
    limits: {
      ...config.limits,
      idleTimeoutMs: config.upstream.idleTimeoutMs,
      firstTokenTimeoutMs: config.upstream.firstTokenTimeoutMs,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
    },
    logger,
    secrets,
    bodyKeys,
    history,
    resume: { log: resumeLog, runs },
  });
  const contextOf = callContexts({
    logger,
    metrics,
    tracing,
    budgets,
    callers,
    logRefusal,
    defaultModel: config.upstream.model,
    knownModels,
    logPrompts: config.log.prompts,
  });
  // ResumeChat's and CancelChat's caller: the key auth named, and the request id Envoy gave.
  const whoOf = (metadata: Metadata) => ({
    caller: callerOf(metadata) ?? "anonymous",
    requestId: String(metadata.get("x-request-id")[0] ?? "").slice(0, 128) || randomUUID(),
  });
  const catalog = createModelCatalog({
    sources: upstreams.sources,
    configured: [...knownModels],
    route: (model) => upstreams.router.route(model).name,
    ...config.models,
    secrets,
  });
  const server = await startServer(chat, {
    ...config.grpc,
    credentials: credentialsFrom(config),
    interceptors: interceptorsFrom(config, { callers, budgets, metrics, logRefusal }),
    chat: chatImplementation(chat, contextOf, whoOf, logger),
    openai: openAIService({
      chat,
      catalog,
      contextOf,
      defaultModel: config.upstream.model,
      logger,
      storage: {
        store: conversations,
        historyFor: (options) =>
          responseHistory(
            { store: conversations, conversations: history, maxTurns: config.conversations.maxHistoryTurns, logger },
            options,
          ),
        ownerOf,
        onStoreError,
      },
    }),
    listModels: listModelsHandler(catalog, logger),
    getUsage: getUsageHandler(budgets, callerOf),
    conversations: conversationService({
      store: conversations,
      ownerOf,
      onStoreError,
    }),
  });
  let metricsServer;
  try {
    metricsServer = config.metrics ? await metrics.serve(config.metrics.host, config.metrics.port) : undefined;
  } catch (error) {
    server.forceShutdown();
    await Promise.all([budgets.close(), conversations.close()]);
    throw error;
  }
  return {
    port: server.port,
    config,
    metrics,
    budgets,
    conversations,
    metricsPort: metricsServer?.port,
    async shutdown(graceMs, forceAfterMs) {
      const outcome = await server.shutdown(graceMs, forceAfterMs);
      // The store closes last: the streams that drained have stored their replies.
      await Promise.all([
        metricsServer?.close(),
        tracing.shutdown(),
        budgets.close(),
        conversations.close(),
        resumeLog.close(),
      ]);
      return outcome;
    },
    forceShutdown() {
      server.forceShutdown();
      void budgets.close();
      void metricsServer?.close();
      void tracing.shutdown();
      void conversations.close();
      void resumeLog.close();
    },
  };
}

/**
 * Resumable streams' events: in Redis when REDIS_URL is set (a resume may land on any replica),
 * else in this process. As for the budgets, start-up waits for Redis one timeout at most: until it
 * answers, resumable streams are refused (UNAVAILABLE) and plain streams are served.
 */
async function resumeLogFrom(config: Config, logger: Logger): Promise<EventLog> {
  const { redisUrl, timeoutMs } = config.budgets;
  if (!redisUrl) return createMemoryLog(config.resume);
  const password = decodeURIComponent(new URL(redisUrl).password);
  const logError = createStoreErrorLog(logger, "open", [password]);
  const log = (await import("../resume/redis-log.js")).createRedisLog({
    url: redisUrl,
    retentionMs: config.resume.retentionMs,
    maxEvents: Math.max(16, Math.floor(config.resume.maxStreamBytes / EVENT_OVERHEAD_BYTES)),
    leaseMs: config.resume.leaseMs,
    timeoutMs,
    onBackgroundError: (operation, error) => logError(`resume ${operation}`, error),
  });
  if (!(await log.ready(Math.max(1000, timeoutMs)))) {
    logger.warn("resumable stream store (Redis) not reachable at start-up; resumable streams refused until it is");
  }
  // This replica's own streams are read from its memory by the readers here (tee-log.ts).
  return teeLog(createMemoryLog(config.resume), log);
}

/**
 * Conversations: PostgreSQL when DATABASE_URL is set (replicas share it), else SQLite in DATA_DIR.
 * Start-up fails if the database cannot be opened or migrated: serving without the store would
 * answer every conversation call with an error.
 */
function conversationStoreFrom(config: Config): Promise<ConversationStore> {
  const { databaseUrl, sqlitePath } = config.conversations;
  return openConversationStore(
    databaseUrl ? { kind: "postgres", url: databaseUrl } : { kind: "sqlite", path: sqlitePath },
  );
}

/**
 * Metric labels name only models the configuration lists: callers choose the model, and each new
 * label value is a new time series.
 */
function knownModelsOf(config: Config): Set<string> {
  return new Set<string>([
    config.upstream.model,
    ...(config.fallback?.model ? [config.fallback.model] : []),
    ...config.upstreams.flatMap((u) => u.models.filter((model) => !model.endsWith("*"))),
  ]);
}

/**
 * The interceptors every call passes, first to last from the network to the handler: auth first,
 * so the budget and metrics interceptors see the caller's name; with neither caller keys nor
 * metrics on, calls pass through no interceptor at all.
 */
function interceptorsFrom(
  config: Config,
  parts: {
    callers: Callers;
    budgets: CallerBudgets;
    metrics: GatewayMetrics;
    logRefusal: ReturnType<typeof createRefusalLog>;
  },
) {
  const { callers, budgets, metrics: m, logRefusal } = parts;
  if (!config.auth) return config.metrics ? [m.interceptor] : [];
  const auth = createCallerAuth(config.auth.keys, callers, {
    onRefused: (path, stream, code, caller) => {
      m.refused(path, stream, code, caller);
      m.callRefused(code, "unauthenticated", caller ?? "unauthenticated");
      logRefusal({ code: status[code], cause: "unauthenticated", caller });
    },
  });
  // Caller keys' limits apply to Chat streams, after auth has named the caller.
  const budgetCheck = budgetInterceptor(budgets, {
    callerOf: (metadata) => callers.of(metadata),
    onRefused: (path, stream, code, cause, caller, details) => {
      m.refused(path, stream, code, caller);
      m.callRefused(code, cause, caller);
      logRefusal({ code: status[code], cause, caller, message: details });
    },
  });
  return [auth.interceptor, budgetCheck, ...(config.metrics ? [m.interceptor] : [])];
}

/**
 * The caller keys' budgets, kept in Redis when REDIS_URL is set (every replica shares them), else in
 * this process. Start-up waits for Redis for one timeout at most: a Redis that is down must not keep
 * the gateway from serving (its failure mode applies until Redis answers).
 */
async function callerBudgetsFrom(
  config: Config,
  logger: Logger,
  metrics: () => GatewayMetrics | undefined,
): Promise<CallerBudgets> {
  const { redisUrl, onRedisError, timeoutMs, leaseTtlMs } = config.budgets;
  const password = redisUrl ? decodeURIComponent(new URL(redisUrl).password) : "";
  const logStoreError = createStoreErrorLog(logger, onRedisError, [password]);
  // ioredis is loaded only when there is a Redis to talk to.
  const redis = redisUrl
    ? (await import("../limits/redis-store.js")).createRedisStore({
        url: redisUrl,
        timeoutMs,
        leaseTtlMs,
        onBackgroundError: (operation, error) => {
          metrics()?.limitsStoreError(operation, "failed");
          logStoreError(operation, error);
        },
      })
    : undefined;
  if (redis && !(await redis.ready(Math.max(1000, timeoutMs)))) {
    logger.warn(
      { failureMode: onRedisError },
      "limits store (Redis) not reachable at start-up; retrying in the background",
    );
  }
  const store = redis ?? createMemoryStore();
  return createCallerBudgets({
    limits: new Map((config.auth?.keys ?? []).map((key) => [key.name, key.limits])),
    store,
    onStoreError: onRedisError,
    timeoutMs,
    onError: (operation, error, allowed) => {
      // A failed charge or release is lost (a lost release expires with its lease); a failed usage
      // read was answered UNAVAILABLE.
      const outcome =
        allowed === undefined ? (operation === "usage" ? "failed" : "lost") : allowed ? "allowed" : "refused";
      metrics()?.limitsStoreError(operation, outcome);
      logStoreError(operation, error, allowed);
    },
    onChecked: (seconds) => metrics()?.limitsChecked(store.kind, seconds),
  });
}

function credentialsFrom(config: Config): ServerCredentials {
  if (!config.tls) return ServerCredentials.createInsecure();
  const ca = config.tls.clientCaFile ? readFileSync(config.tls.clientCaFile) : null;
  return ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(config.tls.certFile), private_key: readFileSync(config.tls.keyFile) }],
    ca !== null,
  );
}

/**
 * The upstream Chat streams from (routed, with the fallback), the router, and the upstreams a
 * model can be routed to, for ListModels. The fallback is not among them: no model routes to it.
 */
function upstreamFrom(config: Config): { chat: ChatUpstream; router: UpstreamRouter; sources: ModelSource[] } {
  const make = (where: { baseURL: string; apiKey: string | undefined }) =>
    new OpenAIUpstream({ ...config.upstream, ...where });
  const routes = [
    { name: "default", upstream: make(config.upstream), models: [] },
    ...config.upstreams.map((u) => ({ name: u.name, upstream: make(u), models: u.models })),
  ];
  const [fallthrough, ...named] = routes as [(typeof routes)[number], ...typeof routes];
  const router = new UpstreamRouter(fallthrough, named);
  const sources = routes.map(({ name, upstream }) => ({
    name,
    list: (timeoutMs: number) => upstream.listModels(timeoutMs),
  }));
  if (!config.fallback) return { chat: router, router, sources };
  const chat = new FallbackUpstream(router, make(config.fallback), {
    model: config.fallback.model,
    causeOf: (error) => toGatewayStatus(error).cause,
  });
  return { chat, router, sources };
}
