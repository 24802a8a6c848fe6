// The service's live JS heap, from a V8 heap snapshot: the service runs with
// `HEAP_SNAPSHOT_NODE_ARGS` (a snapshot on SIGUSR2, which collects garbage first, so only live
// objects count) and writes it to bench/results/profiles/ (gitignored), read and removed here.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ROOT } from "./procs.js";

const DIR = join(ROOT, "bench", "results", "profiles");

/** Node flags for a service whose heap `takeHeapSnapshot` reads. */
export function heapSnapshotNodeArgs(): string[] {
  mkdirSync(DIR, { recursive: true });
  return ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${DIR}`];
}

export interface HeapSnapshot {
  /** Bytes of live objects. */
  total: number;
  /** Bytes and count per constructor (`closure <name>` for closures, `(type)` for the rest). */
  byName: Map<string, [bytes: number, count: number]>;
}

export async function takeHeapSnapshot(pid: number): Promise<HeapSnapshot> {
  const before = new Set(readdirSync(DIR));
  process.kill(pid, "SIGUSR2");
  let file: string | undefined;
  // Written in pieces: read once its size stops changing.
  for (let size = -1; ; await sleep(250)) {
    file ??= readdirSync(DIR).find((f) => f.endsWith(".heapsnapshot") && !before.has(f));
    if (!file) continue;
    const now = statSync(join(DIR, file)).size;
    if (now === size && now > 0) break;
    size = now;
  }
  const snap = JSON.parse(readFileSync(join(DIR, file), "utf8")) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  rmSync(join(DIR, file));
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const types = snap.snapshot.meta.node_types[0];
  const byName = new Map<string, [number, number]>();
  let total = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const size = snap.nodes[i + sizeAt]!;
    total += size;
    const name =
      type === "object" || type === "closure"
        ? `${type === "closure" ? "closure " : ""}${snap.strings[snap.nodes[i + nameAt]!]}`
        : `(${type})`;
    const entry = byName.get(name) ?? [0, 0];
    entry[0] += size;
    entry[1]++;
    byName.set(name, entry);
  }
  return { total, byName };
}
