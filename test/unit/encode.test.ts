// Chat's response serializer writes the same bytes as ts-proto's generated encoder, for every kind
// of event, with and without a resumable stream's position; and what it writes decodes back.
import { describe, expect, it } from "vitest";
import { ChatResponse } from "../../src/contract/chat.js";
import { encodeChatResponse } from "../../src/chat/encode.js";

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
