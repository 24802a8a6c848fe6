// Resumable streams over HTTP through the real Envoy and service process: a client whose TCP
// connection is cut mid-stream (its own socket closed, and a proxy in between that drops the
// connection) resumes with `GET /chat/streams/{id}` and `Last-Event-ID`, and the text it joins is
// the upstream's, byte for byte; `DELETE` stops the upstream; unknown ids are a 404 in the
// transcoder's JSON error shape.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeUpstream } from "../support/fake-model.js";
import type { Stack } from "../support/processes.js";
import { startGatedStack, unicodeTokens, type GatedStack } from "../support/gated-stack.js";
import { allEvents, errorBody, post, type HttpResponse } from "../support/http.js";
import { hold } from "../support/gates.js";
import { startDropProxy } from "../support/drop-proxy.js";

const TOKENS = unicodeTokens(40);
const CUT_AFTER = 10;

interface Positioned {
  delta?: { text: string };
  finish?: { finishReason: string };
  error?: { code: number; status: string; message: string };
  streamId?: string;
  sequence?: number;
}

let upstream: FakeUpstream;
let stack: Stack;
let gates: GatedStack["gates"];

let gated: GatedStack | undefined;
beforeAll(async () => {
  gated = await startGatedStack({ tokens: TOKENS, cutAfter: CUT_AFTER, apiKey: "sk-e2e" });
  ({ upstream, stack, gates } = gated);
});
afterAll(() => gated?.stop());

/** Reads SSE events until `count` have arrived; returns them (the response is left open). */
async function firstEvents(response: HttpResponse, count: number): Promise<Positioned[]> {
  const out: Positioned[] = [];
  for await (const event of response.events) {
    out.push(event as Positioned);
    if (out.length === count) break;
  }
  return out;
}

const textOf = (events: Positioned[]) => events.map((e) => e.delta?.text ?? "").join("");

async function startHeld(port: number, key: string): Promise<{ response: HttpResponse; seen: Positioned[] }> {
  gates.set(key, hold());
  const response = await post(port, "/chat", JSON.stringify({ text: key, resumable: true }));
  expect(response.status).toBe(200);
  const seen = await firstEvents(response, CUT_AFTER);
  return { response, seen };
}

/** `via`: the position as `Last-Event-ID` (as EventSource sends it) or as the `after` query parameter. */
async function resumeAfter(
  streamId: string,
  seen: Positioned[],
  via: "header" | "query" = "header",
): Promise<Positioned[]> {
  const last = seen[seen.length - 1]!.sequence!;
  const response = await post(
    stack.envoy.httpPort,
    via === "header" ? `/chat/streams/${streamId}` : `/chat/streams/${streamId}?after=${last}`,
    "",
    via === "header" ? { "last-event-id": String(last) } : {},
    "GET",
  );
  expect(response.status).toBe(200);
  return (await allEvents(response)) as Positioned[];
}

describe("resuming over HTTP", () => {
  it("after the client closed its socket mid-stream, gets the rest, and the text is the upstream's", async () => {
    const { response, seen } = await startHeld(stack.envoy.httpPort, "socket-closed");
    expect(seen.map((e) => e.sequence)).toEqual(seen.map((_, i) => i + 1));
    const streamId = seen[0]!.streamId!;
    expect(streamId).toMatch(/^[0-9a-f-]{36}$/);
    response.destroy();
    gates.get("socket-closed")!.release();
    const rest = await resumeAfter(streamId, seen);
    expect(rest[0]!.sequence).toBe(CUT_AFTER + 1);
    expect(rest.at(-1)!.finish?.finishReason).toBe("stop");
    expect(Buffer.from(textOf(seen) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
  });

  it("after a proxy in between dropped the connection, gets the rest (asked with ?after=), and the text is the upstream's", async () => {
    const proxy = await startDropProxy(stack.envoy.httpPort);
    try {
      const { seen } = await startHeld(proxy.port, "proxy-dropped");
      proxy.drop();
      gates.get("proxy-dropped")!.release();
      const rest = await resumeAfter(seen[0]!.streamId!, seen, "query");
      expect(Buffer.from(textOf(seen) + textOf(rest))).toEqual(Buffer.from(TOKENS.join("")));
    } finally {
      await proxy.close();
    }
  });

  it("DELETE stops the upstream at once, and the open response ends with its CANCELLED error in-band", async () => {
    const { response, seen } = await startHeld(stack.envoy.httpPort, "deleted");
    const streamId = seen[0]!.streamId!;
    const index = upstream.requests.findIndex((r) => JSON.stringify(r.body.messages).includes("deleted"));
    const deleted = await post(stack.envoy.httpPort, `/chat/streams/${streamId}`, "", {}, "DELETE");
    expect({ status: deleted.status, body: await deleted.body() }).toEqual({ status: 200, body: "{}" });
    expect(await upstream.ended(index)).toBe("closed");
    const rest = (await allEvents(response)) as Positioned[];
    expect(rest.at(-1)).toEqual({
      error: { code: 1, status: "CANCELLED", message: "cancelled by the caller" },
      sequence: CUT_AFTER + 1,
    });
  });

  it("writes an SSE id: line (the sequence) before each positioned event of a resumable stream, and none on a plain one", async () => {
    const idsOf = (body: string) =>
      body
        .split("\n\n")
        .filter((block) => block.trim() !== "")
        .map((block) => {
          const id = /^id: (\d+)\ndata: /.exec(block)?.[1];
          const sequence = /"sequence":(\d+)/.exec(block)?.[1];
          return { id, sequence };
        });
    const resumable = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ text: "ids", resumable: true }));
    expect(resumable.headers["chat-stream-id"]).toMatch(/^[0-9a-f-]{36}$/);
    // Every event has its line, equal to its sequence (deltas merged for a slow reader carry the
    // last position they cover, so positions may skip, never repeat); the finish is the last.
    const blocks = idsOf(await resumable.body());
    expect(blocks.every((b) => b.id !== undefined && b.id === b.sequence)).toBe(true);
    const ids = blocks.map((b) => Number(b.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.at(-1)).toBe(TOKENS.length + 1);
    // A resume's events carry them too: what an EventSource reconnecting to it sends back.
    const streamId = resumable.headers["chat-stream-id"] as string;
    const resumed = await post(stack.envoy.httpPort, `/chat/streams/${streamId}`, "", { "last-event-id": "38" }, "GET");
    const resumedIds = idsOf(await resumed.body());
    expect(resumedIds.every((b) => b.id !== undefined && b.id === b.sequence)).toBe(true);
    expect(Number(resumedIds[0]!.id)).toBeGreaterThan(38);
    expect(resumedIds.at(-1)!.id).toBe(String(TOKENS.length + 1));
    const plain = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ text: "no ids" }));
    expect(plain.headers["chat-stream-id"]).toBeUndefined();
    const plainBody = await plain.body();
    expect(plainBody).toContain("data: ");
    expect(plainBody).not.toMatch(/^id:/m);
  });

  it("answers an unknown stream with 404 in the transcoder's error shape", async () => {
    const response = await post(stack.envoy.httpPort, "/chat/streams/no-such-stream", "", {}, "GET");
    expect(response.status).toBe(404);
    expect(JSON.parse(await response.body())).toEqual(errorBody(5, "stream not found", "NOT_FOUND"));
  });
});
