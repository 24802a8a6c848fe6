// The event log in this process's memory (no REDIS_URL): one array of events per stream, readers
// woken when an event is appended. Bounded per stream (its oldest events dropped past
// maxStreamBytes) and in total (ended streams forgotten oldest first past maxTotalBytes, and new
// streams refused while the open ones alone are over it); an ended stream is forgotten
// retentionMs after its end.
import { randomUUID } from "node:crypto";
import type { ChatResponse } from "../contract/chat.js";
import {
  LogRefused,
  sizeOf,
  type EventLog,
  type LogReader,
  type LogWriter,
  type LoggedEvent,
  type LoggedFailure,
  type ReadResult,
} from "./log.js";

export interface MemoryLogOptions {
  retentionMs: number;
  maxStreamBytes: number;
  maxTotalBytes: number;
}

interface KeptStream {
  readonly owner: string;
  /**
   * The events, oldest first, kept from `events[head]` on: those before were dropped past
   * maxStreamBytes (an index moves rather than the array shifting, so a drop costs nothing).
   */
  readonly events: (LoggedEvent | undefined)[];
  head: number;
  bytes: number;
  next: number;
  ended: boolean;
  /** Readers waiting for the next event. */
  readonly waiting: Set<() => void>;
  expiry: NodeJS.Timeout | undefined;
}

export interface MemoryLog extends EventLog {
  /** Bytes counted toward the bounds now. */
  readonly bytes: number;
  /** A stream under an id given elsewhere (a copy of a Redis stream: tee-log.ts); rejects with LogRefused. */
  createWithId(id: string, owner: string): LogWriter;
  /** Whether the stream is kept here. */
  has(streamId: string): boolean;
}

export function createMemoryLog(options: MemoryLogOptions): MemoryLog {
  const streams = new Map<string, KeptStream>();
  /** Ended streams, in the order they ended: the first to forget when memory is short. */
  const ended = new Set<string>();
  let total = 0;

  function forget(id: string): void {
    const kept = streams.get(id);
    if (!kept) return;
    clearTimeout(kept.expiry);
    streams.delete(id);
    ended.delete(id);
    total -= kept.bytes;
    for (const wake of kept.waiting) wake();
  }

  /** Ended streams go, oldest first, until the total is within bounds (open ones never do). */
  function makeRoom(): void {
    for (const id of ended) {
      if (total <= options.maxTotalBytes) return;
      forget(id);
    }
  }

  function add(kept: KeptStream, message: ChatResponse, failure?: LoggedFailure): number {
    const size = sizeOf(message);
    const sequence = kept.next++;
    kept.events.push({ sequence, message, failure });
    kept.bytes += size;
    total += size;
    // The stream's own bound: its oldest events go (a reader still before them is told so), never
    // the last one.
    while (kept.bytes > options.maxStreamBytes && kept.events.length - kept.head > 1) {
      const dropped = sizeOf(kept.events[kept.head]!.message);
      kept.events[kept.head++] = undefined;
      kept.bytes -= dropped;
      total -= dropped;
    }
    if (kept.head > 1024 && kept.head * 2 > kept.events.length) {
      kept.events.splice(0, kept.head);
      kept.head = 0;
    }
    if (total > options.maxTotalBytes) makeRoom();
    const woken = [...kept.waiting];
    kept.waiting.clear();
    for (const wake of woken) wake();
    return sequence;
  }

  function readerOf(id: string): LogReader {
    return {
      read(after, waitMs, signal) {
        const now = readNow(id, after);
        if (now) return Promise.resolve(now);
        const kept = streams.get(id)!;
        return new Promise<ReadResult>((resolve, reject) => {
          const done = () => {
            clearTimeout(timer);
            kept.waiting.delete(done);
            signal.removeEventListener("abort", done);
            if (signal.aborted) reject(signal.reason as Error);
            else resolve(readNow(id, after) ?? { kind: "idle" });
          };
          const timer = setTimeout(done, waitMs);
          kept.waiting.add(done);
          signal.addEventListener("abort", done);
        });
      },
      close: () => undefined,
    };
  }

  /** What a read after `after` gets now, or undefined when it must wait. */
  function readNow(id: string, after: number): ReadResult | undefined {
    const kept = streams.get(id);
    if (!kept) return { kind: "gone" };
    const oldest = kept.events[kept.head]?.sequence ?? kept.next;
    if (after + 1 < oldest) return { kind: "trimmed", oldest };
    const from = kept.head + after + 1 - oldest;
    if (from < kept.events.length) {
      return { kind: "events", events: kept.events.slice(from) as LoggedEvent[], ended: kept.ended };
    }
    if (kept.ended) return { kind: "events", events: [], ended: true };
    return undefined;
  }

  function createWithId(id: string, owner: string): LogWriter {
    if (total > options.maxTotalBytes) makeRoom();
    if (total > options.maxTotalBytes) {
      throw new LogRefused("full", "too many resumable streams kept now; retry later");
    }
    const kept: KeptStream = {
      owner,
      events: [],
      head: 0,
      bytes: 0,
      next: 1,
      ended: false,
      waiting: new Set(),
      expiry: undefined,
    };
    streams.set(id, kept);
    const writer: LogWriter = {
      streamId: id,
      append: (message) => (kept.ended ? 0 : add(kept, message)),
      end(message, failure) {
        if (kept.ended) return 0;
        kept.ended = true;
        const sequence = add(kept, message, failure);
        // Forgotten whole after the window (unref'd: a timer must not keep the process up).
        if (streams.has(id)) {
          ended.add(id);
          kept.expiry = setTimeout(() => forget(id), options.retentionMs).unref();
        }
        return sequence;
      },
    };
    return writer;
  }

  return {
    kind: "memory",
    get bytes() {
      return total;
    },
    async create(owner, _onBroken, chosen) {
      return createWithId(chosen ?? randomUUID(), owner);
    },
    createWithId,
    has: (streamId) => streams.has(streamId),
    reader: (streamId) => readerOf(streamId),
    async open(streamId, owner) {
      const kept = streams.get(streamId);
      if (!kept || kept.owner !== owner) return undefined;
      return readerOf(streamId);
    },
    // One process: every generation and every reader is here.
    cancelElsewhere: async () => undefined,
    onCancel: () => undefined,
    attachedElsewhere: async () => false,
    async close() {
      for (const id of [...streams.keys()]) forget(id);
    },
  };
}
