// The gateway's decoder of a streamed completion's body (src/upstream/sse-chunks.ts), fed bytes as a
// network would cut them: it must make of every body what the openai SDK's Stream makes of it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status } from "@grpc/grpc-js";
import OpenAI from "openai";
import { SseChunkDecoder } from "../../../../src/providers/openai/sse-chunks.js";
import { collect, startHarness, type Harness } from "../../../support/grpc.js";

const bytes = (text: string) => new TextEncoder().encode(text);
const headers = new Headers({ "x-request-id": "req-1" });

/** Every chunk the decoder gives for `reads`, then what the body's end adds. */
function decode(reads: (string | Uint8Array)[]): { chunks: unknown[][]; tail: unknown[]; decoder: SseChunkDecoder } {
  const decoder = new SseChunkDecoder({ headers: () => headers });
  const chunks = reads.map((r) => [...decoder.read(typeof r === "string" ? bytes(r) : r)]);
  return { chunks, tail: [...decoder.end()], decoder };
}

describe("SseChunkDecoder", () => {
  it("gives every event one read completes at once, in order, and keeps a partial event for the next read", () => {
    const { chunks, decoder } = decode([
      'data: {"n":1}\n\ndata: {"n":2}\n\ndata: {"n"',
      ":3}\n\n: a comment\n\ndata: [DONE]\n\n",
    ]);
    expect(chunks).toEqual([[{ n: 1 }, { n: 2 }], [{ n: 3 }]]);
    expect(decoder.done).toBe(true);
    expect(decoder.failure).toBeUndefined();
  });

  it("hands each read's chunks over and keeps none of them: the last would otherwise live until the next read", () => {
    const decoder = new SseChunkDecoder({ headers: () => headers });
    const first = decoder.read(bytes('data: {"n":1}\n\n'));
    const second = decoder.read(bytes('data: {"n":2}\n\n'));
    expect(first).toEqual([{ n: 1 }]);
    expect(second).toEqual([{ n: 2 }]);
    expect(Object.values(decoder)).not.toContain(second);
  });

  it("decodes a character split between two reads, and CRLF line ends", () => {
    const all = bytes('data: {"t":"é✓"}\r\n\r\n');
    const { chunks } = decode([all.slice(0, 14), all.slice(14)]);
    expect(chunks.flat()).toEqual([{ t: "é✓" }]);
  });

  it("gives the same events however a body is cut into reads: after a line break, before one, within a CRLF, a character or a line", () => {
    // LF, CRLF and CR line ends, a comment, a character of 3 bytes, and a line longer than a read.
    const body = bytes(
      'data: {"n":1}\n\ndata: {"t":"✓✓"}\r\n\r\n: hi\rdata: {"n":3}\r\rdata: {"n":4,"pad":"' +
        "p".repeat(40) +
        '"}\n\n',
    );
    const whole = decode([body]).chunks.flat();
    expect(whole).toHaveLength(4);
    for (let cut = 1; cut < body.length; cut++) {
      expect(decode([body.slice(0, cut), body.slice(cut)]).chunks.flat(), `cut at ${cut}`).toEqual(whole);
    }
    for (const size of [1, 3, 7]) {
      const reads = Array.from({ length: Math.ceil(body.length / size) }, (_, i) =>
        body.slice(i * size, (i + 1) * size),
      );
      expect(decode(reads).chunks.flat(), `reads of ${size}`).toEqual(whole);
    }
  });

  it("ignores everything after [DONE]", () => {
    const { chunks, tail } = decode(['data: {"n":1}\n\ndata: [DONE]\n\ndata: {"n":2}\n\n', 'data: {"n":3}\n\n']);
    expect([...chunks.flat(), ...tail]).toEqual([{ n: 1 }]);
  });

  it("dispatches a last event the body ends without its blank line", () => {
    const { chunks, tail, decoder } = decode(['data: {"n":1}\n\ndata: {"n":2}']);
    expect(chunks).toEqual([[{ n: 1 }]]);
    expect(tail).toEqual([{ n: 2 }]);
    expect(decoder.done).toBe(false);
  });

  it("reports data that is not JSON as a SyntaxError, after the events before it", () => {
    const { chunks, decoder } = decode(['data: {"n":1}\n\ndata: {"n":\n\ndata: {"n":3}\n\n']);
    expect(chunks).toEqual([[{ n: 1 }]]);
    expect(decoder.failure).toBeInstanceOf(SyntaxError);
  });

  it("reports an error member, or an error event, as the SDK's APIError without a status, with the response's headers", () => {
    const member = decode(['data: {"n":1}\n\ndata: {"error":{"code":429,"message":"slow down"}}\n\n']);
    expect(member.chunks).toEqual([[{ n: 1 }]]);
    const error = member.decoder.failure as InstanceType<typeof OpenAI.APIError>;
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(error.status).toBeUndefined();
    expect(error.error).toEqual({ code: 429, message: "slow down" });
    expect(error.headers?.get("x-request-id")).toBe("req-1");

    const event = decode(['event: error\ndata: {"message":"overloaded","type":"overloaded_error"}\n\n']);
    expect((event.decoder.failure as InstanceType<typeof OpenAI.APIError>).error).toEqual({
      message: "overloaded",
      type: "overloaded_error",
    });
  });
});

describe("one network read of text then an error, through the gRPC service", () => {
  let harness: Harness;
  let sse = "";
  beforeAll(async () => {
    harness = await startHarness({ upstream: { reply: () => ({ sse }) } });
  });
  afterAll(() => harness?.close());
  const data = (body: unknown) => `data: ${JSON.stringify(body)}\n\n`;
  const content = (text: string) =>
    data({
      id: "c",
      object: "chat.completion.chunk",
      created: 0,
      model: "m",
      choices: [{ index: 0, delta: { content: text }, finish_reason: null }],
    });

  it("sends the text the upstream wrote before its error event, then the error", async () => {
    // All of it in one write: the gateway decodes it in one read, and must not drop what came first.
    sse = content("a") + content("b") + data({ error: { message: "the model crashed", type: "server_error" } });
    const result = await collect(harness.client, { text: "hi" });
    expect(result.responses.map((r) => r.event?.$case)).toEqual(["delta", "delta", "error"]);
    expect(result.text).toBe("ab");
    expect(result.code).toBe(status.UNAVAILABLE);
  });

  it("sends the text before malformed JSON, then the error", async () => {
    sse = content("a") + "data: {not json\n\n";
    const result = await collect(harness.client, { text: "hi" });
    expect(result.text).toBe("a");
    expect(result.code).not.toBe(status.OK);
    expect(result.responses.at(-1)?.event?.$case).toBe("error");
  });
});
