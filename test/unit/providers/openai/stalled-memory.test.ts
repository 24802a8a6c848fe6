// What a stream whose caller stopped reading keeps in the service's memory: the provider stops
// pulling after a batch, and the model's reply waits in the kernel's buffers and in the model, not in
// the service. Measured as the process's own memory after a full collection (V8's heap, and the
// Buffers' backing stores, which live outside it), with several such streams open, per stream.
import { getHeapSpaceStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { OpenAIUpstream } from "../../../../src/providers/openai/upstream.js";
import type { UpstreamBatch } from "../../../../src/upstream/port.js";
import { callWith, shortRequest } from "../../../support/upstream-call.js";
import { startFakeUpstream, type FakeUpstream } from "../../../support/fake-model.js";

const KiB = 1024;
const FIRST = 4;
const STREAMS = 16;
// 2,000 tokens of 200 characters (the bench's slow readers): ~830 KB as the model writes it, far more
// than the path between the model and a stalled stream holds.
const TOKENS = Array.from({ length: 2_000 }, (_, i) => `${String(i).padStart(6, "0")}${"y".repeat(194)}`);

/**
 * Node's buffers of a stalled response, by src/providers/openai/http-transport.ts's READ_AHEAD_BYTES:
 * the socket's and the response's high-water marks (16 KiB each), each crossed by at most one socket
 * read (64 KiB), and the read the provider took before it stopped (at most 64 KiB). ~155 KiB
 * measured; at Node's default marks (64 KiB) ~280 KiB.
 */
const BUFFERS_PER_STREAM = 2 * (16 * KiB + 64 * KiB) + 64 * KiB;
/**
 * The JS objects of one stalled stream: the request, response and socket objects, the suspended
 * generator, the rest of the batch being handed on (~150 events of 200 characters), the wrappers of
 * the buffered slices: ~110 KiB measured. With the read's parsed chunks kept referenced, ~157 KiB;
 * with the decoder's whole text of the read kept by a partial line, ~171 KiB; at Node's default
 * high-water marks (more buffered slices), ~145 KiB.
 */
const HEAP_PER_STREAM = 128 * KiB;

/** V8's full collection (as src/server/heap-trim.ts makes it available without `--expose-gc`). */
function collector(): () => void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (options: object) => void;
  return () => gc({ type: "major", execution: "sync" });
}

/** V8's heap in use, but for compiled code: code compiled on first use is not the streams' memory. */
const objectsBytes = () =>
  getHeapSpaceStatistics()
    .filter((space) => !space.space_name.startsWith("code"))
    .reduce((sum, space) => sum + space.space_used_size, 0);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let model: FakeUpstream | undefined;
let leaving: AbortController | undefined;
afterEach(async () => {
  leaving?.abort(new Error("the test is over"));
  await model?.close();
});

describe("a stream whose caller stopped reading", () => {
  it("holds Node's bounded read-ahead and one batch in the service's memory, not the parsed read", async () => {
    leaving = new AbortController();
    const signal = leaving.signal;
    model = await startFakeUpstream({ reply: () => ({ tokens: TOKENS }) });
    const upstream = new OpenAIUpstream({ baseURL: model.baseURL, apiKey: "k", maxRetries: 0, timeoutMs: 60_000 });
    const gc = collector();
    const stalled: AsyncIterator<UpstreamBatch>[] = [];
    // Each takes its first batch and asks for no more, as the chat handler does for a caller that
    // stopped reading; then, once the model's writes have stopped for a while (every buffer on the way
    // as full as it gets), the process's memory after a full collection.
    const stall = async (streams: number) => {
      const first = stalled.length;
      for (let i = 0; i < streams; i++) {
        const stream = upstream.stream(shortRequest, callWith(signal))[Symbol.asyncIterator]();
        expect((await stream.next()).done).toBe(false);
        stalled.push(stream);
      }
      const written = () => Array.from({ length: streams }, (_, i) => model!.bytesWritten(first + i)).join();
      for (let last = "", still = 0; still < 10; await sleep(100)) {
        const now = written();
        still = now === last ? still + 1 : 0;
        last = now;
      }
      gc();
      return { heap: objectsBytes(), buffers: process.memoryUsage().arrayBuffers };
    };
    // What every stream shares (code compiled on first use, the SDK's and the agent's state) is
    // in the first reading; the difference to the second is what each stream holds.
    const before = await stall(FIRST);
    const after = await stall(STREAMS);
    const heap = (after.heap - before.heap) / STREAMS;
    const buffers = (after.buffers - before.buffers) / STREAMS;
    const figures = `per stream: heap ${(heap / KiB).toFixed(1)} KiB, buffers ${(buffers / KiB).toFixed(1)} KiB`;
    expect(buffers, figures).toBeLessThanOrEqual(BUFFERS_PER_STREAM);
    expect(heap, figures).toBeLessThanOrEqual(HEAP_PER_STREAM);
    // Still streams, which carry on when asked.
    for (const stream of stalled) expect((await stream.next()).done).toBe(false);
  });
});
