// The replies the bench upstream streams, and the check that a received reply is exactly one of them.
// Token i is its index in base 36, padded with "_" to the token size, then a space: every token is
// distinct, so a lost, duplicated or reordered token shows in the text, whatever the framing.

export interface ReplyShape {
  /** Content deltas per reply. */
  tokens: number;
  /** Characters per token, the separating space included (at least what the index needs). */
  size: number;
  /** Milliseconds before the first token, and between tokens (0: as fast as the socket takes them). */
  firstMs: number;
  delayMs: number;
}

export function token(i: number, size: number): string {
  const id = i.toString(36);
  return id + "_".repeat(Math.max(0, size - id.length - 1)) + " ";
}

/** The request text that asks the bench upstream for this reply shape. */
export function promptFor(shape: ReplyShape): string {
  return `bench tokens=${shape.tokens} size=${shape.size} first=${shape.firstMs} delay=${shape.delayMs}`;
}

/** Parses `promptFor`'s text; fields it lacks come from `defaults`. */
export function shapeFromPrompt(text: string, defaults: ReplyShape): ReplyShape {
  const shape = { ...defaults };
  for (const [, key, value] of text.matchAll(/\b(tokens|size|first|delay)=(\d+)/g)) {
    const n = Number(value);
    if (key === "tokens") shape.tokens = n;
    else if (key === "size") shape.size = n;
    else if (key === "first") shape.firstMs = n;
    else if (key === "delay") shape.delayMs = n;
  }
  return shape;
}

export interface Verdict {
  /** Tokens received, in order, that belong where they are. */
  received: number;
  /** Tokens of the expected prefix that are missing. */
  lost: number;
  /** Tokens received more than once. */
  duplicated: number;
  /** Anything else: garbage, reordering, wrong padding. */
  corrupt: boolean;
}

/**
 * Checks a reply's text against the shape. `complete` says the stream ended normally, so every token
 * must be there; otherwise (cancelled at the end of a timed window) the text must be an exact prefix.
 */
export function verify(text: string, shape: ReplyShape, complete: boolean): Verdict {
  const parts = text.split(" ");
  parts.pop(); // after the last space: "" when the text ends on a token boundary
  const seen = new Set<number>();
  let duplicated = 0;
  let corrupt = text.length > 0 && !text.endsWith(" ") && complete;
  let expected = 0;
  let max = -1;
  let outOfOrder = false;
  for (const part of parts) {
    const i = parseInt(part, 36);
    if (!Number.isFinite(i) || token(i, shape.size) !== `${part} `) {
      corrupt = true;
      continue;
    }
    if (seen.has(i)) duplicated++;
    else seen.add(i);
    if (i !== expected) outOfOrder = true;
    expected = i + 1;
    if (i > max) max = i;
  }
  const upTo = complete ? shape.tokens : max + 1;
  const lost = Math.max(0, upTo - seen.size) + (complete && max >= shape.tokens ? 1 : 0);
  return { received: seen.size, lost, duplicated, corrupt: corrupt || (outOfOrder && duplicated === 0 && lost === 0) };
}
