// Shutdown of the real processes: the built service with a health Watch open, and the service and
// Envoy (under scripts/envoy-sidecar.sh, as docker-compose.yml runs it) signalled at the same
// moment, as `docker compose stop` and Kubernetes do: an HTTP stream in flight finishes.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { status } from "@grpc/grpc-js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { ROOT, TOOLS_BIN, renderEnvoyConfig, startEnvoy, type RunningEnvoy } from "../../src/dev/envoy.js";
import { freePort } from "../../bench/procs.js";
import { startServiceProcess, type ServiceProcess } from "../support/processes.js";
import { hold } from "../support/gates.js";
import { healthStatus, watchHealth } from "../support/health.js";
import { allEvents, errorBody, post } from "../support/http.js";

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
  it("let an HTTP stream in flight finish, refuse new requests clearly, then both exit", {
    timeout: 30_000,
  }, async () => {
    const { promise: held, release } = hold();
    upstream = await startFakeUpstream({
      reply: (r) => ({
        tokens: ["one ", "two ", "three"],
        gate: (i) => (i === 1 && r.body.messages?.at(-1)?.content === "hold" ? held : undefined),
      }),
    });
    service = await startServiceProcess({
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-test",
      SHUTDOWN_GRACE_MS: "20000",
    });
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
    for (let state = ""; state !== "DRAINING"; )
      state = (await (await fetch(`http://127.0.0.1:${envoy.adminPort}/ready`)).text()).trim();

    // Refused by the draining service, through Envoy's still-open listener, on a connection Envoy closes.
    const late = await chat("late");
    expect(late.status).toBe(503);
    expect(late.headers["content-type"]).toBe("application/json");
    expect(late.headers.connection).toBe("close");
    expect(JSON.parse(await late.body())).toEqual(
      errorBody(status.UNAVAILABLE, "gateway is shutting down; retry", "DRAINING"),
    );

    release();
    const rest: unknown[] = [];
    for (let e = await events.next(); !e.done; e = await events.next()) rest.push(e.value);
    expect(rest).toEqual([
      { delta: { text: "two " } },
      { delta: { text: "three" } },
      { finish: expect.objectContaining({ finishReason: "stop" }) },
    ]);
    expect(await service.stop()).toBe(0);
    expect(await envoyExited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${envoy.adminPort}/ready`)).rejects.toThrow();
  });

  it("when Envoy alone is stopped (compose stops it first), it waits for the stream and then stops", {
    timeout: 30_000,
  }, async () => {
    const { promise: held, release } = hold();
    upstream = await startFakeUpstream({
      reply: () => ({ tokens: ["one ", "two"], gate: (i) => (i === 1 ? held : undefined) }),
    });
    service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });
    envoy = await startEnvoy({ servicePort: service.port, httpHost: "127.0.0.1", stderr: "ignore", graceMs: 20_000 });
    const inFlight = await post(envoy.httpPort, "/chat", JSON.stringify({ text: "hold" }));
    const events = inFlight.events[Symbol.asyncIterator]();
    expect((await events.next()).value).toEqual({ delta: { text: "one " } });

    const envoyExited = new Promise<number | null>((resolve) => envoy!.process.once("exit", resolve));
    envoy.process.kill("SIGTERM");
    // Draining: Envoy's health check fails (a load balancer in front stops sending), the stream goes on.
    for (let state = ""; state !== "DRAINING"; )
      state = (await (await fetch(`http://127.0.0.1:${envoy.adminPort}/ready`)).text()).trim();
    expect(await healthStatus(service.port, "chat.v1.ChatService")).toBe("SERVING");

    release();
    const rest = await allEvents({ ...inFlight, events: { [Symbol.asyncIterator]: () => events } });
    expect(rest.map((e) => e.delta?.text ?? (e.finish ? "finish" : "?"))).toEqual(["two", "finish"]);
    expect(await envoyExited).toBe(0);
  });
});

describe("the sidecar script as docker-compose.yml runs it", () => {
  it("keeps Envoy up with nothing on its stdin, and on SIGTERM lets the stream in flight finish", {
    timeout: 30_000,
  }, async () => {
    const { promise: held, release } = hold();
    upstream = await startFakeUpstream({
      reply: () => ({ tokens: ["one ", "two"], gate: (i) => (i === 1 ? held : undefined) }),
    });
    service = await startServiceProcess({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-test" });
    const [httpPort, adminPort] = [await freePort(), await freePort()];
    const dir = mkdtempSync(join(tmpdir(), "chat-compose-envoy-"));
    const config = join(dir, "envoy.json");
    writeFileSync(config, renderEnvoyConfig({ servicePort: service.port, httpPort, adminPort, httpHost: "127.0.0.1" }));
    // Compose's command, with this checkout's paths; and no hot restart, as other Envoys share this machine.
    const command: string[] = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8")).services.envoy.command;
    const local = command.map((arg) =>
      arg === "/etc/envoy/envoy-sidecar.sh"
        ? join(ROOT, "scripts", "envoy-sidecar.sh")
        : arg === "envoy"
          ? join(TOOLS_BIN, "envoy")
          : arg === "/etc/envoy/envoy.json"
            ? config
            : arg,
    );
    expect(local.slice(0, 2)).toEqual(["bash", join(ROOT, "scripts", "envoy-sidecar.sh")]);
    const sidecar = spawn(local[0]!, [...local.slice(1), "--disable-hot-restart"], {
      stdio: ["ignore", "ignore", "ignore"],
      // ENVOY_PID_FILE only so a failing run can clean up after itself.
      env: { PATH: process.env.PATH ?? "", SHUTDOWN_GRACE_MS: "20000", ENVOY_PID_FILE: join(dir, "envoy.pid") },
    });
    const exited = new Promise<number | null>((resolve) => sidecar.once("exit", resolve));
    try {
      for (;;) {
        const ready = await fetch(`http://127.0.0.1:${adminPort}/clusters`).then(
          (r) => r.text(),
          () => "",
        );
        if (/chat_service::.*::health_flags::healthy/.test(ready)) break;
        await sleep(50);
      }
      const inFlight = await post(httpPort, "/chat", JSON.stringify({ text: "hold" }));
      const events = inFlight.events[Symbol.asyncIterator]();
      expect((await events.next()).value).toEqual({ delta: { text: "one " } });
      sidecar.kill("SIGTERM");
      for (let state = ""; state !== "DRAINING"; )
        state = (await (await fetch(`http://127.0.0.1:${adminPort}/ready`)).text()).trim();
      release();
      const rest = await allEvents({ ...inFlight, events: { [Symbol.asyncIterator]: () => events } });
      expect(rest.map((e) => e.delta?.text ?? (e.finish ? "finish" : "?"))).toEqual(["two", "finish"]);
      expect(await exited).toBe(0);
      await expect(fetch(`http://127.0.0.1:${adminPort}/ready`)).rejects.toThrow();
    } finally {
      sidecar.kill("SIGKILL");
      try {
        process.kill(Number(readFileSync(join(dir, "envoy.pid"), "utf8")), "SIGKILL");
      } catch {
        // gone already
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
