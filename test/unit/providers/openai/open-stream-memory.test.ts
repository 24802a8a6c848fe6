// What an open stream keeps while its model is silent between tokens: with thousands open, every
// object each one holds is multiplied (issue 24). Once the response headers are in, the provider
// reads the body from Node's stream; the fetch Response the SDK was handed (its Headers, its web
// stream) and the request's Headers the SDK built are garbage from then on, not kept until the end.
import { queryObjects } from "node:v8";
import { afterEach, describe, expect, it } from "vitest";
import { OpenAIUpstream } from "../../../../src/providers/openai/upstream.js";
import type { UpstreamEvent } from "../../../../src/upstream/port.js";
import { callWith, shortRequest } from "../../../support/upstream-call.js";
import { startFakeUpstream, type FakeUpstream } from "../../../support/fake-model.js";

/** Live objects of a class, after a full collection (queryObjects collects first). */
function live(type: abstract new (...args: never[]) => object): number {
  return queryObjects(type, { format: "count" });
}

let model: FakeUpstream | undefined;
afterEach(async () => {
  await model?.close();
  model = undefined;
});

describe("an open stream between tokens", () => {
  it("keeps no fetch Response and no Headers, request's or response's", async () => {
    const streams = 20;
    // The first token, then a silence longer than the test: every stream stays open.
    model = await startFakeUpstream({ reply: () => ({ tokens: ["a", "b"], tokenDelayMs: 60_000 }) });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 5_000 });
    const leaving = new AbortController();
    const [responses, headers] = [live(Response), live(Headers)];
    const open = Array.from({ length: streams }, () =>
      upstream.stream(shortRequest, callWith(leaving.signal))[Symbol.asyncIterator](),
    );
    const firsts = await Promise.all(open.map((stream) => stream.next()));
    expect(
      firsts.map((first) => (first.value as UpstreamEvent[]).map((e) => e.type === "text" && e.text).join("")),
    ).toEqual(Array(streams).fill("a"));
    // Kept per stream, these would count `streams` each.
    expect(live(Response) - responses).toBeLessThan(streams / 4);
    expect(live(Headers) - headers).toBeLessThan(streams / 4);
    leaving.abort(new Error("the caller left"));
    for (const stream of open) await expect(stream.next()).rejects.toThrow();
  });
});
