// Shutdown always ends, in process: health Watch streams (open to anyone) are ended, whatever is
// still open after the grace period is cut, and asking twice waits for the same drain.
import { afterEach, describe, expect, it } from "vitest";
import { credentials, Client, status, type ServiceError } from "@grpc/grpc-js";
import { ChatRequest, type ChatResponse } from "../../src/gen/chat/v1/chat.js";
import { startHarness, textOf, type Harness } from "../support/grpc.js";
import { hold } from "../support/gates.js";
import { watchHealth } from "../support/health.js";

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

/** A stream whose upstream holds after the first delta until `release`. */
async function heldStream(h: Harness) {
  const call = h.client.chat(ChatRequest.fromPartial({ text: "hold" }));
  const responses: ChatResponse[] = [];
  const ended = new Promise<{ code: number; details: string }>((resolve) => {
    call.on("data", (r: ChatResponse) => responses.push(r));
    call.on("error", (e: ServiceError) => resolve({ code: e.code, details: e.details }));
    call.on("end", () => resolve({ code: status.OK, details: "" }));
  });
  await new Promise((resolve) => call.once("data", resolve));
  return { responses, ended };
}

describe("shutdown", () => {
  it("ends health Watch streams, so it finishes in order instead of waiting on them", async () => {
    harness = await startHarness();
    const watch = watchHealth(harness.gateway.port, "chat.v1.ChatService");
    await watch.seen("SERVING");
    expect(await harness.gateway.shutdown(1_000)).toBe("drained");
    // The watcher heard NOT_SERVING first, then was told to go elsewhere.
    expect(watch.statuses).toEqual(["SERVING", "NOT_SERVING"]);
    expect(await watch.ended).toEqual({ code: status.UNAVAILABLE, details: "server shutting down" });
  });

  it("cuts what is still open at its hard deadline, after the grace period", async () => {
    harness = await startHarness();
    // A server-reflection stream the client keeps open and never writes to: nothing ends it.
    const client = new Client(`127.0.0.1:${harness.gateway.port}`, credentials.createInsecure());
    const call = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    const ended = new Promise<number>((resolve) =>
      call.on("error", (e: ServiceError) => resolve(e.code)).on("end", () => resolve(status.OK)),
    );
    // One request (list_services: field 7, empty) and its answer: the stream is up on the server.
    const answered = new Promise((resolve) => call.once("data", resolve));
    call.write(Buffer.from([0x3a, 0x00]));
    await answered;
    expect(await harness.gateway.shutdown(50, 200)).toBe("forced");
    expect(await ended).not.toBe(status.OK);
    client.close();
  });

  it("asked twice, waits for the same streams both times, and keeps the earlier deadline", async () => {
    const { promise: gate, release } = hold();
    harness = await startHarness({
      upstream: { reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? gate : undefined) }) },
    });
    const finishing = await heldStream(harness);
    const first = harness.gateway.shutdown(60_000);
    const second = harness.gateway.shutdown(60_000);
    release();
    expect(await Promise.all([first, second])).toEqual(["drained", "drained"]);
    expect(await finishing.ended).toEqual({ code: status.OK, details: "" });
    expect(textOf(finishing.responses)).toBe("ab");
  });

  it("asked again with a shorter grace period, ends the open streams at that one", async () => {
    harness = await startHarness({
      upstream: {
        reply: () => ({ tokens: ["a", "b"], gate: (i) => (i === 1 ? new Promise(() => undefined) : undefined) }),
      },
    });
    const stuck = await heldStream(harness);
    const first = harness.gateway.shutdown(60_000);
    const second = harness.gateway.shutdown(50);
    expect(await stuck.ended).toEqual({ code: status.UNAVAILABLE, details: "gateway is shutting down; retry" });
    expect(await Promise.all([first, second])).toEqual(["drained", "drained"]);
  });
});
