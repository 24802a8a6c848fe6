// Every environment variable the service reads, declared once: the one place to add or change one.
// Its zod type (with the default), a one-line description, an example of a right value, and the
// section it is listed under. config.ts reads the environment with it; `npm run docs:config` writes
// docs/config-reference.md and .env.example from it (a test fails when they are stale).
import { z } from "zod";
import { bytes, file, flag, optionalMs, port, positiveMs, section, url } from "./variables.js";

export const SERVICE_SECTIONS = [
  section({
    title: "gRPC listener",
    variables: {
      GRPC_HOST: {
        type: z.string().default("0.0.0.0"),
        description: "The address the gRPC service listens on.",
        example: "0.0.0.0",
      },
      GRPC_PORT: { type: port.default(50051), description: "The gRPC port (0: any free port).", example: "50051" },
      TLS_CERT_FILE: {
        type: file.optional(),
        description:
          "Serve TLS on the gRPC port: the PEM certificate chain (with TLS_KEY_FILE: both, or neither). Unset: no TLS.",
        example: "/etc/chat-gateway/tls.crt",
      },
      TLS_KEY_FILE: {
        type: file.optional(),
        description: "The PEM private key of TLS_CERT_FILE.",
        example: "/etc/chat-gateway/tls.key",
      },
      TLS_CLIENT_CA_FILE: {
        type: file.optional(),
        description:
          "With TLS on, also require client certificates signed by this CA (mutual TLS). Unset: no client certificates.",
        example: "/etc/chat-gateway/clients-ca.crt",
      },
    },
  }),

  section({
    title: "Default upstream",
    about:
      "Any OpenAI-compatible chat-completions API. The openai SDK's own variables, so pointing the gateway at OpenAI, vLLM or Ollama is one setting.",
    variables: {
      OPENAI_BASE_URL: {
        type: url("http", "https").default("https://api.openai.com/v1"),
        description: "The upstream's API base URL.",
        example: "http://127.0.0.1:11434/v1",
      },
      OPENAI_API_KEY: {
        type: z.string().min(1).optional(),
        description:
          "The upstream's API key. Unset: none (Ollama, llama.cpp need none; the SDK then sends a placeholder).",
        example: "sk-...",
      },
      CHAT_MODEL: {
        type: z.string().min(1).default("gpt-4o-mini"),
        description: "The model used when a request names none.",
        example: "gpt-4o-mini",
      },
      UPSTREAM_MAX_RETRIES: {
        type: z.coerce.number().int().min(0).max(10).default(2),
        description:
          "Retries of an upstream that fails before its first token (unreachable, 429, 5xx, timeout, an error in the stream).",
        example: "2",
      },
      UPSTREAM_TIMEOUT_MS: {
        type: positiveMs.default(60_000),
        description: "The wait for each attempt's response headers (the openai SDK's timeout).",
        example: "60000",
      },
      UPSTREAM_IDLE_TIMEOUT_MS: {
        type: optionalMs.default(60_000),
        description:
          "Once the upstream sent its first token: no data from it for this long ends the stream (0: never).",
        example: "60000",
      },
      // Hidden reasoning can take minutes before the first token (issue 14).
      UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: {
        type: optionalMs.default(600_000),
        description:
          "From the upstream's response headers to its first token (text, reasoning or a tool call): longer ends the stream (0: never).",
        example: "600000",
        details: "A reasoning model may think for minutes without a word.",
      },
      HEARTBEAT_INTERVAL_MS: {
        type: optionalMs.default(15_000),
        description: "While the upstream sends nothing, a heartbeat event goes to the caller every this long (0: off).",
        example: "15000",
        details:
          "So the caller and every proxy on the way (Envoy, nginx, load balancers) see a live stream. Keep it well below the shortest idle timeout of any proxy in front (nginx and most load balancers: 60 s).",
      },
    },
  }),

  section({
    title: "More upstreams, routed by the request's model",
    about:
      "`UPSTREAM_<NAME>_BASE_URL` (required), `UPSTREAM_<NAME>_API_KEY` (optional), `UPSTREAM_<NAME>_MODELS` (required: comma-separated; a trailing `*` matches by prefix). `<NAME>` is capital letters and digits, and appears in logs and metrics in lower case. A model no upstream lists goes to the default upstream. Default: none.",
    exampleLines: [
      "UPSTREAM_DEEPSEEK_BASE_URL=https://api.deepseek.com/v1",
      "UPSTREAM_DEEPSEEK_API_KEY=sk-...",
      "UPSTREAM_DEEPSEEK_MODELS=deepseek-chat,deepseek-reasoner",
      "UPSTREAM_LOCAL_BASE_URL=http://127.0.0.1:11434/v1",
      "UPSTREAM_LOCAL_MODELS=llama3.2,qwen2.5*",
    ],
    variables: {},
  }),

  section({
    title: "Fallback",
    about: "Tried when an upstream fails before sending any text (unreachable, 429, 5xx, timeout).",
    variables: {
      FALLBACK_BASE_URL: {
        type: url("http", "https").optional(),
        description: "The fallback upstream's API base URL. Unset: no fallback.",
        example: "https://api.openai.com/v1",
      },
      FALLBACK_API_KEY: {
        type: z.string().min(1).optional(),
        description: "The fallback upstream's API key. Unset: none.",
        example: "sk-...",
      },
      FALLBACK_MODEL: {
        type: z.string().min(1).optional(),
        description: "The model asked of the fallback. Unset: the request's model.",
        example: "gpt-4o-mini",
      },
    },
  }),

  section({
    title: "Limits",
    variables: {
      MAX_STREAM_DURATION_MS: {
        type: optionalMs.default(15 * 60_000),
        description: "The longest a stream may last (0: no limit).",
        example: "900000",
      },
      MAX_INPUT_BYTES: {
        type: bytes.default(256 * 1024),
        description: "UTF-8 bytes of everything the model reads in one request.",
        example: "262144",
        details:
          "Text, messages, tool calls and definitions, schemas, `extra_body`, and the decoded bytes of `data:` URL images.",
      },
      MAX_MESSAGES: {
        type: z.coerce.number().int().positive().default(256),
        description: "Messages in one request.",
        example: "256",
      },
      MAX_OUTPUT_TOKENS: {
        type: z.coerce.number().int().positive().default(131_072),
        description: "The largest `max_tokens` a request may ask for (more is INVALID_ARGUMENT).",
        example: "131072",
      },
      MAX_CONCURRENT_STREAMS: {
        type: z.coerce.number().int().positive().default(10_000),
        description: "Streams open at once in this process; more are refused (RESOURCE_EXHAUSTED).",
        example: "10000",
      },
      SHUTDOWN_GRACE_MS: {
        type: optionalMs.default(30_000),
        description: "On SIGTERM, how long open streams may take to finish.",
        example: "30000",
      },
    },
  }),

  section({
    title: "Tools, images and the model list",
    variables: {
      MAX_TOOLS: {
        type: z.coerce.number().int().positive().default(128),
        description: "Tool definitions in one request (OpenAI's own limit is 128).",
        example: "128",
      },
      MAX_IMAGE_BYTES: {
        type: bytes.default(20 * 1024 * 1024),
        description: "Decoded bytes of one `data:` URL image in a message part (OpenAI's per-image limit is 20 MiB).",
        example: "20971520",
        details: "Images also count toward MAX_INPUT_BYTES: raise that too to accept large images.",
      },
      MODELS_CACHE_MS: {
        type: optionalMs.default(60_000),
        description: "ListModels reuses each upstream's model list for this long (0: ask every time).",
        example: "60000",
        details: "A failed listing is retried after at most 5 s.",
      },
      MODELS_TIMEOUT_MS: {
        type: positiveMs.default(5_000),
        description: "How long one upstream may take to list its models before it is reported unavailable.",
        example: "5000",
      },
    },
  }),

  section({
    title: "Caller auth",
    variables: {
      // Closed by default: a deployment with no caller keys must say AUTH=none to let anyone in.
      AUTH: {
        type: z.enum(["keys", "none"]).default("keys"),
        description:
          "keys: every call but health checks and reflection needs `authorization: Bearer <key>`; none: any caller may call.",
        example: "none",
        details:
          "With keys the service refuses to start without at least one key (CALLER_KEYS or CALLER_KEYS_FILE). With none it says so in its start-up line: only where nothing untrusted can reach the ports. `npm start` sets none when no keys are given, and then listens on 127.0.0.1 only.",
      },
      CALLER_KEYS: {
        type: z.string().min(1).optional(),
        description:
          "Caller keys: `<name> <key> [streams=N] [rpm=N] [tpm=N]` entries, separated by commas or new lines.",
        example: "billing sha256:<64 hex digits> streams=20 rpm=600 tpm=1000000, search <a key of 16+ characters>",
        details:
          'At most N streams open at once (over every replica), N chat requests per minute, N tokens (prompt + completion) per minute; a limit left out is no limit. The older `<name> <key> <N>` (N concurrent streams) still works. A key may be given hashed, as `sha256:<hex digest>` (`printf %s "$KEY" | sha256sum`).',
      },
      CALLER_KEYS_FILE: {
        type: file.optional(),
        description: "The same entries in a file, one per line, `#` comments allowed; adds to CALLER_KEYS.",
        example: "/run/secrets/caller-keys",
      },
    },
  }),

  section({
    title: "Caller budgets: where the limits above are kept",
    variables: {
      REDIS_URL: {
        type: url("redis", "rediss").optional(),
        description:
          "Redis or Valkey shared by every replica, which then share the limits and the usage. Unset: in this process, so each replica counts alone (right for one replica).",
        example: "redis://redis:6379",
      },
      LIMITS_ON_REDIS_ERROR: {
        type: z.enum(["open", "closed"]).default("open"),
        description:
          "What a call meets while Redis fails or is too slow: open lets it in unchecked, closed refuses it (UNAVAILABLE, HTTP 503, retry-after: 1).",
        example: "closed",
        details:
          "Either way it is logged (at most a line per 10 s per operation) and counted in chat_gateway_limits_store_errors_total.",
      },
      LIMITS_REDIS_TIMEOUT_MS: {
        type: positiveMs.default(250),
        description: "How long one Redis operation may take before it counts as failed.",
        example: "250",
      },
      LIMITS_LEASE_TTL_MS: {
        type: z.coerce.number().int().min(300).default(15_000),
        description: "A stream's lease in Redis lives this long unless its replica refreshes it (every third of it).",
        example: "15000",
        details: "The slots of a replica that dies come back within this time.",
      },
    },
  }),

  section({
    title: "Conversations",
    about:
      "Stored conversations (ConversationService, and Chat's conversation_id): SQLite in DATA_DIR by default, PostgreSQL when DATABASE_URL is set (replicas must share one database).",
    variables: {
      DATA_DIR: {
        type: z.string().min(1).default("./data"),
        description:
          "Where the SQLite database (conversations.db) is kept when DATABASE_URL is unset; created on first start.",
        example: "/var/lib/chat-gateway",
      },
      DATABASE_URL: {
        type: url("postgres", "postgresql").optional(),
        description:
          "PostgreSQL shared by every replica, which then share the conversations. Unset: SQLite in DATA_DIR (right for one replica).",
        example: "postgres://gateway:secret@postgres:5432/gateway",
      },
      MAX_HISTORY_TURNS: {
        type: z.coerce.number().int().min(1).max(10_000).default(100),
        description:
          "The most stored turns sent to the upstream with a conversation's request, the newest; older ones are left out (the system prompt never is) and the finish event counts them.",
        example: "100",
      },
      CONVERSATION_LEASE_MS: {
        type: positiveMs.default(30_000),
        description:
          "How long a stream holds its conversation against a second stream past its last flush: each flush renews it, a stream that ends gives it back at once, a replica that dies mid-stream leaves it until it expires. More than twice CONVERSATION_FLUSH_MS.",
        example: "30000",
      },
      CONVERSATION_FLUSH_MS: {
        type: positiveMs.default(2_000),
        description:
          "While a reply streams it is written to the database this often (and after every CONVERSATION_FLUSH_CHARS characters, whichever comes first), renewing the stream's lease: a replica killed mid-stream loses at most this much of the reply.",
        example: "2000",
      },
      CONVERSATION_FLUSH_CHARS: {
        type: z.coerce.number().int().min(1).default(4_000),
        description:
          "A streaming reply is also written after this many new characters (text, reasoning, tool call arguments) since its last write.",
        example: "4000",
      },
    },
  }),

  section({
    title: "Resumable streams",
    about:
      "Streams a request marks `resumable`: their events are kept so a caller that lost its connection resumes (ResumeChat, `GET /chat/streams/{id}`), and their generation outlives the caller's connection. In Redis when REDIS_URL is set (a resume may land on any replica), else in this process (see docs/resuming.md for the bounds).",
    variables: {
      RESUME_GRACE_MS: {
        type: positiveMs.default(60_000),
        description:
          "How long a resumable stream keeps generating with no caller attached before it is stopped (CANCELLED in its log).",
        example: "60000",
      },
      RESUME_RETENTION_MS: {
        type: positiveMs.default(300_000),
        description:
          "How long a resumable stream's events are kept after it ended, for a late resume; after it, NOT_FOUND.",
        example: "300000",
      },
      // At least 64 KiB: a live reader holds its generation back at 256 events (src/resume/runs.ts),
      // which must fit in what is kept, or the reader would be overtaken.
      RESUME_MAX_STREAM_BYTES: {
        type: z.coerce.number().int().min(65_536).default(1_048_576),
        description:
          "Bytes of one resumable stream's events kept (at least 65536); past it its oldest are dropped (a resume before them: OUT_OF_RANGE). In Redis: MAXLEN ~ this / 128 events.",
        example: "1048576",
      },
      RESUME_LEASE_MS: {
        type: positiveMs.default(5_000),
        description:
          'With REDIS_URL: a replica generating a resumable stream renews its lease every third of this; a reader finding it expired ends with UNAVAILABLE "the generation was lost".',
        example: "5000",
      },
      RESUME_MAX_TOTAL_BYTES: {
        type: bytes.default(67_108_864),
        description:
          "Bytes of resumable streams' events kept in this process's memory (with Redis: the copies of the streams it generates): past it ended streams are forgotten oldest first; while open ones alone fill it, new resumable streams are refused (RESOURCE_EXHAUSTED), or with Redis kept in Redis only.",
        example: "67108864",
      },
    },
  }),

  section({
    title: "Logs",
    variables: {
      LOG_LEVEL: {
        type: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
        description: "The lowest level logged.",
        example: "info",
      },
      LOG_FORMAT: {
        type: z.enum(["auto", "json", "pretty"]).default("auto"),
        description: "auto: human-readable on a terminal, JSON lines otherwise.",
        example: "json",
      },
      LOG_PROMPTS: {
        type: flag.default(false),
        description: "Put prompts and replies in the per-stream log line. Off: never logged.",
        example: "false",
      },
    },
  }),

  section({
    title: "Metrics",
    variables: {
      METRICS_PORT: {
        type: port.optional(),
        description:
          "Serve the Prometheus endpoint GET /metrics on this port. Unset: off (`npm start` turns it on at 9464).",
        example: "9464",
      },
      METRICS_HOST: {
        type: z.string().min(1).default("127.0.0.1"),
        description: "The address the metrics endpoint listens on.",
        example: "127.0.0.1",
        details:
          "It has no auth of its own: the default is loopback; in a container set 0.0.0.0 and publish the port to the host's loopback or the internal network only (as docker-compose.yml does).",
      },
    },
  }),

  section({
    title: "Tracing",
    about: "W3C trace context always passes from the caller to the upstream.",
    variables: {
      OTEL_EXPORTER_OTLP_ENDPOINT: {
        type: url("http", "https").optional(),
        description:
          "An OTLP/HTTP endpoint to export a span per stream to (at `<endpoint>/v1/traces`). Unset: no export.",
        example: "http://otel-collector:4318",
      },
      OTEL_SERVICE_NAME: {
        type: z.string().min(1).default("chat-gateway"),
        description: "The service name on exported spans.",
        example: "chat-gateway",
      },
    },
  }),
] as const;
