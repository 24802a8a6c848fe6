// grpc.health.v1 clients for tests: Check, and Watch streams held open.
import { credentials, makeGenericClientConstructor, type ServiceError, type ClientReadableStream } from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

const Health = makeGenericClientConstructor(healthService, "grpc.health.v1.Health");

interface HealthClient {
  check(
    request: { service: string },
    callback: (error: ServiceError | null, response: { status: string }) => void,
  ): void;
  watch(request: { service: string }): ClientReadableStream<{ status: string }>;
  close(): void;
}

const client = (port: number) =>
  new Health(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as HealthClient;

export function healthStatus(port: number, service: string): Promise<string> {
  const c = client(port);
  return new Promise((resolve, reject) =>
    c.check({ service }, (error, response) => {
      c.close();
      if (error) reject(error);
      else resolve(response.status);
    }),
  );
}

export interface HealthWatch {
  /** Statuses received so far, in order. */
  readonly statuses: string[];
  /** Resolves when `status` has been received. */
  seen(status: string): Promise<void>;
  /** How the server ended the stream. */
  readonly ended: Promise<{ code: number; details: string }>;
  close(): void;
}

export function watchHealth(port: number, service: string): HealthWatch {
  const c = client(port);
  const call = c.watch({ service });
  const statuses: string[] = [];
  const waiting = new Map<string, (() => void)[]>();
  call.on("data", (r: { status: string }) => {
    statuses.push(r.status);
    for (const w of waiting.get(r.status) ?? []) w();
    waiting.delete(r.status);
  });
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on("error", (e: ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on("end", () => resolve({ code: 0, details: "" }));
  });
  return {
    statuses,
    seen: (status) =>
      statuses.includes(status)
        ? Promise.resolve()
        : new Promise((resolve) => waiting.set(status, [...(waiting.get(status) ?? []), resolve])),
    ended,
    close() {
      call.cancel();
      c.close();
    },
  };
}
