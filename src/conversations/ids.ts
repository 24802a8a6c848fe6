// Conversation ids: UUID version 7 (RFC 9562), time-ordered, so the list's "newest first" has a
// strict order even for conversations created in the same millisecond: its 12-bit `rand_a` field is
// a counter within the millisecond here (the RFC's "method 1"), the rest random.
import { randomBytes } from "node:crypto";

let lastMs = 0;
let counter = 0;

export function uuidv7(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    counter = 0;
  } else if (++counter > 0xfff) {
    // The counter ran out within one millisecond: borrow the next one (ids stay in order).
    lastMs++;
    counter = 0;
  }
  const bytes = randomBytes(16);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
