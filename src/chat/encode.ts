// Chat's response serializer: the bytes ts-proto's ChatResponse.encode writes, one Buffer
// allocation for the messages of nearly every event (text, reasoning, refusal: a field of one
// string), the generated encoder for the rest.
//
// Why: every token is one ChatResponse. The generated path builds it through a BinaryWriter (a
// fork and join for the nested message, a list of chunks, a concatenation), then Buffer.from copies
// it; that was ~6% of the service's busy CPU per paced delta (issue 24's profile). The bytes are
// the same, field for field (test/unit/encode.test.ts compares both encoders).
import { ChatResponse } from "../contract/chat.js";
import { varintSize, writeVarint } from "../contract/varint.js";

/** ChatResponse's field tags (field number << 3 | wire type 2, length-delimited; 0 for varint). */
const TAG = { delta: 10, reasoning: 34, refusal: 50, streamId: 66, sequence: 72 } as const;
/** Delta's `text` (field 1, length-delimited). */
const TEXT_TAG = 10;

export function encodeChatResponse(message: ChatResponse): Buffer {
  const event = message.event;
  if (event === undefined || (event.$case !== "delta" && event.$case !== "reasoning" && event.$case !== "refusal"))
    return Buffer.from(ChatResponse.encode(message).finish());
  const text = event.value.text;
  const textBytes = text === "" ? 0 : Buffer.byteLength(text, "utf8");
  // Delta { text }: proto3 leaves an empty string out.
  const inner = textBytes === 0 ? 0 : 1 + varintSize(textBytes) + textBytes;
  const { streamId, sequence } = message;
  const idBytes = streamId === undefined ? -1 : Buffer.byteLength(streamId, "utf8");
  const size =
    1 +
    varintSize(inner) +
    inner +
    (idBytes < 0 ? 0 : 1 + varintSize(idBytes) + idBytes) +
    (sequence === undefined ? 0 : 1 + varintSize(sequence));
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  out[at++] = TAG[event.$case];
  at = writeVarint(out, at, inner);
  if (textBytes > 0) {
    out[at++] = TEXT_TAG;
    at = writeVarint(out, at, textBytes);
    at += out.write(text, at, textBytes, "utf8");
  }
  if (idBytes >= 0) {
    out[at++] = TAG.streamId;
    at = writeVarint(out, at, idBytes);
    at += out.write(streamId as string, at, idBytes, "utf8");
  }
  if (sequence !== undefined) {
    out[at++] = TAG.sequence;
    at = writeVarint(out, at, sequence);
  }
  return out;
}
