// The bench's HTTP clients reuse connections (HTTP keep-alive) without probing them with TCP
// keepalive while a reply is silent. Node's default (a probe after 1 s of silence, then every second,
// the connection ended after 10 unanswered) sent 10,000 probes a second in the RSS section's
// 10,000 streams, 15 s between tokens; the kernel dropped some, and connections ended with
// `read ETIMEDOUT` (docs/performance.md). Read from the kernel's own table (/proc/net/tcp, Linux):
// the client socket's keepalive timer, while its reply is silent for longer than a second.
import { createServer } from "node:http";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { httpClient } from "../../bench/clients.js";
import { clientTimers, KEEPALIVE_TIMER } from "../support/tcp-timers.js";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describe("the bench's HTTP clients", () => {
  it("send no TCP keepalive probe while a reply is silent for over a second", { timeout: 10_000 }, async () => {
    // One byte, 2.5 s of silence, the rest: a reply as slow as the RSS section's, shorter.
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("a");
      setTimeout(() => res.end("b"), 2_500);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanups.push(() => server.close());
    const { port } = server.address() as AddressInfo;
    const client = httpClient("reference", port);
    cleanups.push(() => client.close());

    const reply = client.chat("hello");
    await sleep(1_500);
    // Node's default would have sent its first probe by now and timed the next one second later
    // (time left < 1 s); without probes the timer still waits out the minute's idle time.
    const timers = clientTimers(port);
    expect(timers).toHaveLength(1);
    expect(timers[0]!.kind).toBe(KEEPALIVE_TIMER);
    expect(timers[0]!.secondsLeft).toBeGreaterThan(30);

    const done = await reply;
    expect(done).toMatchObject({ text: "ab", complete: true });
  });
});
