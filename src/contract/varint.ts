// Protobuf's base-128 varints, for the serializers that write a message's bytes in one allocation
// (chat/encode.ts, api/openai/bodies.ts). Values up to 2^53, as lengths and uint32 fields need.

/** Bytes the varint of `value` takes. */
export function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** Writes the varint of `value` at `at`; returns the offset after it. */
export function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[at++] = value;
  return at;
}
