// Prometheus metrics, one registry per gateway (tests run several in one process), served on a port
// of their own. Names follow the OpenTelemetry GenAI semantic conventions converted to Prometheus
// (dots to underscores, unit suffix), so dashboards built for them work; the request counter follows
// go-grpc-prometheus. Nothing here runs per delta: stream metrics come from the end-of-stream
// summary.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { once } from "node:events";
import { status, ServerInterceptingCall, type ServerInterceptor } from "@grpc/grpc-js";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Metadata } from "@grpc/grpc-js";
import type { StreamSummary } from "../chat/context.js";

export interface StreamLabels {
  model: string;
  upstream: string;
  caller: string;
}

export interface GatewayMetrics {
  readonly registry: Registry;
  /** Counts every call's start and final code, by method and caller. Goes after the auth interceptor. */
  readonly interceptor: ServerInterceptor;
  /** A call refused before it reached the handler (by the auth interceptor); caller when known. */
  refused(path: string, responseStream: boolean, code: status, caller: string | undefined): void;
  /** A chat call refused before it became a stream, by the handler or the auth interceptor. */
  callRefused(code: status, cause: string, caller: string): void;
  streamEnded(summary: StreamSummary, labels: StreamLabels): void;
  /** Tokens charged to a caller's budget at a stream's end, reported by the upstream or estimated. */
  tokensCharged(
    caller: string,
    model: string,
    tokens: { promptTokens: number; completionTokens: number; estimated: boolean },
  ): void;
  /** A limits store operation failed; for admit, what the failure mode made of the call. */
  limitsStoreError(operation: string, outcome: "allowed" | "refused" | "lost" | "failed"): void;
  /** How long a caller's budget check took (the store's round trip). */
  limitsChecked(store: string, seconds: number): void;
  upstreamRetry(upstream: string): void;
  fallback(upstream: string, cause: string): void;
  /** Serves `GET /metrics` on host:port (0: any free port). */
  serve(host: string, port: number): Promise<MetricsServer>;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsSources {
  /** The caller key's name the auth interceptor found for a call, by its metadata (undefined: keys off). */
  callerOf: (metadata: Metadata) => string | undefined;
  /** Streams open now. */
  activeStreams: () => number;
  /** Streams open now in this process per caller (with caller keys on). */
  activeByCaller?: () => ReadonlyMap<string, number>;
}

// Bucket boundaries advised by the GenAI semantic conventions.
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
const TPOT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5];
const DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
const CHECK_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

const GEN_AI_LABELS = ["gen_ai_operation_name", "gen_ai_request_model", "upstream"] as const;

export function createMetrics(sources: MetricsSources): GatewayMetrics {
  const registry = new Registry();
  // Declared in this order, which is the order they are exposed in.
  const { started, handled } = declareCallInstruments(registry, sources);
  const { ttft, tpot, duration, tokens } = declareGenAiInstruments(registry);
  const { refusedCalls, callerTokens, storeErrors, checks, upstreamErrors, retries, fallbacks } =
    declareGatewayInstruments(registry);
  const interceptor = countingInterceptor(started, handled, sources);

  return {
    registry,
    interceptor,
    refused(path, responseStream, code, caller) {
      // Its start was counted by the interceptor, which every call passes through first.
      handled.inc({
        ...methodLabels(path, responseStream),
        grpc_code: status[code],
        caller: caller ?? "unauthenticated",
      });
    },
    callRefused(code, cause, caller) {
      refusedCalls.inc({ grpc_code: status[code], cause, caller });
    },
    streamEnded(s, { model, upstream, caller }) {
      const base = { gen_ai_operation_name: "chat", gen_ai_request_model: model, upstream };
      if (s.firstDeltaMs !== undefined) ttft.observe(base, s.firstDeltaMs / 1000);
      if (s.deltas > 1 && s.firstDeltaMs !== undefined && s.lastDeltaMs !== undefined) {
        tpot.observe(base, (s.lastDeltaMs - s.firstDeltaMs) / (s.deltas - 1) / 1000);
      }
      duration.observe(
        { ...base, error_type: s.code === status.OK ? "" : (s.cause ?? status[s.code]) },
        s.durationMs / 1000,
      );
      if (s.usage) {
        tokens.observe({ ...base, gen_ai_token_type: "input", caller }, s.usage.promptTokens);
        tokens.observe({ ...base, gen_ai_token_type: "output", caller }, s.usage.completionTokens);
      }
      if (s.cause?.startsWith("upstream_")) upstreamErrors.inc({ upstream, error_type: s.cause });
    },
    tokensCharged(caller, model, t) {
      const labels = { caller, gen_ai_request_model: model, source: t.estimated ? "estimated" : "reported" };
      callerTokens.inc({ ...labels, gen_ai_token_type: "input" }, t.promptTokens);
      callerTokens.inc({ ...labels, gen_ai_token_type: "output" }, t.completionTokens);
    },
    limitsStoreError(operation, outcome) {
      storeErrors.inc({ operation, outcome });
    },
    limitsChecked(store, seconds) {
      checks.observe({ store }, seconds);
    },
    upstreamRetry(upstream) {
      retries.inc({ upstream });
    },
    fallback(upstream, cause) {
      upstreamErrors.inc({ upstream, error_type: cause });
      fallbacks.inc({ upstream, error_type: cause });
    },
    serve(host, port) {
      // Process metrics only when something can scrape them: their collectors include an
      // event-loop delay monitor that samples every 10 ms for the life of the process.
      collectDefaultMetrics({ register: registry });
      return serveMetrics(registry, host, port);
    },
  };
}

/** The go-grpc-prometheus call counters and the open-stream gauges, registered in `registry`. */
function declareCallInstruments(registry: Registry, sources: MetricsSources) {
  const started = new Counter({
    name: "grpc_server_started_total",
    help: "RPCs started on the server.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type"],
    registers: [registry],
  });
  const handled = new Counter({
    name: "grpc_server_handled_total",
    help: "RPCs completed on the server, by final gRPC status code and caller.",
    labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code", "caller"],
    registers: [registry],
  });
  new Gauge({
    name: "chat_gateway_active_streams",
    help: "Chat streams open now.",
    registers: [registry],
    collect() {
      this.set(sources.activeStreams());
    },
  });
  new Gauge({
    name: "chat_gateway_caller_active_streams",
    help: "Chat streams open now in this process per caller key (when caller keys are configured).",
    labelNames: ["caller"],
    registers: [registry],
    collect() {
      this.reset();
      for (const [caller, open] of sources.activeByCaller?.() ?? []) this.set({ caller }, open);
    },
  });
  return { started, handled };
}

/** The GenAI semantic conventions' per-stream histograms, registered in `registry`. */
function declareGenAiInstruments(registry: Registry) {
  const ttft = new Histogram({
    name: "gen_ai_server_time_to_first_token_seconds",
    help: "Time from the request to the first output token (gen_ai.server.time_to_first_token).",
    labelNames: GEN_AI_LABELS,
    buckets: TTFT_BUCKETS,
    registers: [registry],
  });
  const tpot = new Histogram({
    name: "gen_ai_server_time_per_output_token_seconds",
    help: "Time per output token after the first (gen_ai.server.time_per_output_token), per stream.",
    labelNames: GEN_AI_LABELS,
    buckets: TPOT_BUCKETS,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "gen_ai_server_request_duration_seconds",
    help: "Duration of a chat stream from request to its final status (gen_ai.server.request.duration).",
    labelNames: [...GEN_AI_LABELS, "error_type"],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const tokens = new Histogram({
    name: "gen_ai_client_token_usage",
    help: "Tokens per stream as the upstream reported them (gen_ai.client.token.usage), by gen_ai_token_type input/output.",
    labelNames: [...GEN_AI_LABELS, "gen_ai_token_type", "caller"],
    buckets: TOKEN_BUCKETS,
    registers: [registry],
  });
  return { ttft, tpot, duration, tokens };
}

/** The gateway's own counters and histogram (refusals, budgets, limits store, upstream failures), registered in `registry`. */
function declareGatewayInstruments(registry: Registry) {
  const refusedCalls = new Counter({
    name: "chat_gateway_refused_calls_total",
    help: "Chat calls refused before they became a stream, by gRPC code and cause (invalid_request, concurrency_limit, draining, unauthenticated, caller_stream_limit, caller_rpm_limit, caller_tpm_limit, limits_unavailable).",
    labelNames: ["grpc_code", "cause", "caller"],
    registers: [registry],
  });
  const callerTokens = new Counter({
    name: "chat_gateway_caller_tokens_total",
    help: "Tokens charged to each caller's budget per model, by gen_ai_token_type input/output and source: reported by the upstream, or estimated from the text (a cancelled or failed stream, an upstream that reports no usage).",
    labelNames: ["caller", "gen_ai_request_model", "gen_ai_token_type", "source"],
    registers: [registry],
  });
  const storeErrors = new Counter({
    name: "chat_gateway_limits_store_errors_total",
    help: "Limits store (Redis) operations that failed or timed out, by operation and outcome: admit allowed or refused (by the failure mode), charge and release lost, usage, refresh and connection failed.",
    labelNames: ["operation", "outcome"],
    registers: [registry],
  });
  const checks = new Histogram({
    name: "chat_gateway_limits_check_seconds",
    help: "Time to check a caller's budget at a stream's start, by store (memory, redis); failed checks included.",
    labelNames: ["store"],
    buckets: CHECK_BUCKETS,
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: "chat_gateway_upstream_errors_total",
    help: "Upstream failures by class (error_type: the error table's cause), including those a fallback recovered.",
    labelNames: ["upstream", "error_type"],
    registers: [registry],
  });
  const retries = new Counter({
    name: "chat_gateway_upstream_retries_total",
    help: "Upstream HTTP requests repeated after a failure before the first token (the SDK's retries, and the gateway's after an error inside the stream).",
    labelNames: ["upstream"],
    registers: [registry],
  });
  const fallbacks = new Counter({
    name: "chat_gateway_upstream_fallbacks_total",
    help: "Streams moved to the fallback upstream, by the failed upstream and why.",
    labelNames: ["upstream", "error_type"],
    registers: [registry],
  });
  return { refusedCalls, callerTokens, storeErrors, checks, upstreamErrors, retries, fallbacks };
}

/** Counts every call's start in `started` and its final code, by caller, in `handled`. */
function countingInterceptor(
  started: Counter<"grpc_service" | "grpc_method" | "grpc_type">,
  handled: Counter<"grpc_service" | "grpc_method" | "grpc_type" | "grpc_code" | "caller">,
  sources: MetricsSources,
): ServerInterceptor {
  return (method, call) => {
    const labels = methodLabels(method.path, method.responseStream);
    let caller = "anonymous";
    started.inc(labels);
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const named = sources.callerOf(metadata);
            if (named !== undefined) caller = named;
            nextMetadata(metadata);
          },
        });
      },
      sendStatus(s, next) {
        handled.inc({ ...labels, grpc_code: status[s.code] ?? String(s.code), caller });
        next(s);
      },
    });
  };
}

function methodLabels(path: string, responseStream: boolean) {
  // "/chat.v1.ChatService/Chat" → service and method.
  const [, service = "", method = ""] = path.split("/");
  return { grpc_service: service, grpc_method: method, grpc_type: responseStream ? "server_stream" : "unary" };
}

async function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("see /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      () => res.writeHead(500, { "content-type": "text/plain" }).end("metrics failed\n"),
    );
  });
  server.listen(port, host);
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
