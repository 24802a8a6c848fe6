// What `npm start` and `npm run start:cluster` add to the environment to run on this machine with
// zero configuration: the demo upstream when none is configured, no caller keys (then open, and so
// on loopback only), and metrics on.
import { startDemoUpstream, type DemoUpstream } from "../demo/server.js";
import type { LauncherConfig } from "./config.js";
import type { EnvoyOptions } from "./envoy.js";

export interface LocalEnv {
  env: Record<string, string | undefined>;
  /** The demo upstream, started when no upstream was configured. */
  demo: DemoUpstream | undefined;
}

export async function localEnv(base: NodeJS.ProcessEnv): Promise<LocalEnv> {
  const env: Record<string, string | undefined> = { ...base };
  const unset = (name: string) => env[name] === undefined || env[name] === "";
  let demo: DemoUpstream | undefined;
  if (unset("OPENAI_BASE_URL") && unset("OPENAI_API_KEY")) {
    demo = await startDemoUpstream();
    env.OPENAI_BASE_URL = demo.baseURL;
    if (unset("CHAT_MODEL")) env.CHAT_MODEL = "demo";
  }
  // Zero configuration means no caller keys: the stack then runs open (it says so at start-up),
  // and, being open, listens on this machine only unless told otherwise.
  if (unset("AUTH") && unset("CALLER_KEYS") && unset("CALLER_KEYS_FILE")) env.AUTH = "none";
  if (env.AUTH === "none") {
    for (const name of ["GRPC_HOST", "HTTP_HOST", "METRICS_HOST"]) if (unset(name)) env[name] = "127.0.0.1";
  }
  // Metrics on by default here, on the port OpenTelemetry's Prometheus exporter uses.
  if (unset("METRICS_PORT")) env.METRICS_PORT = "9464";
  return { env, demo };
}

/** The front Envoy's options as the launcher's settings set them, for `npm start` and the cluster. */
export function localEnvoyOptions(stack: LauncherConfig, graceMs: number): EnvoyOptions {
  return {
    httpHost: stack.httpHost,
    httpPort: stack.httpPort,
    adminPort: stack.adminPort,
    // One JSON line per request on this terminal, as a deployed Envoy writes them to its stdout.
    accessLog: "inherit",
    graceMs,
    ...(stack.corsAllowOrigin && { corsAllowOrigin: stack.corsAllowOrigin }),
  };
}
