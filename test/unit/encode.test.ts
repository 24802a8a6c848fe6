// The serializers on every token's path write the same bytes as ts-proto's generated encoders:
// Chat's responses for every kind of event, with and without a resumable stream's position, and
// the OpenAI routes' HttpBody messages.
import { describe, expect, it } from "vitest";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { ChatResponse, HttpBody } from "../../src/contract/chat.js";
import { readDescriptorSet } from "../../src/contract/descriptor.js";
import { encodeChatResponse } from "../../src/chat/encode.js";
import { encodeHttpBody, heartbeatBody, jsonBody, sseBody } from "../../src/api/openai/bodies.js";

const texts = [
  "",
  "a",
  " world",
  "x".repeat(127),
  "x".repeat(128),
  "y".repeat(16_383),
  "y".repeat(16_384),
  "z".repeat(300_000),
  "héllo, 世界 🙂",
  "lone \ud800 surrogate",
  "\u0000nul",
];
const positions: Partial<ChatResponse>[] = [
  {},
  { sequence: 0 },
  { sequence: 1 },
  { sequence: 300 },
  { sequence: 0xffffffff },
  { streamId: "" },
  { streamId: "3f2a9c1e-8d7b-4e5f-a6b7-c8d9e0f1a2b3", sequence: 7 },
];

const generated = (m: ChatResponse) => Buffer.from(ChatResponse.encode(m).finish());

describe("encodeChatResponse", () => {
  it("writes ts-proto's bytes for text, reasoning and refusal, at every length and position", () => {
    let compared = 0;
    for (const kind of ["delta", "reasoning", "refusal"] as const) {
      for (const text of texts) {
        for (const position of positions) {
          const message = { event: { $case: kind, value: { text } }, ...position } as ChatResponse;
          const bytes = encodeChatResponse(message);
          expect(bytes.equals(generated(message)), `${kind} ${text.length} ${JSON.stringify(position)}`).toBe(true);
          expect(ChatResponse.decode(bytes)).toEqual(ChatResponse.decode(generated(message)));
          compared++;
        }
      }
    }
    expect(compared).toBe(3 * texts.length * positions.length);
  });

  it("writes the generated encoder's bytes for every other event", () => {
    const others: ChatResponse[] = [
      { event: { $case: "finish", value: { finishReason: "stop", model: "m", usage: undefined } } },
      { event: { $case: "heartbeat", value: { waitedMs: 15_000 } } },
      { event: { $case: "toolCall", value: { index: 1, id: "call_1", name: "f", arguments: '{"a":' } }, sequence: 4 },
      { event: { $case: "error", value: { code: 14, status: "UNAVAILABLE", message: "gone" } } },
      { streamId: "s", sequence: 2 } as ChatResponse,
    ];
    for (const message of others) expect(encodeChatResponse(message).equals(generated(message))).toBe(true);
  });
});

describe("encodeHttpBody", () => {
  it("writes HttpBody.encode's bytes for the OpenAI routes' bodies", () => {
    const bodies: HttpBody[] = [
      sseBody('event: response.output_text.delta\ndata: {"delta":"héllo 🙂"}\n\n'),
      sseBody("x".repeat(200_000)),
      jsonBody({ object: "list", data: [] }),
      heartbeatBody(15_000),
      { contentType: "", data: Buffer.alloc(0), extensions: [] },
      { contentType: "text/plain", data: Buffer.alloc(0), extensions: [] },
      { contentType: "", data: Buffer.from("raw"), extensions: [] },
      {
        contentType: "a",
        data: Buffer.from("b"),
        extensions: [{ typeUrl: "type.googleapis.com/x", value: Buffer.from([1]) }],
      },
    ];
    for (const body of bodies)
      expect(encodeHttpBody(body).equals(Buffer.from(HttpBody.encode(body).finish())), body.contentType).toBe(true);
  });

  it("serves every OpenAIService method, each of which answers google.api.HttpBody", () => {
    const set = fromBinary(FileDescriptorSetSchema, readDescriptorSet());
    const service = set.file
      .find((f) => f.package === "chat.v1" && f.service.some((s) => s.name === "OpenAIService"))
      ?.service.find((s) => s.name === "OpenAIService");
    expect(service?.method.length).toBeGreaterThan(0);
    for (const method of service!.method) expect(method.outputType, method.name).toBe(".google.api.HttpBody");
  });
});
