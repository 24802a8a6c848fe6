// `npm start` as a user runs it: the whole stack from one command with no configuration (service,
// Envoy, demo upstream), stopped by Ctrl-C or SIGTERM without cutting a stream, and never leaving
// Envoy behind, however its process ends.
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, ChatServiceClient, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { credentials } from "@grpc/grpc-js";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-model.js";
import { allEvents, errorBody, post } from "../support/http.js";
import { hold } from "../support/gates.js";
import { healthStatus } from "../support/health.js";
import { textOf } from "../support/grpc.js";
import { startStackProcess, type StackProcess } from "../support/processes.js";

let stack: StackProcess | undefined;
let upstream: FakeUpstream | undefined;
afterEach(async () => {
  if (stack && stack.process.exitCode === null) stack.process.kill("SIGKILL");
  await upstream?.close();
  stack = upstream = undefined;
});

/** Resolves once nothing answers on the port any more. */
async function gone(url: string): Promise<void> {
  for (;;) {
    try {
      await fetch(url);
    } catch {
      return;
    }
    await sleep(50);
  }
}

it("starts service, Envoy and the demo upstream with no configuration, open and on loopback, and stops on SIGINT", {
  timeout: 60_000,
}, async () => {
  stack = await startStackProcess();
  expect(stack.up.auth).toBe("open: AUTH=none, so any caller may call");
  expect(stack.up.upstream).toMatch(/^built-in demo/);
  expect(stack.up.metrics).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const listeners = (await (await fetch(`${stack.up.envoyAdmin}/listeners?format=json`)).json()) as {
    listener_statuses: { local_address: { socket_address: { address: string } } }[];
  };
  expect(listeners.listener_statuses[0]?.local_address.socket_address.address).toBe("127.0.0.1");

  const response = await post(stack.httpPort, "/chat", JSON.stringify({ text: "hello" }));
  expect(response.status).toBe(200);
  const events = await allEvents(response);
  const text = events.map((e) => e.delta?.text ?? "").join("");
  expect(text).toContain('You said: "hello"');
  expect(events.at(-1)?.finish?.finishReason).toBe("stop");

  // The chat page, through the same Envoy, at the URL the start-up line names.
  expect(stack.up.page).toBe(`http://localhost:${stack.httpPort}/`);
  const page = await fetch(`http://127.0.0.1:${stack.httpPort}/`);
  expect([page.status, page.headers.get("content-type")]).toEqual([200, "text/html; charset=utf-8"]);
  expect(await page.text()).toContain('<script type="module" src="/app.js"></script>');

  stack.process.kill("SIGINT");
  expect(await stack.exited).toBe(0);
  // Envoy went with it: its admin port no longer answers.
  await expect(fetch(`${stack.up.envoyAdmin}/ready`)).rejects.toThrow();
});

describe("stopped while streams are in flight", () => {
  const cases = [
    { signal: "SIGTERM", to: "its process" },
    { signal: "SIGINT", to: "its whole process group, as Ctrl-C does" },
  ] as const;
  it.each(cases)(
    "$signal to $to: HTTP and gRPC streams finish, new requests are refused, everything exits",
    { timeout: 60_000 },
    async ({ signal, to }) => {
      const { promise: held, release } = hold();
      upstream = await startFakeUpstream({
        reply: (r) => ({
          tokens: ["one ", "two ", "three"],
          gate: (i) => (i === 1 && r.body.messages?.at(-1)?.content === "hold" ? held : undefined),
        }),
      });
      stack = await startStackProcess({
        OPENAI_BASE_URL: upstream.baseURL,
        OPENAI_API_KEY: "sk-test",
        CHAT_MODEL: "fake-model",
      });
      const http = await post(stack.httpPort, "/chat", JSON.stringify({ text: "hold" }));
      const httpEvents = http.events[Symbol.asyncIterator]();
      expect((await httpEvents.next()).value).toEqual({ delta: { text: "one " } });
      const client = new ChatServiceClient(`127.0.0.1:${stack.grpcPort}`, credentials.createInsecure());
      const grpc = client.chat(ChatRequest.fromPartial({ text: "hold" }));
      const grpcResponses: ChatResponse[] = [];
      const grpcEnded = new Promise<number>((resolve) => {
        grpc.on("data", (r: ChatResponse) => grpcResponses.push(r));
        grpc.on("error", (e: ServiceError) => resolve(e.code));
        grpc.on("end", () => resolve(status.OK));
      });
      await new Promise((resolve) => grpc.once("data", resolve));

      if (to === "its process") stack.process.kill(signal);
      else process.kill(-stack.process.pid!, signal);
      // The service drains once Envoy has stopped taking new requests; from then on, a new request
      // through Envoy is refused with the same JSON error as every other.
      while ((await healthStatus(stack.grpcPort, "chat.v1.ChatService")) !== "NOT_SERVING") await sleep(20);
      expect((await (await fetch(`${stack.up.envoyAdmin}/ready`)).text()).trim()).toBe("DRAINING");
      const late = await post(stack.httpPort, "/chat", JSON.stringify({ text: "late" }));
      expect(late.status).toBe(503);
      expect(JSON.parse(await late.body())).toEqual(
        errorBody(status.UNAVAILABLE, "gateway is shutting down; retry", "DRAINING"),
      );

      release();
      const rest = await allEvents({ ...http, events: { [Symbol.asyncIterator]: () => httpEvents } });
      expect(rest).toEqual([
        { delta: { text: "two " } },
        { delta: { text: "three" } },
        { finish: expect.objectContaining({ finishReason: "stop" }) },
      ]);
      expect(await grpcEnded).toBe(status.OK);
      expect(textOf(grpcResponses)).toBe("one two three");
      client.close();
      expect(await stack.exited).toBe(0);
      await expect(fetch(`${stack.up.envoyAdmin}/ready`)).rejects.toThrow();
    },
  );
});

it("takes Envoy with it when killed with SIGKILL, so the next start gets the same ports", {
  timeout: 60_000,
}, async () => {
  stack = await startStackProcess();
  const adminPort = new URL(stack.up.envoyAdmin).port;
  const httpPort = String(stack.httpPort);
  stack.process.kill("SIGKILL");
  await stack.exited;
  await gone(`${stack.up.envoyAdmin}/ready`);

  stack = await startStackProcess({ ENVOY_ADMIN_PORT: adminPort, HTTP_PORT: httpPort });
  expect(new URL(stack.up.envoyAdmin).port).toBe(adminPort);
  expect((await post(stack.httpPort, "/chat", JSON.stringify({ text: "again" }))).status).toBe(200);
  stack.process.kill("SIGTERM");
  expect(await stack.exited).toBe(0);
});
