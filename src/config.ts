// The gateway's whole configuration, read once from the environment and validated together, so a
// bad deployment fails at start-up with every problem listed instead of at the first request.
import { z } from "zod";

const port = z.coerce.number().int().min(0).max(65535);
const positiveMs = z.coerce.number().int().positive();
const optionalMs = z.coerce.number().int().min(0); // 0 turns the limit off
const bytes = z.coerce.number().int().positive();

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
  MAX_STREAM_DURATION_MS: optionalMs.default(15 * 60_000),

  MAX_INPUT_BYTES: bytes.default(256 * 1024),
  MAX_MESSAGES: z.coerce.number().int().positive().default(256),
  MAX_CONCURRENT_STREAMS: z.coerce.number().int().positive().default(10_000),
  SHUTDOWN_GRACE_MS: optionalMs.default(30_000),
});

/** Every environment variable the gateway reads. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(schema.shape);

const examples: Record<string, string> = {
  GRPC_PORT: "50051",
  LOG_LEVEL: "info",
  OPENAI_BASE_URL: "http://127.0.0.1:11434/v1",
  OPENAI_API_KEY: "sk-...",
  CHAT_MODEL: "gpt-4o-mini",
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
    idleTimeoutMs: number;
  };
  /** A second upstream for failures before the first token; absent when not configured. */
  fallback: { baseURL: string; apiKey: string | undefined; model: string | undefined } | undefined;
  limits: {
    maxInputBytes: number;
    maxMessages: number;
    maxConcurrentStreams: number;
    maxStreamDurationMs: number;
  };
  shutdownGraceMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set", as in most shells' `FOO= cmd` and compose files.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? "?");
        const example = examples[name];
        // Never echo the value: it may be a secret.
        return `${name}: ${issue.message}${example ? ` (for example ${name}=${example})` : ""}`;
      }),
    );
  }
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
    },
    fallback: e.FALLBACK_BASE_URL
      ? { baseURL: e.FALLBACK_BASE_URL, apiKey: e.FALLBACK_API_KEY, model: e.FALLBACK_MODEL }
      : undefined,
    limits: {
      maxInputBytes: e.MAX_INPUT_BYTES,
      maxMessages: e.MAX_MESSAGES,
      maxConcurrentStreams: e.MAX_CONCURRENT_STREAMS,
      maxStreamDurationMs: e.MAX_STREAM_DURATION_MS,
    },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
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
