// Points where a test holds the fake upstream's stream (see Reply.gate).

/** A gate that never opens. */
export const never = new Promise<void>(() => undefined);

/** A gate the test opens when it is ready. */
export function hold(): { promise: Promise<void>; release: () => void } {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => (release = resolve));
  return { promise, release };
}
