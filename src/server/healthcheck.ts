// The container's HEALTHCHECK (`node dist/server/healthcheck.js`): asks the service in this container for
// chat.v1.ChatService's status over grpc.health.v1.Health/Check, with grpc-js, so the image needs
// no extra binary. Exit 0 when SERVING; 1 otherwise (NOT_SERVING while draining, no answer, a
// configuration the service itself would refuse). Reads the same environment as the service.
import { credentials, makeGenericClientConstructor, type ServiceError } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { loadConfig } from "./config.js";
import { CHAT_SERVICE_NAME } from "./server.js";

const TIMEOUT_MS = 3_000;

function checkTarget(host: string, port: number): string {
  // The service listens on a wildcard address in a container; ask it over loopback.
  if (host === "0.0.0.0" || host === "") return `127.0.0.1:${port}`;
  if (host === "::") return `[::1]:${port}`;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function main(): void {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
  // With TLS, the service's own certificate is not checked here: this only reads a status, over
  // loopback. (With TLS_CLIENT_CA_FILE the service wants a client certificate, which this has not.)
  const channel = config.tls
    ? credentials.createSsl(null, null, null, { rejectUnauthorized: false })
    : credentials.createInsecure();
  const Health = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");
  const client = new Health(checkTarget(config.grpc.host, config.grpc.port), channel) as unknown as {
    check(
      request: { service: string },
      options: { deadline: number },
      callback: (error: ServiceError | null, response?: { status: string }) => void,
    ): void;
  };
  client.check({ service: CHAT_SERVICE_NAME }, { deadline: Date.now() + TIMEOUT_MS }, (error, response) => {
    if (error) {
      process.stderr.write(`health check failed: ${error.details || error.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${response?.status}\n`);
    process.exit(response?.status === "SERVING" ? 0 : 1);
  });
}

main();
