// Three replicas of the built service behind one real Envoy (envoy.yaml rendered with the three, as
// `npm run start:cluster` runs it), each replica with a fake upstream of its own: streams are spread
// by least-request, a replica killed under load is ejected and its streams end visibly, and a
// replica stopped with SIGTERM finishes its streams while new ones go to the others.
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { ChatServiceClient } from "../../src/gen/chat/v1/chat.js";
import { serviceHosts } from "../../src/dev/envoy.js";
import { hold } from "../support/gates.js";
import {
  grpcChat,
  grpcClientOf,
  httpChat,
  promptOf,
  startReplicas,
  tokensFor,
  type Outcome,
  type OpenStream,
  type Replicas,
} from "../support/replicas.js";

let cluster: Replicas | undefined;
const clients: ChatServiceClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await cluster?.stop();
  cluster = undefined;
});

/** Opens `n` streams through Envoy, every `grpcEvery`-th over native gRPC and the rest over HTTP. */
function open(prefix: string, n: number, grpcEvery = 4): { text: string; stream: OpenStream }[] {
  const client = grpcClientOf(cluster!.envoy.httpPort);
  clients.push(client);
  return Array.from({ length: n }, (_, i) => {
    const text = `${prefix}-${i}`;
    return {
      text,
      stream: i % grpcEvery === grpcEvery - 1 ? grpcChat(client, text) : httpChat(cluster!.envoy.httpPort, text),
    };
  });
}

const complete = (text: string, o: Outcome) => o.ok && o.text === tokensFor(text).join("");

describe("three replicas behind Envoy", () => {
  it("spreads streams over the replicas, and sends new ones to the replica with the fewest in flight", {
    timeout: 60_000,
  }, async () => {
    const first = hold();
    const slow = hold();
    // First, every stream stays open until the test lets go. Then replica 0 is slow: every stream
    // it takes stays open until the end, while the others answer at once.
    cluster = await startReplicas(3, {
      reply: (replica, r) =>
        promptOf(r) === "upstream down"
          ? { status: 503 }
          : {
              tokens: tokensFor(promptOf(r)),
              gate: (i) =>
                i !== 1
                  ? undefined
                  : promptOf(r).startsWith("held")
                    ? first.promise
                    : replica === 0
                      ? slow.promise
                      : undefined,
            },
    });

    // 30 streams open at once: each replica takes its share.
    const held = open("held", 30);
    await Promise.all(held.map((s) => s.stream.first));
    const shares = cluster.replicas.map((r) => r.upstream.requests.length);
    expect(shares.reduce((a, b) => a + b)).toBe(30);
    for (const share of shares) expect(share, `streams per replica: ${shares.join(", ")}`).toBeGreaterThanOrEqual(5);
    first.release();
    for (const { text, stream } of held) expect(complete(text, await stream.done), text).toBe(true);

    // Now 180 short streams, one after another. Replica 0 holds every one it gets, so its count of
    // streams in flight only grows while the others' is back to 0 at each pick: least-request (the
    // fewer in flight of two replicas picked at random) sends it only when both picks are it: one in
    // nine, about 20; taking turns would send it 60.
    const before = cluster.replicas[0]!.upstream.requests.length;
    const quick: { text: string; stream: OpenStream }[] = [];
    for (let i = 0; i < 180; i++) {
      const [one] = open(`quick-${i}`, 1);
      quick.push(one!);
      await one!.stream.first;
      if (cluster.servedBy(one!.text)?.index !== 0) await one!.stream.done;
    }
    const toSlow = cluster.replicas[0]!.upstream.requests.length - before;
    expect(toSlow, `${toSlow} of 180 new streams went to the replica with the most in flight`).toBeLessThan(40);
    console.log(
      `[cluster] least-request: 30 held streams split ${shares.join("/")}; of 180 new streams, ${toSlow} went to the replica holding every stream it got`,
    );

    slow.release();
    for (const { text, stream } of quick) expect(complete(text, await stream.done), text).toBe(true);

    // A model API that is down is not a reason to try another replica: it would ask the same API.
    const down = await httpChat(cluster.envoy.httpPort, "upstream down").done;
    expect(down).toMatchObject({ ok: false, how: "503", message: "upstream error 503" });
    expect(
      cluster.replicas.filter((r) => r.upstream.requests.some((q) => promptOf(q) === "upstream down")),
    ).toHaveLength(1);
  });

  it("SIGKILL under load: the replica is ejected, its streams end visibly, no new stream fails, survivors lose no token", {
    timeout: 60_000,
  }, async () => {
    const { promise: released, release } = hold();
    cluster = await startReplicas(3, {
      reply: (_, r) => ({
        tokens: tokensFor(promptOf(r)),
        gate: (i) => (i === 1 && promptOf(r).startsWith("held") ? released : undefined),
      }),
    });
    const held = open("held", 24);
    await Promise.all(held.map((s) => s.stream.first));
    const victim = cluster.replicas[0]!;
    const onVictim = held.filter((s) => cluster!.servedBy(s.text) === victim);
    expect(onVictim.length).toBeGreaterThan(0);

    const killedAt = performance.now();
    victim.service.process.kill("SIGKILL");
    // When Envoy stops counting the replica in (outlier detection or the health check, whichever is first).
    let ejectedAt: number | undefined;
    let stopWatching = false;
    const watching = (async () => {
      while (!stopWatching) {
        const host = (await serviceHosts(cluster!.envoy.adminPort)).find((h) => h.port === victim.service.port);
        if (host && host.healthFlags !== "healthy") return void (ejectedAt = performance.now());
        await sleep(10);
      }
    })();

    // New streams keep coming, three at a time, while Envoy finds out and for 20 rounds after.
    const fresh: { text: string; stream: OpenStream; beforeEjection: boolean }[] = [];
    for (let round = 0, after = 0; after < 20 && round < 150; round++) {
      if (ejectedAt !== undefined) after++;
      const beforeEjection = ejectedAt === undefined;
      const batch = open(`fresh-${round}`, 3).map((s) => ({ ...s, beforeEjection }));
      fresh.push(...batch);
      await Promise.all(batch.map((s) => s.stream.done));
    }
    stopWatching = true;
    await watching;
    expect(ejectedAt, "Envoy took the killed replica out").toBeDefined();

    // After the ejection, every new stream got its whole reply from a live replica. Before it, a
    // stream Envoy had already sent to the dying replica (the moment between the kill and its
    // sockets closing) fails, visibly and retryably: Envoy does not send a request a replica may
    // have acted on to another one. Streams that found its port closed went elsewhere.
    const outcomes = await Promise.all(fresh.map(async (s) => ({ ...s, outcome: await s.stream.done })));
    const failures = outcomes.filter((s) => !complete(s.text, s.outcome));
    expect(failures.filter((s) => !s.beforeEjection).map((s) => `${s.text}: ${s.outcome.how}`)).toEqual([]);
    for (const { text, outcome } of failures) {
      expect(`${outcome.how} ${outcome.message}`, text).toMatch(
        /^(503 the service is unavailable; retry|UNAVAILABLE .*)$/,
      );
    }
    expect(outcomes.filter((s) => !s.beforeEjection)).toHaveLength(60);

    // The killed replica's streams ended, visibly: cut (HTTP) or an error status (gRPC), never a
    // clean end, and with no token that was not theirs.
    for (const { text, stream } of onVictim) {
      const o = await stream.done;
      expect(o.ok, `${text}: ${o.how}`).toBe(false);
      expect(o.how).toMatch(/cut$|UNAVAILABLE|INTERNAL/);
      expect(tokensFor(text).join("").startsWith(o.text)).toBe(true);
    }

    // The others finish with every token once, in order.
    release();
    for (const { text, stream } of held.filter((s) => !onVictim.includes(s))) {
      const o = await stream.done;
      expect(complete(text, o), `${text}: ${o.how} ${o.text}`).toBe(true);
    }
    console.log(
      `[cluster] SIGKILL: ejected after ${(ejectedAt! - killedAt).toFixed(0)} ms; new streams: ${fresh.filter((s) => s.beforeEjection).length} before the ejection ` +
        `(${failures.length} failed), ${fresh.filter((s) => !s.beforeEjection).length} after (0 failed); the replica's ${onVictim.length} open streams ended ` +
        (await Promise.all(onVictim.map(async (s) => (await s.stream.done).how))).join(", "),
    );
  });

  it("SIGTERM under load: the draining replica finishes its streams, refuses new ones, which Envoy sends elsewhere: nothing fails", {
    timeout: 60_000,
  }, async () => {
    const { promise: released, release } = hold();
    cluster = await startReplicas(3, {
      reply: (_, r) => ({
        tokens: tokensFor(promptOf(r)),
        gate: (i) => (i === 1 && promptOf(r).startsWith("held") ? released : undefined),
      }),
      env: { SHUTDOWN_GRACE_MS: "20000" },
      // Envoy's next health check (which would take the replica out) does not come during the test:
      // what keeps new streams off the draining replica here is its refusal, retried elsewhere.
      envoy: { limits: { healthCheckInterval: "300s" } },
    });
    const held = open("held", 24);
    await Promise.all(held.map((s) => s.stream.first));
    const victim = cluster.replicas[0]!;
    const onVictim = held.filter((s) => cluster!.servedBy(s.text) === victim);
    expect(onVictim.length).toBeGreaterThan(0);

    victim.service.process.kill("SIGTERM");
    await victim.service.logLine((l) => l.msg === "draining");
    const servedBefore = victim.upstream.requests.length;

    // The draining replica refuses what it is still sent, and Envoy tries another: HTTP (transcoded)
    // and native gRPC alike.
    const fresh = open("fresh", 40, 2);
    const outcomes = await Promise.all(fresh.map(async (s) => ({ text: s.text, outcome: await s.stream.done })));
    expect(
      outcomes
        .filter((s) => !complete(s.text, s.outcome))
        .map((s) => `${s.text}: ${s.outcome.how} ${s.outcome.message ?? ""}`),
    ).toEqual([]);
    expect(victim.upstream.requests.length).toBe(servedBefore);
    const refused = victim.service.output.filter((l) => l.includes('"cause":"draining"')).length;
    expect(refused, "streams the draining replica refused and Envoy sent elsewhere").toBeGreaterThan(0);
    const retried = async (protocol: string) => {
      await cluster!.envoy.accessLog.find(() => cluster!.envoy.accessLog.lines.length >= fresh.length);
      return cluster!.envoy.accessLog.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e.protocol === protocol && Number(e.attempts) > 1).length;
    };
    const retriedHttp = await retried("HTTP/1.1");
    const retriedGrpc = await retried("HTTP/2");
    expect(retriedHttp).toBeGreaterThan(0);
    expect(retriedGrpc).toBeGreaterThan(0);

    // Every stream that was open finishes, the draining replica's too; then it exits.
    release();
    for (const { text, stream } of held) {
      const o = await stream.done;
      expect(complete(text, o), `${text}: ${o.how} ${o.text}`).toBe(true);
    }
    expect(await victim.service.stop()).toBe(0);
    expect((await victim.service.logLine((l) => l.msg === "stopped")).outcome).toBe("drained");
    console.log(
      `[cluster] SIGTERM: ${onVictim.length} streams drained on the replica; of 40 new streams, ${retriedHttp} HTTP and ${retriedGrpc} gRPC ` +
        "were refused by it and retried on another (Envoy's access log: attempts > 1); 0 failed",
    );
  });

  it("a draining replica answers NOT_SERVING: Envoy's health check takes it out, and it gets no new stream", {
    timeout: 60_000,
  }, async () => {
    const { promise: released, release } = hold();
    cluster = await startReplicas(3, {
      reply: (_, r) => ({
        tokens: tokensFor(promptOf(r)),
        gate: (i) => (i === 1 && promptOf(r).startsWith("held") ? released : undefined),
      }),
      env: { SHUTDOWN_GRACE_MS: "20000" },
    });
    const held = open("held", 6);
    await Promise.all(held.map((s) => s.stream.first));
    const victim = cluster.replicas.find((r) => held.some((s) => cluster!.servedBy(s.text) === r))!;

    const signalledAt = performance.now();
    victim.service.process.kill("SIGTERM");
    for (;;) {
      const host = (await serviceHosts(cluster.envoy.adminPort)).find((h) => h.port === victim.service.port);
      if (host?.healthFlags.includes("failed_active_hc")) break;
      await sleep(20);
    }
    const outAfter = performance.now() - signalledAt;

    const servedBefore = victim.upstream.requests.length;
    const fresh = open("fresh", 30);
    for (const { text, stream } of fresh) expect(complete(text, await stream.done), text).toBe(true);
    expect(victim.upstream.requests.length).toBe(servedBefore);
    expect(victim.service.output.filter((l) => l.includes('"cause":"draining"'))).toEqual([]);

    release();
    for (const { text, stream } of held) expect(complete(text, await stream.done), text).toBe(true);
    console.log(
      `[cluster] NOT_SERVING: out of Envoy's rotation ${outAfter.toFixed(0)} ms after SIGTERM; then 30 new streams, none to it`,
    );
  });
});
