// The gateway's whole configuration, read once from the environment and validated together, so a
// bad deployment fails at start-up with every problem listed instead of at the first request. The
// variables are declared in config-variables.ts; here they are checked together and shaped into Config.
import { accessSync, constants, readFileSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { SERVICE_SECTIONS } from "./config-variables.js";
import {
  ConfigError,
  loadOrExit,
  parseVariables,
  presentOf,
  problem as problemOf,
  schemaOf,
  variablesOf,
} from "./variables.js";
import { parseCallerKeys, type CallerKey } from "./caller-keys.js";
import { parseNamedUpstreams, type NamedUpstream } from "../upstream/named.js";

const VARIABLES = variablesOf(SERVICE_SECTIONS);
const schema = schemaOf(SERVICE_SECTIONS);

/** Every environment variable the service reads (declared in config-variables.ts). */
export const CONFIG_VARIABLES: readonly string[] = [...VARIABLES.keys()];

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
  /** Resumable streams: the grace without a caller, how long ended ones are kept, the memory bounds. */
  resume: { graceMs: number; retentionMs: number; leaseMs: number; maxStreamBytes: number; maxTotalBytes: number };
  /** Stored conversations: PostgreSQL when `databaseUrl` is set, else SQLite at `sqlitePath`. */
  conversations: {
    databaseUrl: string | undefined;
    sqlitePath: string;
    maxHistoryTurns: number;
    leaseMs: number;
    flushMs: number;
    flushChars: number;
  };
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
}

export { ConfigError };

export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = presentOf(env);
  const problems: string[] = [];
  const e = parseVariables(schema, VARIABLES, present, problems);
  // Named upstreams and caller keys have formats of their own; their problems join the same list.
  const upstreams = parseNamedUpstreams(present, new Set(CONFIG_VARIABLES), (name, what) =>
    problems.push(problem(name, what, upstreamExample(name))),
  );
  const problemsBeforeKeys = problems.length;
  const callerKeys = readCallerKeys(present, problems);
  if (present.OPENAI_CUSTOM_HEADERS !== undefined) {
    problems.push(
      problem(
        "OPENAI_CUSTOM_HEADERS",
        "not supported: the openai SDK would send these headers to every upstream, whatever its key; unset it",
      ),
    );
  }
  checkAuth(present, callerKeys, problems, problemsBeforeKeys);
  checkTls(present, problems);
  // Each flush renews the lease: with no margin, one slow write would free a live stream's conversation.
  if (e && e.CONVERSATION_LEASE_MS <= 2 * e.CONVERSATION_FLUSH_MS) {
    problems.push(problem("CONVERSATION_LEASE_MS", "must be more than twice CONVERSATION_FLUSH_MS"));
  }

  if (problems.length > 0 || e === undefined) throw new ConfigError(problems);
  return shapeConfig(e, upstreams, callerKeys);
}

/** The caller keys of CALLER_KEYS, then those of CALLER_KEYS_FILE; their problems join `problems`. */
function readCallerKeys(present: Record<string, string>, problems: string[]): CallerKey[] {
  let callerKeys: CallerKey[] = [];
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
  return callerKeys;
}

/**
 * Problems with AUTH and the caller keys together: keys required unless AUTH=none, not both, no
 * duplicate names. "Holds no caller key" is only said when no problem came since `problemsBeforeKeys`.
 */
function checkAuth(
  present: Record<string, string>,
  callerKeys: CallerKey[],
  problems: string[],
  problemsBeforeKeys: number,
): void {
  const authNone = present.AUTH === "none";
  const keysSet = present.CALLER_KEYS !== undefined || present.CALLER_KEYS_FILE !== undefined;
  if (!authNone && !keysSet) {
    problems.push(
      problem(
        "CALLER_KEYS",
        "caller keys are required: set CALLER_KEYS or CALLER_KEYS_FILE, or set AUTH=none to let any caller in",
      ),
    );
  }
  if (!authNone && keysSet && callerKeys.length === 0 && problems.length === problemsBeforeKeys) {
    const where = present.CALLER_KEYS_FILE !== undefined ? "CALLER_KEYS_FILE" : "CALLER_KEYS";
    problems.push(
      problem(where, "holds no caller key, so no caller could call: add one, or set AUTH=none to let any caller in"),
    );
  }
  if (authNone && keysSet) {
    problems.push(
      problem(
        "AUTH",
        "AUTH=none lets any caller in, but caller keys are set (CALLER_KEYS or CALLER_KEYS_FILE): unset AUTH to require them, or unset the keys",
        "keys",
      ),
    );
  }
  const names = new Set<string>();
  for (const key of callerKeys) {
    if (names.has(key.name)) problems.push(problem("CALLER_KEYS", `the caller name "${key.name}" is used twice`));
    names.add(key.name);
  }
}

/** Problems with the TLS variables: certificate and key together, a client CA only with them, every file readable. */
function checkTls(present: Record<string, string>, problems: string[]): void {
  if ((present.TLS_CERT_FILE === undefined) !== (present.TLS_KEY_FILE === undefined)) {
    problems.push(
      problem(
        present.TLS_CERT_FILE ? "TLS_KEY_FILE" : "TLS_CERT_FILE",
        "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE",
      ),
    );
  }
  if (present.TLS_CLIENT_CA_FILE !== undefined && present.TLS_CERT_FILE === undefined) {
    problems.push(
      problem(
        "TLS_CERT_FILE",
        "TLS_CLIENT_CA_FILE is set, but client certificates need TLS: set TLS_CERT_FILE and TLS_KEY_FILE too",
      ),
    );
  }
  for (const name of ["TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE"] as const) {
    const path = present[name];
    if (path !== undefined) readable(path, name, problems, false);
  }
}

/** The validated variables shaped into Config. */
function shapeConfig(e: z.infer<typeof schema>, upstreams: NamedUpstream[], callerKeys: CallerKey[]): Config {
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
    resume: {
      graceMs: e.RESUME_GRACE_MS,
      retentionMs: e.RESUME_RETENTION_MS,
      leaseMs: e.RESUME_LEASE_MS,
      maxStreamBytes: e.RESUME_MAX_STREAM_BYTES,
      maxTotalBytes: e.RESUME_MAX_TOTAL_BYTES,
    },
    conversations: {
      databaseUrl: e.DATABASE_URL,
      sqlitePath: join(e.DATA_DIR, "conversations.db"),
      maxHistoryTurns: e.MAX_HISTORY_TURNS,
      leaseMs: e.CONVERSATION_LEASE_MS,
      flushMs: e.CONVERSATION_FLUSH_MS,
      flushChars: e.CONVERSATION_FLUSH_CHARS,
    },
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
  };
}

/** For entry points: the configuration, or every problem on stderr and exit status 2. */
export function loadConfigOrExit(env: Record<string, string | undefined>): Config {
  return loadOrExit(() => loadConfig(env));
}

/** A problem with a variable, with its declared example (or the one given). Never echoes the value: it may be a secret. */
function problem(name: string, what: string, example = VARIABLES.get(name)?.example): string {
  return problemOf(name, what, example);
}

/** For a named upstream's variable, the first declared example of its kind (config-variables.ts). */
function upstreamExample(name: string): string | undefined {
  const suffix = /_(BASE_URL|API_KEY|MODELS)$/.exec(name)?.[1];
  if (suffix === undefined) return undefined;
  const line = SERVICE_SECTIONS.flatMap((s) => s.exampleLines ?? []).find((l) =>
    l.split("=")[0]?.endsWith(`_${suffix}`),
  );
  return line?.slice(line.indexOf("=") + 1);
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
    problems.push(
      problem(name, `cannot read ${path}${code === "ENOENT" ? ": no such file" : code ? ` (${code})` : ""}`),
    );
    return undefined;
  }
}
