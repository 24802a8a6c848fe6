// chat.v1's sampling parameters are protobuf `float`s: a caller's 0.2 arrives as the float32 nearest
// to it, 0.20000000298023224 as a double. Sent on like that, the upstream would get (and a refusal
// would quote) a number the caller never wrote; the shortest decimal that is the same float32 is
// what the caller wrote, or as close as float32 can tell.
export function float32Decimal(value: number): number {
  if (!Number.isFinite(value)) return value;
  const single = Math.fround(value);
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(single.toPrecision(digits));
    if (Math.fround(candidate) === single) return candidate;
  }
  return single;
}

type SamplingFloats = "temperature" | "topP" | "presencePenalty" | "frequencyPenalty";

/** The request with its `float` fields as the decimals the caller wrote. */
export function withDecimalFloats<T extends Partial<Record<SamplingFloats, number | undefined>>>(request: T): T {
  const copy = { ...request };
  for (const field of ["temperature", "topP", "presencePenalty", "frequencyPenalty"] as const) {
    const value = copy[field];
    if (value !== undefined) (copy as Record<SamplingFloats, number>)[field] = float32Decimal(value);
  }
  return copy;
}
