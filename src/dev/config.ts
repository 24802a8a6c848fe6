// The local launcher's own settings: read by `npm start` (src/stack.ts) for the Envoy it runs beside
// the service, and by `npm run start:cluster` (src/cluster.ts) for that Envoy and its replicas. The
// service itself (`node dist/main.js`, the container) does not read them. Declared as the service's
// variables are (src/server/config-variables.ts), and listed in the same reference.
import { z } from "zod";
import { loadConfig, type Config } from "../server/config.js";
import {
  ConfigError,
  loadOrExit,
  parseVariables,
  port,
  presentOf,
  schemaOf,
  section,
  variablesOf,
} from "../server/variables.js";

export const LAUNCHER_SECTION = section({
  title: "Read by `npm start` and `npm run start:cluster` only (the local launcher)",
  about:
    "The Envoy these run in front of the service, and how many replicas the cluster runs. The service itself (`node dist/main.js`, the container) ignores these.",
  variables: {
    HTTP_HOST: {
      type: z.string().min(1).default("0.0.0.0"),
      description: "The address of Envoy's HTTP listener.",
      example: "127.0.0.1",
      details: "With AUTH=none, `npm start` defaults it, GRPC_HOST and METRICS_HOST to 127.0.0.1.",
    },
    HTTP_PORT: {
      type: port.default(8080),
      description: "Envoy's HTTP port: the chat page, HTTP/JSON, gRPC-Web and gRPC (0: any free port).",
      example: "8080",
    },
    ENVOY_ADMIN_PORT: {
      type: port.default(9901),
      description: "Envoy's admin port, on 127.0.0.1 (0: any free port).",
      example: "9901",
    },
    CORS_ALLOW_ORIGIN: {
      type: z.string().min(1).optional(),
      description: "The origin allowed by CORS. Unset: any (*), as in envoy.yaml.",
      example: "https://app.example.com",
    },
    REPLICAS: {
      type: z.coerce.number().int().min(1).max(64).default(3),
      description: "`npm run start:cluster`: how many service processes run behind the one Envoy.",
      example: "3",
      details: "Replica i listens on GRPC_PORT + i (and METRICS_PORT + i); 0 gives each a free port.",
    },
  },
});

const VARIABLES = variablesOf([LAUNCHER_SECTION]);
const schema = schemaOf([LAUNCHER_SECTION]);

/** The Envoy of `npm start` and `npm run start:cluster`, and the number of replicas of the latter. */
export interface LauncherConfig {
  httpHost: string;
  httpPort: number;
  adminPort: number;
  corsAllowOrigin: string | undefined;
  replicas: number;
}

export function loadLauncherConfig(env: Record<string, string | undefined>): LauncherConfig {
  const problems: string[] = [];
  const e = parseVariables(schema, VARIABLES, presentOf(env), problems);
  if (e === undefined) throw new ConfigError(problems);
  return {
    httpHost: e.HTTP_HOST,
    httpPort: e.HTTP_PORT,
    adminPort: e.ENVOY_ADMIN_PORT,
    corsAllowOrigin: e.CORS_ALLOW_ORIGIN,
    replicas: e.REPLICAS,
  };
}

/**
 * The service's configuration and the launcher's, from one environment, or every problem of both on
 * stderr and exit status 2: a mistake in either is reported with the other's, as one list.
 */
export function loadLocalConfigOrExit(env: Record<string, string | undefined>): {
  config: Config;
  launcher: LauncherConfig;
} {
  return loadOrExit(() => {
    const problems: string[] = [];
    const attempt = <T>(load: () => T): T | undefined => {
      try {
        return load();
      } catch (error: unknown) {
        if (!(error instanceof ConfigError)) throw error;
        problems.push(...error.problems);
        return undefined;
      }
    };
    const config = attempt(() => loadConfig(env));
    const launcher = attempt(() => loadLauncherConfig(env));
    if (config === undefined || launcher === undefined) throw new ConfigError(problems);
    return { config, launcher };
  });
}
