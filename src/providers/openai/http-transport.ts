// The fetch the openai SDK sends through by default: `node:http`/`node:https` with a keep-alive
// pool, instead of the global fetch (undici). The SDK still builds, authenticates, times out and
// retries each request, and reads an error's body through the Response it gets; a streamed body is
// read by the provider straight from Node's response stream (`chunks`), one network read per await.
//
// Why: paced, every token is its own network read, and through fetch each read went through undici's
// fetch controller and two WHATWG streams before the body decoder saw it (15% of the service's CPU
// per token in issue 24's profile), and a stalled caller left ~4 × 64 KiB of the upstream's bytes in
// those streams' buffers. Node's HTTP/1.1 parser and one Readable hold one high-water mark.
import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { isIP } from "node:net";

/** A free pooled connection is closed after this long (undici's default keep-alive timeout). */
const FREE_SOCKET_TIMEOUT_MS = 4_000;

/** Statuses whose response has no body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 204, 205, 304]);

/**
 * Silence on a connection before TCP keepalive probes it (undici's default). Node's agent would
 * probe after 1 s, every second: with thousands of streams waiting on a slow model, a flood of
 * probes that loopback's input queue drops, and connections reset by their own keepalive timer
 * (the bench's client hit exactly that; docs/performance.md).
 */
const KEEPALIVE_PROBE_AFTER_MS = 60_000;

/**
 * What Node reads from an upstream's connection before anyone asks for it: the socket's high-water
 * mark, and the response stream's (IncomingMessage takes its socket's). Node 24's default is 64 KiB.
 * A caller that stops reading leaves both full, each with the socket read that crossed its mark (up
 * to 64 KiB, whatever the mark): with 300 stalled callers that was 290 KiB of Buffers per stream in
 * the service at the default, 160 KiB at this; the rest of the reply waits in the kernel's receive
 * buffer, outside the process. Reads are not smaller for it: a socket read still takes what has
 * arrived, up to 64 KiB.
 */
const READ_AHEAD_BYTES = 16 * 1024;

const POOL = {
  keepAlive: true,
  keepAliveMsecs: KEEPALIVE_PROBE_AFTER_MS,
  timeout: FREE_SOCKET_TIMEOUT_MS,
  scheduling: "lifo",
  // Passed on to each socket the agent connects, and so to its responses.
  highWaterMark: READ_AHEAD_BYTES,
} as const;

export class HttpTransport {
  private readonly http = new HttpAgent(POOL);
  private readonly https = new HttpsAgent(POOL);
  /** The Node response behind each Response this transport made, until it is collected. */
  private readonly bodies = new WeakMap<Response, IncomingMessage>();

  /** A fetch for the SDK: method, headers, a string or bytes body, an abort signal. */
  readonly fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(input instanceof Request ? input.url : input);
    const secure = url.protocol === "https:";
    const body = init?.body;
    if (body != null && typeof body !== "string" && !(body instanceof Uint8Array))
      return Promise.reject(new TypeError("HttpTransport sends string or byte bodies only"));
    let request: ClientRequest;
    let response: Promise<Response>;
    try {
      const method = init?.method ?? "GET";
      request = (secure ? httpsRequest : httpRequest)(url, {
        method,
        headers: headerList(url, method, init?.headers, body ?? undefined),
        agent: secure ? this.https : this.http,
        signal: init?.signal ?? undefined,
        // No SNI for an address (RFC 6066; Node warns), as fetch does.
        ...(secure && isIP(url.hostname.replace(/^\[|\]$/g, "")) !== 0 && { servername: "" }),
      });
      response = this.response(request);
      request.end(body ?? undefined);
    } catch (error: unknown) {
      return Promise.reject(error as Error);
    }
    return response;
  };

  /**
   * The request's response, once its headers are in. Its listeners are made here, away from
   * `fetch`'s scope: the request lives as long as its body is read (the whole stream), and a
   * listener closed over `fetch`'s scope or the promise would keep the request's init (its headers
   * and body) and the Response (its headers, its web stream) alive that long (issue 24: ~3 KiB per
   * open stream).
   */
  private response(request: ClientRequest): Promise<Response> {
    return new Promise((resolve, reject) => {
      request.on("error", reject);
      request.once("response", (message) => {
        // After the response, a failure (an abort, a cut socket) reaches its reader through the
        // body; the request keeps a listener that holds nothing, or an 'error' would be unhandled.
        request.off("error", reject);
        request.on("error", ignore);
        const response = new Response(NULL_BODY.has(message.statusCode ?? 0) ? null : lazyBody(message), {
          status: message.statusCode ?? 502,
          statusText: message.statusMessage ?? "",
          headers: responseHeaders(message.rawHeaders),
        });
        this.bodies.set(response, message);
        resolve(response);
      });
    });
  }

  /**
   * The network reads of a response's body, one per `next()`: straight from Node's stream for a
   * Response this transport made, through `response.body` for any other (a fetch given in tests).
   */
  chunks(response: Response): BodyChunks {
    const message = this.bodies.get(response);
    if (message !== undefined) return new NodeBodyChunks(message);
    if (response.body === null) throw new TypeError("the response has no body");
    return new WebBodyChunks(response.body.getReader(), response.headers);
  }

  /** Closes the pooled connections. */
  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

export type BodyRead = { done: false; value: Uint8Array } | { done: true; value?: Uint8Array | undefined };

/** A body read one network read at a time. */
export interface BodyChunks {
  /** The bytes of the next read (everything that arrived since the last), or done at the body's end. */
  next(): Promise<BodyRead>;
  /**
   * The upstream said it is done ([DONE]) before the body's end: the rest is read away so the
   * connection goes back to the pool. Resolves once it has when the end is already in (so the next
   * request finds it free), at once otherwise; a server slow to end its body is cut off.
   */
  finish(): Promise<void>;
  /** The reader stops early (an error, the caller gone): the connection is closed. */
  close(): void;
  /** The response's headers, made again when asked: a stream keeps no second copy of them. */
  headers(): Headers;
}

/**
 * The most bytes one `next()` hands over (one socket read's worth): everything a read takes is
 * decoded and merged for the caller at once, so this bounds what a stalled caller's stream holds
 * beyond Node's buffer. Not less than a socket read (64 KiB): `read()` empties the stream, which lets
 * Node read from the socket again before the rest is put back, so each `next()` may let in up to a
 * socket read; handing over less than that, the buffer grows with every call. At 16 KiB the
 * slow-reader bench's service read all 811 KiB of every reply, none left in the kernel.
 */
const MAX_READ_BYTES = 64 * 1024;

/** A server that sent `[DONE]` has this long to end its body before its connection is closed. */
const DRAIN_MS = 1_000;

class NodeBodyChunks implements BodyChunks {
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly notify = () => {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.notify();
  };
  private readonly onError = (error: Error) => {
    this.failure ??= error;
    this.notify();
  };
  // A socket closed mid-body errors the message on most paths; 'close' before 'end' covers the rest.
  private readonly onClose = () => this.onError(new Error("terminated"));

  constructor(private readonly message: IncomingMessage) {
    message.on("readable", this.notify);
    message.on("end", this.onEnd);
    message.on("error", this.onError);
    message.on("close", this.onClose);
  }

  async next(): Promise<BodyRead> {
    for (;;) {
      const chunk = this.message.read() as Buffer | null;
      if (chunk !== null) {
        if (chunk.length <= MAX_READ_BYTES) return { done: false, value: chunk };
        // The rest goes back into the stream's buffer, where it counts against its high-water
        // mark: Node reads no more from the socket meanwhile.
        this.message.unshift(chunk.subarray(MAX_READ_BYTES));
        return { done: false, value: chunk.subarray(0, MAX_READ_BYTES) };
      }
      if (this.ended) return { done: true, value: undefined };
      if (this.failure !== undefined) throw this.failure;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  finish(): Promise<void> {
    const message = this.unlisten();
    if (this.ended || message.readableEnded) return Promise.resolve();
    if (this.failure !== undefined) {
      message.destroy();
      return Promise.resolve();
    }
    // Node's agent takes the socket back at the body's 'end' (a tick later for the pool).
    const end = new Promise<void>((resolve) => message.once("end", resolve));
    message.resume();
    if (message.complete) return end;
    const timer = setTimeout(() => message.destroy(), DRAIN_MS);
    timer.unref();
    void end.then(() => clearTimeout(timer));
    return Promise.resolve();
  }

  close(): void {
    const message = this.unlisten();
    if (!this.ended && !message.readableEnded) message.destroy();
  }

  headers(): Headers {
    return responseHeaders(this.message.rawHeaders);
  }

  private unlisten(): IncomingMessage {
    const message = this.message;
    message.off("readable", this.notify);
    message.off("end", this.onEnd);
    message.off("close", this.onClose);
    // onError stays: a message destroyed from now on must not throw an unhandled 'error'.
    return message;
  }
}

class WebBodyChunks implements BodyChunks {
  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly responseHeaders: Headers,
  ) {}

  headers(): Headers {
    return this.responseHeaders;
  }

  next(): Promise<BodyRead> {
    return this.reader.read();
  }

  finish(): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  close(): void {
    this.reader.cancel().catch(() => undefined);
  }
}

function ignore(): void {}

/** Methods Node sends without a Content-Length (nor chunked) when given no body length. */
const NO_BODY_LENGTH = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"]);

/**
 * The request's headers as Node's flat list (rawHeaders' format), which Node writes into the
 * request's header block at once: given an object, it would also keep a [name, value] pair per
 * header in the request (kOutHeaders) for as long as the request lives, the whole stream (issue
 * 24: ~1.7 KiB per open stream). Given a list, Node adds neither Host, nor Content-Length, nor the
 * URL's credentials: added here as Node adds them to an object's.
 */
function headerList(
  url: URL,
  method: string,
  init: ConstructorParameters<typeof Headers>[0],
  body: string | Uint8Array | undefined,
): string[] {
  const headers = new Headers(init);
  const list: string[] = [];
  for (const [name, value] of headers) list.push(name, value);
  if (!headers.has("host")) list.push("host", url.host);
  if ((url.username !== "" || url.password !== "") && !headers.has("authorization")) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    list.push("authorization", `Basic ${Buffer.from(credentials).toString("base64")}`);
  }
  if (!NO_BODY_LENGTH.has(method.toUpperCase()) && !headers.has("content-length") && !headers.has("transfer-encoding"))
    list.push("content-length", String(body === undefined ? 0 : Buffer.byteLength(body)));
  return list;
}

function responseHeaders(raw: readonly string[]): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i] as string, raw[i + 1] as string);
  return headers;
}

/**
 * A web stream over the Node one that starts reading only when read: the SDK reads an error's body
 * through it, while a streamed body the provider reads from Node's stream never passes through it.
 */
function lazyBody(message: IncomingMessage): ReadableStream<Uint8Array> {
  let iterator: AsyncIterator<Buffer> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        iterator ??= message[Symbol.asyncIterator]();
        const next = await iterator.next();
        if (next.done) controller.close();
        else controller.enqueue(new Uint8Array(next.value.buffer, next.value.byteOffset, next.value.byteLength));
      },
      cancel() {
        message.destroy();
      },
    },
    { highWaterMark: 0 },
  );
}
