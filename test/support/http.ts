// A plain HTTP client for the Envoy gateway, reading the response the way `curl -N` does: bytes as
// they arrive, split into server-sent events.
import { request, type IncomingHttpHeaders } from "node:http";

export interface SseEvent {
  delta?: { text: string };
  finish?: { finishReason?: string; model?: string; usage?: { promptTokens?: number; completionTokens?: number } };
  error?: { code: number; status: string; message: string };
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** SSE events as they arrive (for text/event-stream responses). */
  events: AsyncIterable<SseEvent>;
  /** The whole body, once it has ended. */
  body(): Promise<string>;
  /** Stop reading from the socket, like a client that fell behind; and carry on. */
  pause(): void;
  resume(): void;
  /** Bytes this client holds unread: received but not yet taken as events, and in Node's buffers. */
  unread(): number;
  destroy(): void;
}

export function post(
  port: number,
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = { "content-type": "application/json" },
  method = "POST",
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let raw = "";
      const chunks: string[] = [];
      let wake: (() => void) | undefined;
      let ended = false;
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        raw += chunk;
        chunks.push(chunk);
        wake?.();
      });
      const finish = () => {
        ended = true;
        wake?.();
      };
      res.on("end", finish);
      res.on("close", finish);
      res.on("error", finish);

      async function* events(): AsyncGenerator<SseEvent> {
        let pending = "";
        for (;;) {
          while (chunks.length > 0) pending += chunks.shift();
          let cut: number;
          while ((cut = pending.indexOf("\n\n")) >= 0) {
            const frame = pending.slice(0, cut);
            pending = pending.slice(cut + 2);
            const data = frame
              .split("\n")
              .filter((line) => line.startsWith("data: "))
              .map((line) => line.slice(6))
              .join("\n");
            if (data) yield JSON.parse(data) as SseEvent;
          }
          // More may have arrived while the consumer held a yielded event.
          if (chunks.length > 0) continue;
          if (ended) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      }

      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: { [Symbol.asyncIterator]: events },
        body: () =>
          ended ? Promise.resolve(raw) : new Promise((r) => res.once("end", () => r(raw)).once("close", () => r(raw))),
        pause: () => res.pause(),
        resume: () => res.resume(),
        unread: () =>
          chunks.reduce((n, c) => n + Buffer.byteLength(c), 0) + res.readableLength + (res.socket?.readableLength ?? 0),
        destroy: () => req.destroy(),
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

export async function allEvents(response: HttpResponse): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const event of response.events) out.push(event);
  return out;
}

/**
 * The JSON body Envoy's transcoder makes of one of the service's error statuses: code, message, and
 * the google.rpc.Status details (ErrorInfo, with the upstream when one was reached; RetryInfo when
 * the upstream said retry-after).
 */
export function errorBody(
  code: number,
  message: string,
  reason: string,
  options: { upstream?: string; retryDelay?: string } = {},
) {
  return {
    code,
    message,
    details: [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        reason,
        domain: "chat-gateway",
        ...(options.upstream !== undefined && { metadata: { upstream: options.upstream } }),
      },
      ...(options.retryDelay !== undefined
        ? [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: options.retryDelay }]
        : []),
    ],
  };
}
