// Caller keys as configured: `<name> <key> [<max concurrent streams>]` entries, separated by commas
// or new lines (`#` starts a comment). A key is given either as itself or, so the file holds no
// usable secret, as `sha256:<hex digest of the key>`. Only the digest is kept in memory.
import { createHash } from "node:crypto";

export interface CallerKey {
  /** Shown in logs and metrics instead of the key. */
  name: string;
  /** SHA-256 of the key. */
  digest: Buffer;
  /** Streams this caller may have open at once; unlimited when absent. */
  maxStreams: number | undefined;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HASHED = /^sha256:([0-9a-fA-F]{64})$/;
export const MIN_KEY_LENGTH = 16;

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
    const [name = "", key = "", limit, ...extra] = entry.split(/\s+/);
    const where = NAME.test(name) ? `caller "${name}"` : `entry ${i + 1}`;
    if (!NAME.test(name)) {
      report(`${where}: a caller name (letters, digits, . _ -) must come first, then the key`);
      return;
    }
    if (key === "") {
      report(`${where}: no key after the name`);
      return;
    }
    if (extra.length > 0) {
      report(`${where}: too many fields; expected "<name> <key> [<max streams>]" (keys cannot contain spaces or commas)`);
      return;
    }
    let maxStreams: number | undefined;
    if (limit !== undefined) {
      maxStreams = Number(limit);
      if (!Number.isInteger(maxStreams) || maxStreams < 1) {
        report(`${where}: the stream limit must be a whole number of at least 1`);
        return;
      }
    }
    const hashed = HASHED.exec(key);
    if (!hashed && key.startsWith("sha256:")) {
      report(`${where}: a hashed key must be "sha256:" followed by 64 hex digits`);
      return;
    }
    if (!hashed && key.length < MIN_KEY_LENGTH) {
      report(`${where}: the key is shorter than ${MIN_KEY_LENGTH} characters`);
      return;
    }
    keys.push({ name, digest: hashed?.[1] ? Buffer.from(hashed[1], "hex") : sha256(key), maxStreams });
  });
  return keys;
}
