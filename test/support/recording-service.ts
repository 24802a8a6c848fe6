// A stand-in for the gRPC service behind Envoy that records the headers each call arrives with: what
// the service is told about the client. It answers Envoy's health checks SERVING and every other call
// with an empty OK (a trailers-only gRPC response).
import { createServer, type IncomingHttpHeaders, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";

export interface RecordingService {
  readonly port: number;
  /** Every call but health checks, in order of arrival. */
  readonly calls: { path: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

// grpc.health.v1.HealthCheckResponse { status: SERVING }, with its gRPC frame header.
const SERVING = Buffer.from([0, 0, 0, 0, 2, 0x08, 0x01]);

export async function startRecordingService(): Promise<RecordingService> {
  const calls: RecordingService["calls"] = [];
  const sessions = new Set<ServerHttp2Session>();
  const server = createServer();
  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"]);
    stream.resume();
    stream.on("end", () => {
      if (path === "/grpc.health.v1.Health/Check") {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(SERVING);
        return;
      }
      calls.push({ path, headers });
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "0" }, { endStream: true });
    });
  });
  server.on("session", (session) => sessions.add(session.once("close", () => sessions.delete(session))));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    calls,
    close: () =>
      new Promise((resolve) => {
        for (const session of sessions) session.destroy();
        server.close(() => resolve());
      }),
  };
}
