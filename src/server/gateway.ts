// Wires a configured gateway from its parts; main.ts and the `npm start` stack both call it.
import { readFileSync } from "node:fs";
import { ServerCredentials, status } from "@grpc/grpc-js";
import type { Config } from "./config.js";
import type { Logger } from "../observability/logger.js";
import { createChatService, type ChatService } from "../chat/service.js";
import { createModelCatalog, listModelsHandler, type ModelSource } from "../chat/models.js";
import { logStreamEnd } from "../observability/stream-log.js";
import { createRefusalLog } from "../observability/refusal-log.js";
import { startServer, type GatewayServer } from "./server.js";
import { OpenAIUpstream, type ChatUpstream } from "../upstream/openai.js";
import { FallbackUpstream } from "../upstream/fallback.js";
import { UpstreamRouter } from "../upstream/router.js";
import { upstreamFetch } from "../upstream/fetch.js";
import { createMetrics, type GatewayMetrics } from "../observability/metrics.js";
import { createCallerAuth } from "./auth.js";
import { createTracing } from "../observability/tracing.js";
import { instrumentChatService } from "../observability/instrument.js";
import { streamContext } from "./stream-context.js";
import { createCallerBudgets, type CallerBudgets } from "../limits/budgets.js";
import { budgetInterceptor } from "../limits/interceptor.js";
import { createMemoryStore } from "../limits/memory-store.js";
import { createStoreErrorLog } from "../limits/store-errors.js";
import { streamTokens } from "../limits/estimate.js";
import { getUsageHandler } from "../limits/usage-rpc.js";

export interface Gateway extends GatewayServer {
  readonly config: Config;
  readonly metrics: GatewayMetrics;
  readonly budgets: CallerBudgets;
  /** Port of the Prometheus endpoint; undefined when METRICS_PORT is unset. */
  readonly metricsPort: number | undefined;
}

export async function startGateway(config: Config, logger: Logger, upstream?: ChatUpstream): Promise<Gateway> {
  let chat: ChatService | undefined;
  let metrics: GatewayMetrics | undefined;
  const logRefusal = createRefusalLog(logger);
  const auth = config.auth
    ? createCallerAuth(config.auth.keys, {
        onRefused: (path, stream, code, caller) => {
          metrics?.refused(path, stream, code, caller);
          metrics?.callRefused(code, "unauthenticated", caller ?? "unauthenticated");
          logRefusal({ code: status[code], cause: "unauthenticated", caller });
        },
      })
    : undefined;
  const budgets = await callerBudgetsFrom(config, logger, () => metrics);
  metrics = createMetrics({
    callerFromMetadata: auth !== undefined,
    activeStreams: () => chat?.active ?? 0,
    ...(auth && { activeByCaller: () => budgets.active() }),
  });
  const m = metrics;
  // Caller keys' limits apply to Chat streams, after auth has named the caller.
  const budgetCheck = auth
    ? budgetInterceptor(budgets, {
        onRefused: (path, stream, code, cause, caller, details) => {
          m.refused(path, stream, code, caller);
          m.callRefused(code, cause, caller);
          logRefusal({ code: status[code], cause, caller, message: details });
        },
      })
    : undefined;
  const tracing = await createTracing(config.tracing);

  // Metric labels name only models the configuration lists: callers choose the model, and each new
  // label value is a new time series.
  const knownModels = new Set<string>([
    config.upstream.model,
    ...(config.fallback?.model ? [config.fallback.model] : []),
    ...config.upstreams.flatMap((u) => u.models.filter((model) => !model.endsWith("*"))),
  ]);

  const secrets = [config.upstream.apiKey, config.fallback?.apiKey, ...config.upstreams.map((u) => u.apiKey)].filter(
    (k): k is string => k !== undefined,
  );
  const upstreams = upstreamFrom(config, m);
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
    callInfo: () => streamContext.getStore(),
    onStreamEnd: (s) => {
      const context = streamContext.getStore();
      logStreamEnd(logger, s, context);
      const caller = context?.caller ?? "anonymous";
      const upstreamName = context?.upstream ?? "default";
      const model = knownModels.has(s.model) ? s.model : "other";
      m.streamEnded(s, { model, upstream: upstreamName, caller });
      // What the stream used, charged to its caller's budget (and usage) after it ended.
      const tokens = streamTokens(s.usage, context?.promptBytes ?? 0, context?.sentBytes ?? 0);
      if (tokens) {
        m.tokensCharged(caller, model, tokens);
        budgets.charge(caller, { model, ...tokens });
      }
      context?.span.end({
        code: s.code,
        cause: s.cause,
        upstream: upstreamName,
        caller,
        inputTokens: s.usage?.promptTokens,
        outputTokens: s.usage?.completionTokens,
        finishReason: s.finishReason,
      });
    },
    onRefused: (r) => {
      const context = streamContext.getStore();
      const caller = context?.caller ?? "anonymous";
      m.callRefused(r.code, r.cause, caller);
      logRefusal({
        requestId: context?.requestId,
        traceId: context?.span.traceId,
        caller,
        model: knownModels.has(r.model) ? r.model : "other",
        code: status[r.code],
        cause: r.cause,
        message: r.details,
      });
      context?.span.end({
        code: r.code,
        cause: r.cause,
        upstream: undefined,
        caller,
        inputTokens: undefined,
        outputTokens: undefined,
        finishReason: undefined,
      });
    },
  });
  const catalog = createModelCatalog({
    sources: upstreams.sources,
    configured: [...knownModels],
    route: (model) => upstreams.router.route(model).name,
    ...config.models,
    secrets,
  });
  const served = instrumentChatService(chat, {
    tracing,
    defaultModel: config.upstream.model,
    callerFromMetadata: auth !== undefined,
    logPrompts: config.log.prompts,
  });
  const server = await startServer(served, {
    ...config.grpc,
    credentials: credentialsFrom(config),
    // Auth first, so the metrics interceptor sees the caller's name; with neither caller keys nor
    // metrics on, calls pass through no interceptor at all.
    interceptors: [...(auth ? [auth.interceptor] : []), ...(budgetCheck ? [budgetCheck] : []), ...(config.metrics ? [m.interceptor] : [])],
    listModels: listModelsHandler(catalog, logger),
    getUsage: getUsageHandler(budgets, auth !== undefined),
  });
  let metricsServer;
  try {
    metricsServer = config.metrics ? await m.serve(config.metrics.host, config.metrics.port) : undefined;
  } catch (error) {
    server.forceShutdown();
    await budgets.close();
    throw error;
  }
  return {
    port: server.port,
    config,
    metrics: m,
    budgets,
    metricsPort: metricsServer?.port,
    async shutdown(graceMs, forceAfterMs) {
      const outcome = await server.shutdown(graceMs, forceAfterMs);
      await Promise.all([metricsServer?.close(), tracing.shutdown(), budgets.close()]);
      return outcome;
    },
    forceShutdown() {
      server.forceShutdown();
      void budgets.close();
      void metricsServer?.close();
      void tracing.shutdown();
    },
  };
}

/**
 * The caller keys' budgets, kept in Redis when REDIS_URL is set (every replica shares them), else in
 * this process. Start-up waits for Redis for one timeout at most: a Redis that is down must not keep
 * the gateway from serving (its failure mode applies until Redis answers).
 */
async function callerBudgetsFrom(config: Config, logger: Logger, metrics: () => GatewayMetrics | undefined): Promise<CallerBudgets> {
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
    logger.warn({ failureMode: onRedisError }, "limits store (Redis) not reachable at start-up; retrying in the background");
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
      const outcome = allowed === undefined ? (operation === "usage" ? "failed" : "lost") : allowed ? "allowed" : "refused";
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
function upstreamFrom(config: Config, metrics: GatewayMetrics): { chat: ChatUpstream; router: UpstreamRouter; sources: ModelSource[] } {
  const make = (name: string, where: { baseURL: string; apiKey: string | undefined }) => {
    const onRetry = () => {
      const context = streamContext.getStore();
      if (context) context.retries++;
      metrics.upstreamRetry(name);
    };
    return new OpenAIUpstream({ ...config.upstream, ...where, fetch: upstreamFetch(onRetry), onRetry });
  };
  const routes = [
    { name: "default", upstream: make("default", config.upstream), models: [] },
    ...config.upstreams.map((u) => ({ name: u.name, upstream: make(u.name, u), models: u.models })),
  ];
  const [fallthrough, ...named] = routes as [(typeof routes)[number], ...typeof routes];
  const router = new UpstreamRouter(fallthrough, named);
  const sources = routes.map(({ name, upstream }) => ({ name, list: (timeoutMs: number) => upstream.listModels(timeoutMs) }));
  if (!config.fallback) return { chat: router, router, sources };
  const chat = new FallbackUpstream(router, make("fallback", config.fallback), {
    model: config.fallback.model,
    onFallback: (cause) => {
      const context = streamContext.getStore();
      metrics.fallback(context?.upstream ?? "default", cause);
      if (context) context.upstream = "fallback";
    },
  });
  return { chat, router, sources };
}
