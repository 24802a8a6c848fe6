// The gateway's whole configuration, read once from the environment and validated together, so a
// bad deployment fails at start-up with every problem listed instead of at the first request.
import { accessSync, constants, readFileSync } from "node:fs";
import { z } from "zod";
import { parseCallerKeys, type CallerKey } from "./caller-keys.js";
import { parseNamedUpstreams, type NamedUpstream } from "../upstream/named.js";

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().positive();
const optionalMs = z.coerce.number().int().min(0); // 0 turns the limit off
const bytes = z.coerce.number().int().positive();
const flag = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
const file = z.string().min(1);

const schema = z.object({
  GRPC_HOST: z.string().default("0.0.0.0"),
  GRPC_PORT: port.default(50051),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),

  // The openai SDK's own variables, so pointing the gateway at OpenAI, vLLM or Ollama is one setting.
  OPENAI_BASE_URL: z.url({ protocol: /^https?$/ }).default("https://api.openai.com/v1"),
  OPENAI_API_KEY: z.string().min(1).optional(),
  CHAT_MODEL: z.string().min(1).default("gpt-4o-mini"),
  // Tried when the upstream fails before sending any text (unreachable, 429, 5xx, timeout).
  FALLBACK_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
  FALLBACK_API_KEY: z.string().min(1).optional(),
  FALLBACK_MODEL: z.string().min(1).optional(),
  UPSTREAM_MAX_RETRIES: z.coerce.number().int().min(0).max(10).default(2),
  UPSTREAM_TIMEOUT_MS: positiveMs.default(60_000),
  UPSTREAM_IDLE_TIMEOUT_MS: optionalMs.default(60_000),
  // Hidden reasoning can take minutes before the first token (issue 14).
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: optionalMs.default(600_000),
  HEARTBEAT_INTERVAL_MS: optionalMs.default(15_000),
  MAX_STREAM_DURATION_MS: optionalMs.default(15 * 60_000),

  MAX_INPUT_BYTES: bytes.default(256 * 1024),
  MAX_MESSAGES: z.coerce.number().int().positive().default(256),
  MAX_OUTPUT_TOKENS: z.coerce.number().int().positive().default(131_072),
  MAX_CONCURRENT_STREAMS: z.coerce.number().int().positive().default(10_000),
  SHUTDOWN_GRACE_MS: optionalMs.default(30_000),

  // Tools, images and the model list (issue 9).
  MAX_TOOLS: z.coerce.number().int().positive().default(128),
  MAX_IMAGE_BYTES: bytes.default(20 * 1024 * 1024),
  MODELS_CACHE_MS: optionalMs.default(60_000),
  MODELS_TIMEOUT_MS: positiveMs.default(5_000),

  // Operations: logs, metrics, tracing, caller auth, TLS.
  LOG_FORMAT: z.enum(["auto", "json", "pretty"]).default("auto"),
  LOG_PROMPTS: flag.default(false),
  METRICS_HOST: z.string().min(1).default("127.0.0.1"),
  METRICS_PORT: port.optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default("chat-gateway"),
  // Closed by default: a deployment with no caller keys must say AUTH=none to let anyone in.
  AUTH: z.enum(["keys", "none"]).default("keys"),
  CALLER_KEYS: z.string().min(1).optional(),
  CALLER_KEYS_FILE: file.optional(),
  TLS_CERT_FILE: file.optional(),
  TLS_KEY_FILE: file.optional(),
  TLS_CLIENT_CA_FILE: file.optional(),

  // Caller budgets (src/limits/): in process, or shared by every replica in Redis.
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  LIMITS_ON_REDIS_ERROR: z.enum(["open", "closed"]).default("open"),
  LIMITS_REDIS_TIMEOUT_MS: positiveMs.default(250),
  LIMITS_LEASE_TTL_MS: z.coerce.number().int().min(300).default(15_000),

  // Read by `npm start` only (src/stack.ts), for the Envoy it runs beside the service.
  HTTP_HOST: z.string().min(1).default("0.0.0.0"),
  HTTP_PORT: port.default(8080),
  ENVOY_ADMIN_PORT: port.default(9901),
  CORS_ALLOW_ORIGIN: z.string().min(1).optional(),
  // Read by `npm run start:cluster` only (src/cluster.ts): how many service processes it runs.
  REPLICAS: z.coerce.number().int().min(1).max(64).default(3),
});

/** Every environment variable the gateway reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

/** A right value for each variable, quoted in start-up errors. */
const examples: Record<string, string> = {
  GRPC_HOST: "0.0.0.0",
  GRPC_PORT: "50051",
  LOG_LEVEL: "info",
  OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
  OPENAI_API_KEY: "sk-...",
  CHAT_MODEL: "gpt-4o-mini",
  FALLBACK_BASE_URL: "https://api.openai.com/v1",
  FALLBACK_API_KEY: "sk-...",
  FALLBACK_MODEL: "gpt-4o-mini",
  UPSTREAM_MAX_RETRIES: "2",
  UPSTREAM_TIMEOUT_MS: "60000",
  UPSTREAM_IDLE_TIMEOUT_MS: "60000",
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: "600000",
  HEARTBEAT_INTERVAL_MS: "15000",
  MAX_STREAM_DURATION_MS: "900000",
  MAX_INPUT_BYTES: "262144",
  MAX_MESSAGES: "256",
  MAX_OUTPUT_TOKENS: "131072",
  MAX_CONCURRENT_STREAMS: "10000",
  SHUTDOWN_GRACE_MS: "30000",
  MAX_TOOLS: "128",
  MAX_IMAGE_BYTES: "20971520",
  MODELS_CACHE_MS: "60000",
  MODELS_TIMEOUT_MS: "5000",
  LOG_FORMAT: "json",
  LOG_PROMPTS: "false",
  METRICS_HOST: "127.0.0.1",
  METRICS_PORT: "9464",
  OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel-collector:4318",
  OTEL_SERVICE_NAME: "chat-gateway",
  AUTH: "none",
  CALLER_KEYS: "billing sha256:<64 hex digits> streams=20 rpm=600 tpm=1000000, search <a key of 16+ characters>",
  CALLER_KEYS_FILE: "/run/secrets/caller-keys",
  TLS_CERT_FILE: "/etc/chat-gateway/tls.crt",
  TLS_KEY_FILE: "/etc/chat-gateway/tls.key",
  TLS_CLIENT_CA_FILE: "/etc/chat-gateway/clients-ca.crt",
  REDIS_URL: "redis://redis:6379",
  LIMITS_ON_REDIS_ERROR: "closed",
  LIMITS_REDIS_TIMEOUT_MS: "250",
  LIMITS_LEASE_TTL_MS: "15000",
  HTTP_HOST: "127.0.0.1",
  HTTP_PORT: "8080",
  ENVOY_ADMIN_PORT: "9901",
  CORS_ALLOW_ORIGIN: "https://app.example.com",
  REPLICAS: "3",
};

export interface Config {
  grpc: { host: string; port: number };
  logLevel: z.infer<typeof schema>["LOG_LEVEL"];
  upstream: {
    baseURL: string;
    /** Absent for servers that need none (Ollama, llama.cpp); the SDK then sends a placeholder. */
    apiKey: string | undefined;
    model: string;
    maxRetries: number;
    timeoutMs: number;
    /** Silence between chunks once the first token came (0: none). */
    idleTimeoutMs: number;
    /** From an attempt's response headers to its first token (0: none). */
    firstTokenTimeoutMs: number;
  };
  /** Upstream silence after which the caller gets a heartbeat event, and again every as long (0: none). */
  heartbeatIntervalMs: number;
  /** A second upstream for failures before the first token; absent when not configured. */
  fallback: { baseURL: string; apiKey: string | undefined; model: string | undefined } | undefined;
  limits: {
    maxInputBytes: number;
    maxMessages: number;
    /** The largest `max_tokens` a request may ask for. */
    maxOutputTokens: number;
    maxConcurrentStreams: number;
    maxStreamDurationMs: number;
    /** Tool definitions in one request. */
    maxTools: number;
    /** Decoded bytes of one data: URL image (images also count toward maxInputBytes). */
    maxImageBytes: number;
  };
  /** ListModels: how long upstream model lists are reused, and how long listing may take. */
  models: { cacheMs: number; timeoutMs: number };
  shutdownGraceMs: number;
  /** More upstreams, each serving the models it names; every other model goes to `upstream`. */
  upstreams: NamedUpstream[];
  log: {
    /** `auto`: human-readable on a terminal, JSON lines otherwise. */
    format: "auto" | "json" | "pretty";
    /** Put prompts and replies in the per-stream log line (off: never logged). */
    prompts: boolean;
  };
  /** The Prometheus endpoint; absent when METRICS_PORT is unset. */
  metrics: { host: string; port: number } | undefined;
  tracing: { otlpEndpoint: string | undefined; serviceName: string };
  /** Caller keys; absent only with AUTH=none, and then every call is let in. */
  auth: { keys: CallerKey[] } | undefined;
  /** Where the caller keys' limits and usage are kept, and what a failing store means. */
  budgets: {
    /** Redis shared by every replica; in process when absent. */
    redisUrl: string | undefined;
    /** `open`: let calls in unchecked while Redis fails; `closed`: refuse them (UNAVAILABLE). */
    onRedisError: "open" | "closed";
    /** How long one Redis operation may take before it counts as failed. */
    timeoutMs: number;
    /** How long a stream's lease outlives its replica's last refresh (refreshed every third of it). */
    leaseTtlMs: number;
  };
  tls: { certFile: string; keyFile: string; clientCaFile: string | undefined } | undefined;
  /** The Envoy of `npm start` and `npm run start:cluster`, and the number of replicas of the latter. */
  stack: { httpHost: string; httpPort: number; adminPort: number; corsAllowOrigin: string | undefined; replicas: number };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set", as in most shells' `FOO= cmd` and compose files.
  const present = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ""),
  );
  const problems: string[] = [];
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? "?");
      problems.push(problem(name, plainWords(issue, name)));
    }
  }
  // Named upstreams and caller keys have formats of their own; their problems join the same list.
  const upstreams = parseNamedUpstreams(present, new Set(CONFIG_VARIABLES), (name, what) => problems.push(problem(name, what, upstreamExample(name))));
  let callerKeys: CallerKey[] = [];
  const problemsBeforeKeys = problems.length;
  if (present.CALLER_KEYS !== undefined) {
    callerKeys = parseCallerKeys(present.CALLER_KEYS, (what) => problems.push(problem("CALLER_KEYS", what)));
  }
  if (present.CALLER_KEYS_FILE !== undefined) {
    const text = readable(present.CALLER_KEYS_FILE, "CALLER_KEYS_FILE", problems);
    if (text !== undefined) {
      callerKeys = [
        ...callerKeys,
        ...parseCallerKeys(text, (what) => problems.push(problem("CALLER_KEYS_FILE", what))),
      ];
    }
  }
  if (present.OPENAI_CUSTOM_HEADERS !== undefined) {
    problems.push(
      problem("OPENAI_CUSTOM_HEADERS", "not supported: the openai SDK would send these headers to every upstream, whatever its key; unset it"),
    );
  }
  const authNone = present.AUTH === "none";
  const keysSet = present.CALLER_KEYS !== undefined || present.CALLER_KEYS_FILE !== undefined;
  if (!authNone && !keysSet) {
    problems.push(
      problem("CALLER_KEYS", "caller keys are required: set CALLER_KEYS or CALLER_KEYS_FILE, or set AUTH=none to let any caller in"),
    );
  }
  if (!authNone && keysSet && callerKeys.length === 0 && problems.length === problemsBeforeKeys) {
    const where = present.CALLER_KEYS_FILE !== undefined ? "CALLER_KEYS_FILE" : "CALLER_KEYS";
    problems.push(problem(where, "holds no caller key, so no caller could call: add one, or set AUTH=none to let any caller in"));
  }
  if (authNone && keysSet) {
    problems.push(
      problem("AUTH", "AUTH=none lets any caller in, but caller keys are set (CALLER_KEYS or CALLER_KEYS_FILE): unset AUTH to require them, or unset the keys", "keys"),
    );
  }
  const names = new Set<string>();
  for (const key of callerKeys) {
    if (names.has(key.name)) problems.push(problem("CALLER_KEYS", `the caller name "${key.name}" is used twice`));
    names.add(key.name);
  }
  if ((present.TLS_CERT_FILE === undefined) !== (present.TLS_KEY_FILE === undefined)) {
    problems.push(problem(present.TLS_CERT_FILE ? "TLS_KEY_FILE" : "TLS_CERT_FILE", "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE"));
  }
  if (present.TLS_CLIENT_CA_FILE !== undefined && present.TLS_CERT_FILE === undefined) {
    problems.push(problem("TLS_CERT_FILE", "TLS_CLIENT_CA_FILE is set, but client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE too"));
  }
  for (const name of ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"] as const) {
    const path = present[name];
    if (path !== undefined) readable(path, name, problems, false);
  }

  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const e = parsed.data;
  return {
    grpc: { host: e.GRPC_HOST, port: e.GRPC_PORT },
    logLevel: e.LOG_LEVEL,
    upstream: {
      baseURL: e.OPENAI_BASE_URL,
      apiKey: e.OPENAI_API_KEY,
      model: e.CHAT_MODEL,
      maxRetries: e.UPSTREAM_MAX_RETRIES,
      timeoutMs: e.UPSTREAM_TIMEOUT_MS,
      idleTimeoutMs: e.UPSTREAM_IDLE_TIMEOUT_MS,
      firstTokenTimeoutMs: e.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS,
    },
    heartbeatIntervalMs: e.HEARTBEAT_INTERVAL_MS,
    fallback: e.FALLBACK_BASE_URL
      ? { baseURL: e.FALLBACK_BASE_URL, apiKey: e.FALLBACK_API_KEY, model: e.FALLBACK_MODEL }
      : undefined,
    limits: {
      maxInputBytes: e.MAX_INPUT_BYTES,
      maxMessages: e.MAX_MESSAGES,
      maxOutputTokens: e.MAX_OUTPUT_TOKENS,
      maxConcurrentStreams: e.MAX_CONCURRENT_STREAMS,
      maxStreamDurationMs: e.MAX_STREAM_DURATION_MS,
      maxTools: e.MAX_TOOLS,
      maxImageBytes: e.MAX_IMAGE_BYTES,
    },
    models: { cacheMs: e.MODELS_CACHE_MS, timeoutMs: e.MODELS_TIMEOUT_MS },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    upstreams,
    log: { format: e.LOG_FORMAT, prompts: e.LOG_PROMPTS },
    metrics: e.METRICS_PORT === undefined ? undefined : { host: e.METRICS_HOST, port: e.METRICS_PORT },
    tracing: { otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: e.OTEL_SERVICE_NAME },
    auth: e.AUTH === "keys" ? { keys: callerKeys } : undefined,
    budgets: {
      redisUrl: e.REDIS_URL,
      onRedisError: e.LIMITS_ON_REDIS_ERROR,
      timeoutMs: e.LIMITS_REDIS_TIMEOUT_MS,
      leaseTtlMs: e.LIMITS_LEASE_TTL_MS,
    },
    tls:
      e.TLS_CERT_FILE && e.TLS_KEY_FILE
        ? { certFile: e.TLS_CERT_FILE, keyFile: e.TLS_KEY_FILE, clientCaFile: e.TLS_CLIENT_CA_FILE }
        : undefined,
    stack: { httpHost: e.HTTP_HOST, httpPort: e.HTTP_PORT, adminPort: e.ENVOY_ADMIN_PORT, corsAllowOrigin: e.CORS_ALLOW_ORIGIN, replicas: e.REPLICAS },
  };
}

/** For entry points: the configuration, or every problem on stderr and exit status 2. */
export function loadConfigOrExit(env: Record<string, string | undefined>): Config {
  try {
    return loadConfig(env);
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
}

// Never echo the value in a problem: it may be a secret.
function problem(name: string, what: string, example = examples[name]): string {
  return `${name}: ${what}${example ? ` (for example ${name}=${example})` : ""}`;
}

function plainWords(issue: z.core.$ZodIssue, name: string): string {
  switch (issue.code) {
    case "invalid_type":
      return issue.expected === "number" ? "must be a number" : `must be a ${issue.expected}`;
    case "too_small":
      return `must be ${issue.inclusive ? "at least" : "more than"} ${String(issue.minimum)}`;
    case "too_big":
      return `must be ${issue.inclusive ? "at most" : "less than"} ${String(issue.maximum)}`;
    case "invalid_format":
      if (issue.format !== "url") return `is not a valid ${issue.format}`;
      return name === "REDIS_URL" ? "must be a redis:// or rediss:// URL" : "must be an http:// or https:// URL";
    case "invalid_value":
      return `must be one of ${issue.values.map(String).join(", ")}`;
    default:
      return issue.message;
  }
}

function upstreamExample(name: string): string | undefined {
  const suffix = /_(BASE_URL|API_KEY|MODELS)$/.exec(name)?.[1];
  if (suffix === "BASE_URL") return "https://api.deepseek.com/v1";
  if (suffix === "API_KEY") return "sk-...";
  if (suffix === "MODELS") return "deepseek-chat,deepseek-reasoner";
  return undefined;
}

/** The file's text, or a problem when it cannot be read. */
function readable(path: string, name: string, problems: string[], read = true): string | undefined {
  try {
    if (!read) {
      accessSync(path, constants.R_OK);
      return undefined;
    }
    return readFileSync(path, "utf8");
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    problems.push(problem(name, `cannot read ${path}${code === "ENOENT" ? ": no such file" : code ? ` (${code})` : ""}`));
    return undefined;
  }
}
