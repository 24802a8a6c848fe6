// Structured JSON logs on stdout (pino). Secrets are redacted by path as a second line of defence;
// the first is never putting them in a log object.
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(options: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      base: { service: "chat-gateway" },
      redact: { paths: ["apiKey", "*.apiKey", "authorization", "*.authorization", "headers.authorization"], censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
