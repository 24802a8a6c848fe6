// The requests HttpTransport sends (src/providers/openai/http-transport.ts), as a server sees them,
// and what the request object keeps of its headers: Node writes a header list into the request's
// header block at once, so the request, which lives as long as its body is read (the whole
// stream), keeps no [name, value] pair per header; Host, Content-Length and a URL's credentials,
// which Node adds only to headers given as an object, are on the wire all the same.
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { createServer, type ClientRequest, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { HttpTransport } from "../../../../src/providers/openai/http-transport.js";

let server: Server | undefined;
afterEach(() => {
  server?.closeAllConnections();
  server?.close();
  server = undefined;
});

interface Received {
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
}

async function serve(): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (piece: string) => (body += piece));
    req.on("end", () => {
      received.push({ method: req.method ?? "", headers: req.headers, body });
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

/** The ClientRequest objects Node makes meanwhile (its diagnostics channel). */
async function requestsDuring(run: () => Promise<void>): Promise<ClientRequest[]> {
  const requests: ClientRequest[] = [];
  const onStart = (message: unknown) => requests.push((message as { request: ClientRequest }).request);
  subscribe("http.client.request.start", onStart);
  try {
    await run();
  } finally {
    unsubscribe("http.client.request.start", onStart);
  }
  return requests;
}

describe("HttpTransport's requests", () => {
  it("send every header, Host and the body's Content-Length, and the request keeps no copy of the headers", async () => {
    const { url, received } = await serve();
    const transport = new HttpTransport();
    const body = JSON.stringify({ text: "héllo" });
    const requests = await requestsDuring(async () => {
      const response = await transport.fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: "Bearer k", "x-request-id": "r-1" },
        body,
      });
      expect(await response.text()).toBe("ok");
    });
    expect(received).toHaveLength(1);
    expect(received[0]!.method).toBe("POST");
    expect(received[0]!.body).toBe(body);
    expect(received[0]!.headers).toMatchObject({
      host: new URL(url).host,
      "content-type": "application/json",
      authorization: "Bearer k",
      "x-request-id": "r-1",
      "content-length": String(Buffer.byteLength(body)),
      connection: "keep-alive",
    });
    expect(received[0]!.headers["transfer-encoding"]).toBeUndefined();
    expect(requests).toHaveLength(1);
    expect(requests[0]!.getHeaderNames()).toEqual([]);
    transport.close();
  });

  it("sends a GET without a body length, a bodiless POST with Content-Length 0, and a URL's credentials as Basic", async () => {
    const { url, received } = await serve();
    const transport = new HttpTransport();
    await (await transport.fetch(`${url}/v1/models`)).text();
    await (await transport.fetch(`${url}/v1/x`, { method: "POST" })).text();
    const withCredentials = new URL(url);
    withCredentials.username = "us%20er";
    withCredentials.password = "pa:ss";
    await (await transport.fetch(`${withCredentials.href}v1/models`)).text();
    expect(received.map((r) => [r.method, r.headers["content-length"], r.headers["transfer-encoding"]])).toEqual([
      ["GET", undefined, undefined],
      ["POST", "0", undefined],
      ["GET", undefined, undefined],
    ]);
    expect(received[2]!.headers.authorization).toBe(`Basic ${Buffer.from("us er:pa:ss").toString("base64")}`);
    transport.close();
  });
});
