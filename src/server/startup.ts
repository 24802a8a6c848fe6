// What the start-up line says about a running gateway: where it listens and how it is set up, in
// words an operator can act on. Never a key: upstreams appear by name and URL only, and URLs with
// their credentials (user info, query values) redacted.
import type { Config } from "./config.js";
import type { Gateway } from "./gateway.js";
import { redactUrl } from "../observability/redact-url.js";

export function startupFields(config: Config, gateway: Gateway): Record<string, unknown> {
  return {
    port: gateway.port,
    tls: config.tls ? (config.tls.clientCaFile ? "on, client certificates required" : "on") : "off",
    auth: config.auth
      ? `caller keys required (${config.auth.keys.map((k) => k.name).join(", ")})`
      : "open: AUTH=none, so any caller may call",
    limits: config.budgets.redisUrl
      ? `shared by every replica in Redis at ${redactUrl(config.budgets.redisUrl)}; on a Redis error, fail ${config.budgets.onRedisError}`
      : "in this process only (set REDIS_URL to share them between replicas)",
    // Which store the conversations are in: replicas that should share them name one PostgreSQL.
    conversations: config.conversations.databaseUrl
      ? `PostgreSQL at ${redactUrl(config.conversations.databaseUrl)}`
      : `SQLite at ${config.conversations.sqlitePath} (this replica only; set DATABASE_URL to share them)`,
    metrics:
      gateway.metricsPort === undefined
        ? "off (set METRICS_PORT)"
        : `http://${config.metrics?.host}:${gateway.metricsPort}/metrics`,
    metricsPort: gateway.metricsPort,
    tracing: config.tracing.otlpEndpoint ? `OTLP to ${redactUrl(config.tracing.otlpEndpoint)}` : "propagation only",
    upstream: redactUrl(config.upstream.baseURL),
    model: config.upstream.model,
    ...(config.upstreams.length > 0 && {
      upstreams: Object.fromEntries(
        config.upstreams.map((u) => [u.name, { baseURL: redactUrl(u.baseURL), models: u.models }]),
      ),
    }),
    ...(config.fallback && { fallback: redactUrl(config.fallback.baseURL) }),
    logPrompts: config.log.prompts,
  };
}
