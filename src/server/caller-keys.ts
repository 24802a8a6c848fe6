// Caller keys as configured: `<name> <key> [<max streams>] [streams=N] [rpm=N] [tpm=N]` entries,
// separated by commas or new lines (`#` starts a comment). A key is given either as itself or, so
// the file holds no usable secret, as `sha256:<hex digest of the key>`. Only the digest is kept in
// memory. The bare number after the key is the older spelling of `streams=N`: files written for it
// stay valid.
import { createHash } from "node:crypto";
import type { CallerLimits } from "../limits/store.js";

export interface CallerKey {
  /** Shown in logs and metrics instead of the key. */
  name: string;
  /** SHA-256 of the key. */
  digest: Buffer;
  /** What this caller may use; a limit left out is no limit. */
  limits: CallerLimits;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HASHED = /^sha256:([0-9a-fA-F]{64})$/;
export const MIN_KEY_LENGTH = 16;

/** The options an entry may set after its key, and what each limits. */
const OPTIONS: Record<keyof CallerLimits, string> = {
  streams: "concurrent streams",
  rpm: "requests per minute",
  tpm: "tokens per minute",
};

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Parses the entries; each problem goes to `report` in words that never contain a key. */
export function parseCallerKeys(text: string, report: (problem: string) => void): CallerKey[] {
  const keys: CallerKey[] = [];
  const entries = text
    .split(/[\n,]/)
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line !== "");
  entries.forEach((entry, i) => {
    const [name = "", key = "", ...rest] = entry.split(/\s+/);
    const where = NAME.test(name) ? `caller "${name}"` : `entry ${i + 1}`;
    if (!NAME.test(name)) {
      report(`${where}: a caller name (letters, digits, . _ -) must come first, then the key`);
      return;
    }
    if (key === "") {
      report(`${where}: no key after the name`);
      return;
    }
    const limits = parseLimits(rest, (what) => report(`${where}: ${what}`));
    if (limits === undefined) return;
    const hashed = HASHED.exec(key);
    if (!hashed && key.startsWith("sha256:")) {
      report(`${where}: a hashed key must be "sha256:" followed by 64 hex digits`);
      return;
    }
    if (!hashed && key.length < MIN_KEY_LENGTH) {
      report(`${where}: the key is shorter than ${MIN_KEY_LENGTH} characters`);
      return;
    }
    keys.push({ name, digest: hashed?.[1] ? Buffer.from(hashed[1], "hex") : sha256(key), limits });
  });
  return keys;
}

/** The fields after the key: an optional bare stream limit, then `name=value` options. */
function parseLimits(fields: string[], report: (problem: string) => void): CallerLimits | undefined {
  const limits: CallerLimits = {};
  for (const [i, field] of fields.entries()) {
    const option = /^([a-z]+)=(.*)$/.exec(field);
    const [name, value] = option ? [option[1] ?? "", option[2] ?? ""] : ["streams", field];
    // Nothing from the entry is quoted back: a field may be part of a key written with a space.
    if ((!option && i > 0) || !(name in OPTIONS)) {
      report(
        `field ${i + 3} is not an option; expected "<name> <key> [<max streams>] [streams=N] [rpm=N] [tpm=N]" (keys cannot contain spaces or commas)`,
      );
      return undefined;
    }
    const limit = name as keyof CallerLimits;
    if (limits[limit] !== undefined) {
      report(`${limit === "streams" ? "the stream limit" : `"${limit}"`} is given twice`);
      return undefined;
    }
    const number = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(number) || number < 1) {
      report(
        limit === "streams"
          ? "the stream limit must be a whole number of at least 1"
          : `${limit} (${OPTIONS[limit]}) must be a whole number of at least 1`,
      );
      return undefined;
    }
    limits[limit] = number;
  }
  return limits;
}
