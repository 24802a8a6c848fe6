// Shutdown of the real processes: the built service with a health Watch open, and the service and
// Envoy (under scripts/envoy-sidecar.sh, as docker-compose.yml runs it) signalled at the same
// moment, as `docker compose stop` and Kubernetes do: an HTTP stream in flight finishes.
import { afterEach, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import { startFakeUpstream, type FakeUpstream } from "../src/demo/upstream.js";
import { startEnvoy, type RunningEnvoy } from "../src/dev/envoy.js";
import { startServiceProcess, type ServiceProcess } from "./support/processes.js";
import { hold } from "./support/gates.js";
import { healthStatus, watchHealth } from "./support/health.js";
import { allEvents, post } from "./support/http.js";

let upstream: FakeUpstream | undefined;
let service: ServiceProcess | undefined;
let envoy: RunningEnvoy | undefined;
afterEach(async () => {
  await envoy?.stop();
  await service?.stop("SIGKILL");
  await upstream?.close();
  envoy = service = upstream = undefined;
});

describe("the service process", () => {
  it("exits on SIGTERM with a health Watch stream open, ending it", async () => {
    service = await startServiceProcess({ OPENAI_BASE_URL: "http://127.0.0.1:9/v1", OPENAI_API_KEY: "sk-test" });
    const watch = watchHealth(service.port, "chat.v1.ChatService");
    await watch.seen("SERVING");
    expect(await service.stop("SIGTERM")).toBe(0);
    expect(await watch.ended).toEqual({ code: status.UNAVAILABLE, details: "server shutting down" });
    expect(watch.statuses).toEqual(["SERVING", "NOT_SERVING"]);
    expect((await service.logLine((l) => l.msg === "stopped")).outcome).toBe("drained");
  });
});

describe("service and Envoy signalled at once", () => {
  it("let an HTTP stream in flight finish, refuse new requests clearly, then both exit", { timeout: 30_000 }, async () => {
    const { promise: held, release } = hold();
    upstream = await startFakeUpstream({
      reply: (r) => ({ tokens: ["one ", "two ", "three"], gate: (i) => (i === 1 && r.body.messages?.at(-1)?.content === "hold" ? held : undefined) }),
    });
    service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test", SHUTDOWN_GRACE_MS: "20000" });
    envoy = await startEnvoy({ servicePort: service.port, httpHost: "127.0.0.1", stderr: "ignore", graceMs: 20_000 });
    const chat = (text: string) => post(envoy!.httpPort, "/chat", JSON.stringify({ text }));

    const inFlight = await chat("hold");
    expect(inFlight.status).toBe(200);
    const events = inFlight.events[Symbol.asyncIterator]();
    expect((await events.next()).value).toEqual({ delta: { text: "one " } });

    // What docker and the kubelet do: SIGTERM to each container's first process, together.
    const envoyExited = new Promise<number | null>((resolve) => envoy!.process.once("exit", resolve));
    service.process.kill("SIGTERM");
    envoy.process.kill("SIGTERM");
    await service.logLine((l) => l.msg === "draining");

    const late = await chat("late");
    expect(late.status).toBe(503);
    expect(late.headers["content-type"]).toBe("application/json");
    expect(late.headers.connection).toBe("close");
    expect(JSON.parse(await late.body())).toEqual({ code: status.UNAVAILABLE, message: "gateway is shutting down; retry" });

    release();
    const rest: unknown[] = [];
    for (let e = await events.next(); !e.done; e = await events.next()) rest.push(e.value);
    expect(rest).toEqual([{ delta: { text: "two " } }, { delta: { text: "three" } }, { finish: expect.objectContaining({ finishReason: "stop" }) }]);
    expect(await service.stop()).toBe(0);
    expect(await envoyExited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${envoy.adminPort}/ready`)).rejects.toThrow();
  });

  it("when Envoy alone is stopped (compose stops it first), it waits for the stream and then stops", { timeout: 30_000 }, async () => {
    const { promise: held, release } = hold();
    upstream = await startFakeUpstream({ reply: () => ({ tokens: ["one ", "two"], gate: (i) => (i === 1 ? held : undefined) }) });
    service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });
    envoy = await startEnvoy({ servicePort: service.port, httpHost: "127.0.0.1", stderr: "ignore", graceMs: 20_000 });
    const inFlight = await post(envoy.httpPort, "/chat", JSON.stringify({ text: "hold" }));
    const events = inFlight.events[Symbol.asyncIterator]();
    expect((await events.next()).value).toEqual({ delta: { text: "one " } });

    const envoyExited = new Promise<number | null>((resolve) => envoy!.process.once("exit", resolve));
    envoy.process.kill("SIGTERM");
    // Draining: Envoy's health check fails (a load balancer in front stops sending), the stream goes on.
    for (let state = ""; state !== "DRAINING"; ) state = (await (await fetch(`http://127.0.0.1:${envoy.adminPort}/ready`)).text()).trim();
    expect(await healthStatus(service.port, "chat.v1.ChatService")).toBe("SERVING");

    release();
    const rest = await allEvents({ ...inFlight, events: { [Symbol.asyncIterator]: () => events } });
    expect(rest.map((e) => e.delta?.text ?? (e.finish ? "finish" : "?"))).toEqual(["two", "finish"]);
    expect(await envoyExited).toBe(0);
  });
});
