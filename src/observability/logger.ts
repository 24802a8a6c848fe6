// Structured JSON logs on stdout (pino), or human-readable lines (pino-pretty) when stdout is a
// terminal. Secrets are redacted by path as a second line of defence; the first is never putting
// them in a log object.
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

export interface LoggerOptions {
  level: string;
  destination?: pino.DestinationStream;
  /** `auto` (the default): pretty when stdout is a terminal, JSON lines otherwise. */
  format?: "auto" | "json" | "pretty";
}

export function createLogger(options: LoggerOptions): Logger {
  const format = options.format ?? "auto";
  const human =
    format === "pretty" || (format === "auto" && options.destination === undefined && process.stdout.isTTY === true);
  return pino(
    {
      level: options.level,
      base: { service: "chat-gateway" },
      redact: {
        paths: [
          "apiKey",
          "*.apiKey",
          "authorization",
          "*.authorization",
          "headers.authorization",
          "*.headers.authorization",
        ],
        censor: "[redacted]",
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ??
      (human
        ? pretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "service,pid,hostname", sync: true })
        : pino.destination({ sync: false })),
  );
}
