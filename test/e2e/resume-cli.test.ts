// The terminal client resuming by itself: `bin/chat-gateway.js` in a child process, with a TCP proxy
// between it and the gateway (the service's gRPC port, or Envoy for --http) that drops the
// connection once mid-answer. What the person sees on stdout must be the upstream's text exactly,
// and the exit status 0; with --no-resume the drop is the UNAVAILABLE it always was.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeUpstream } from "../support/fake-model.js";
import type { Stack } from "../support/processes.js";
import { startGatedStack, unicodeTokens, type GatedStack } from "../support/gated-stack.js";
import { startCli } from "../support/cli.js";
import { hold } from "../support/gates.js";
import { startDropProxy } from "../support/drop-proxy.js";

const TOKENS = unicodeTokens(30);
const TEXT = TOKENS.join("");
const CUT_AFTER = 10;

let upstream: FakeUpstream;
let stack: Stack;
let gates: GatedStack["gates"];

let gated: GatedStack | undefined;
beforeAll(async () => {
  gated = await startGatedStack({ tokens: TOKENS, cutAfter: CUT_AFTER, apiKey: "sk-cli-resume" });
  ({ upstream, stack, gates } = gated);
});
afterAll(() => gated?.stop());

const ways = [
  { name: "gRPC (ResumeChat)", port: () => stack.service.port, args: (port: number) => ["-t", `127.0.0.1:${port}`] },
  {
    name: "--http (GET /chat/streams/{id})",
    port: () => stack.envoy.httpPort,
    args: (port: number) => ["--http", `http://127.0.0.1:${port}`],
  },
];

describe.each(ways)("chat-gateway over $name, its connection dropped mid-answer", (way) => {
  it("prints the upstream's answer exactly, and exits 0", async () => {
    const proxy = await startDropProxy(way.port());
    const key = `[cli-resume ${way.name}]`;
    const gate = hold();
    gates.set(key, gate);
    try {
      const cli = startCli([...way.args(proxy.port), `count ${key}`]);
      // Ten tokens are printed; the upstream holds the eleventh until the connection is gone.
      await cli.printed(TOKENS.slice(0, CUT_AFTER).join(""));
      proxy.drop();
      gate.release();
      expect(await cli.exited).toBe(0);
      expect(Buffer.from(cli.stdout())).toEqual(Buffer.from(`${TEXT}\n`));
      expect(cli.stderr()).toMatch(/^stop · fake-model · /);
      // At least one re-attach (a second one when the first came too early under load is fine).
      expect(proxy.connections).toBeGreaterThanOrEqual(2);
      // One generation: the upstream was asked once.
      expect(upstream.requests.filter((r) => JSON.stringify(r.body.messages).includes(key))).toHaveLength(1);
    } finally {
      gate.release();
      await proxy.close();
    }
  });

  it("with --no-resume, fails UNAVAILABLE (exit 6) as before", async () => {
    const proxy = await startDropProxy(way.port());
    const key = `[cli-no-resume ${way.name}]`;
    const gate = hold();
    gates.set(key, gate);
    try {
      const cli = startCli([...way.args(proxy.port), "--no-resume", `count ${key}`]);
      await cli.printed(TOKENS.slice(0, CUT_AFTER).join(""));
      proxy.drop();
      expect(await cli.exited).toBe(6);
      expect(cli.stderr()).toMatch(/UNAVAILABLE/);
    } finally {
      gate.release();
      await proxy.close();
    }
  });
});
