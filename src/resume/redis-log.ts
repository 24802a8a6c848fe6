// The event log in Redis (REDIS_URL set), so a resume that lands on another replica than the one
// generating reads the same events. Per stream, under one hash tag (one Redis Cluster slot):
//   ...{id}:owner   the caller key that started it (GET; a resume by any other key is NOT_FOUND)
//   ...{id}:events  a Redis Stream, one entry per event, its entry id `0-<sequence>` so a reader asks
//                   for "after N" directly; field `m` the ChatResponse's protobuf bytes, `f` an error
//                   event's failure (JSON), `e` on the last event. XADD MAXLEN ~ maxEvents trims it.
//   ...{id}:lease   set while the generating replica lives, renewed every third of leaseMs: a reader
//                   that finds no new event, no end, and no lease says "the generation was lost".
//   ...{id}:reader  set while a reader on any replica is attached, so the generating replica's grace
//                   timer does not stop a stream someone reads through another replica.
// Every key expires: retentionMs + leaseMs while generating (renewed with the lease), retentionMs
// after the end. Cancels travel on one pub/sub channel every replica subscribes to.
//
// Appends are sent without waiting (ioredis keeps their order on the connection); the first that
// fails breaks the writer (nothing more is sent, so a reader never sees a gap: it sees the lease
// expire and says the generation was lost) and tells the generation to stop.
//
// Each waiting reader holds a connection of its own for XREAD BLOCK (a blocked connection serves
// nothing else): one connection per reader attached and waiting (docs/resuming.md).
import { Redis } from "ioredis";
import { waitUntilReady } from "../redis/ready.js";
import { randomUUID } from "node:crypto";
import { ChatResponse } from "../contract/chat.js";
import {
  LogRefused,
  type EventLog,
  type LogReader,
  type LogWriter,
  type LoggedEvent,
  type LoggedFailure,
  type ReadResult,
} from "./log.js";

export interface RedisLogOptions {
  url: string;
  retentionMs: number;
  /** Events kept per stream (the Redis Stream's MAXLEN, approximate). */
  maxEvents: number;
  /** How long the generating replica's lease lives unrenewed: a dead replica is noticed within it. */
  leaseMs: number;
  /** Commands wait at most this long for a connection (a Redis that is down fails at once). */
  timeoutMs: number;
  onBackgroundError: (operation: "connection" | "append" | "renew" | "cancel", error: Error) => void;
}

const PREFIX = "chat-gateway:resume:";
const CANCEL_CHANNEL = `${PREFIX}cancel`;
/** Events one read returns at most; a reader further behind asks again at once. */
const READ_COUNT = 1024;

const keysOf = (id: string) => {
  const base = `${PREFIX}{${id}}:`;
  return { owner: `${base}owner`, events: `${base}events`, lease: `${base}lease`, reader: `${base}reader` };
};

export function createRedisLog(options: RedisLogOptions): EventLog & { ready(withinMs: number): Promise<boolean> } {
  const redis = connect(options, "chat-gateway-resume");
  let subscriber: Redis | undefined;
  const cancelListeners: ((streamId: string) => void)[] = [];
  const liveMs = options.retentionMs + options.leaseMs;

  function writerOf(id: string, onBroken: (error: Error) => void): LogWriter {
    const k = keysOf(id);
    let next = 1;
    let broken = false;
    let ended = false;
    const fail = (error: Error) => {
      if (broken) return;
      broken = true;
      clearInterval(renewal);
      options.onBackgroundError("append", error);
      onBroken(error);
    };
    const renewal = setInterval(
      () => {
        redis
          .multi()
          .pexpire(k.lease, options.leaseMs)
          .pexpire(k.owner, liveMs)
          .pexpire(k.events, liveMs)
          .exec()
          .catch((error: Error) => options.onBackgroundError("renew", error));
      },
      Math.max(100, Math.floor(options.leaseMs / 3)),
    ).unref();
    const add = (message: ChatResponse, failure: LoggedFailure | undefined, last: boolean): number => {
      if (broken || ended) return 0;
      const sequence = next++;
      const fields: (string | Buffer)[] = ["m", Buffer.from(ChatResponse.encode(message).finish())];
      if (failure) fields.push("f", JSON.stringify(failure));
      if (last) fields.push("e", "1");
      redis
        .xadd(k.events, "MAXLEN", "~", options.maxEvents, `0-${sequence}`, ...fields)
        .catch((error: Error) => fail(error));
      return sequence;
    };
    return {
      streamId: id,
      append: (message) => add(message, undefined, false),
      end(message, failure) {
        const sequence = add(message, failure, true);
        ended = true;
        clearInterval(renewal);
        // Kept for the retention window from now; the lease is left to expire (a reader that saw
        // the end never asks for it).
        if (!broken) {
          redis
            .multi()
            .pexpire(k.owner, options.retentionMs)
            .pexpire(k.events, options.retentionMs)
            .exec()
            .catch((error: Error) => options.onBackgroundError("renew", error));
        }
        return sequence;
      },
    };
  }

  function readerOf(id: string): LogReader {
    const k = keysOf(id);
    let blocking: Redis | undefined;
    return {
      async read(after, waitMs, signal) {
        const now = await readNow(after, waitMs);
        if (now) return now;
        // Nothing yet: wait on the reader's own connection (XREAD BLOCK holds it), opened once.
        blocking ??= connect(options, "chat-gateway-resume-reader", true);
        const waiting = blocking;
        const onAbort = () => waiting.disconnect();
        signal.addEventListener("abort", onAbort);
        try {
          await waiting.xreadBuffer("COUNT", 1, "BLOCK", waitMs, "STREAMS", k.events, `0-${after}`);
        } catch (error) {
          if (signal.aborted) throw signal.reason;
          throw error;
        } finally {
          signal.removeEventListener("abort", onAbort);
        }
        if (signal.aborted) throw signal.reason;
        return (await readNow(after, waitMs)) ?? { kind: "idle" };
      },
      close() {
        blocking?.disconnect();
      },
    };

    /** What a read after `after` gets now, or undefined when it must wait. */
    async function readNow(after: number, waitMs: number): Promise<ReadResult | undefined> {
      // One transaction: a consistent view (an end seen by the last query but not the first would
      // end the reader before the events between).
      const replies = await redis
        .multi()
        .xrangeBuffer(k.events, `(0-${after}`, "+", "COUNT", READ_COUNT)
        .xrangeBuffer(k.events, "-", "+", "COUNT", 1)
        .xrevrangeBuffer(k.events, "+", "-", "COUNT", 1)
        .exists(k.owner)
        .exists(k.lease)
        // This reader holds the grace of a generation on another replica for a while.
        .set(k.reader, "1", "PX", waitMs * 2 + 1000)
        .exec();
      if (!replies) throw new Error("resume read: transaction discarded");
      for (const [error] of replies) if (error) throw error;
      const entries = replies[0]![1] as [Buffer, Buffer[]][];
      const first = replies[1]![1] as [Buffer, Buffer[]][];
      const newest = (replies[2]![1] as [Buffer, Buffer[]][])[0];
      const ownerKept = replies[3]![1] === 1;
      const leased = replies[4]![1] === 1;
      if (!ownerKept) return { kind: "gone" };
      const oldest = first[0] ? sequenceOf(first[0][0]) : undefined;
      if (oldest !== undefined && after + 1 < oldest) return { kind: "trimmed", oldest };
      if (entries.length > 0) {
        const events = entries.map(([entryId, fields]) => eventOf(entryId, fields));
        const ended = entries.some(([, fields]) => fieldOf(fields, "e") !== undefined);
        return { kind: "events", events, ended };
      }
      // Nothing after `after`: ended if the last kept event is the end (the caller saw it).
      if (newest && fieldOf(newest[1], "e") !== undefined) return { kind: "events", events: [], ended: true };
      if (!leased) return { kind: "lost" };
      return undefined;
    }
  }

  return {
    kind: "redis",
    ready: (withinMs) => waitUntilReady(redis, withinMs),
    async create(owner, onBroken, chosen) {
      const id = chosen ?? randomUUID();
      const k = keysOf(id);
      try {
        await redis.multi().set(k.owner, owner, "PX", liveMs).set(k.lease, "1", "PX", options.leaseMs).exec();
      } catch (error) {
        options.onBackgroundError("connection", error as Error);
        throw new LogRefused("unavailable", "resumable stream store unavailable");
      }
      return writerOf(id, onBroken);
    },
    reader: (streamId) => readerOf(streamId),
    async open(streamId, owner) {
      // Ids are UUIDs: anything else is no stream, without a round trip.
      if (!/^[0-9a-f-]{36}$/.test(streamId)) return undefined;
      const kept = await redis.get(keysOf(streamId).owner);
      return kept === owner ? readerOf(streamId) : undefined;
    },
    async cancelElsewhere(streamId) {
      await redis.publish(CANCEL_CHANNEL, streamId);
    },
    onCancel(listener) {
      cancelListeners.push(listener);
      if (subscriber) return;
      subscriber = connect({ ...options }, "chat-gateway-resume-cancel", true);
      subscriber.on("message", (_channel: string, streamId: string) => {
        for (const l of cancelListeners) l(streamId);
      });
      subscriber.subscribe(CANCEL_CHANNEL).catch((error: Error) => options.onBackgroundError("cancel", error));
    },
    async attachedElsewhere(streamId) {
      return (await redis.exists(keysOf(streamId).reader)) === 1;
    },
    async close() {
      subscriber?.disconnect();
      redis.disconnect();
    },
  };
}

function sequenceOf(entryId: Buffer): number {
  const text = entryId.toString();
  return Number(text.slice(text.indexOf("-") + 1));
}

function fieldOf(fields: Buffer[], name: string): Buffer | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1];
  return undefined;
}

function eventOf(entryId: Buffer, fields: Buffer[]): LoggedEvent {
  const m = fieldOf(fields, "m");
  const f = fieldOf(fields, "f");
  return {
    sequence: sequenceOf(entryId),
    message: m ? ChatResponse.decode(m) : { event: undefined },
    failure: f ? (JSON.parse(f.toString()) as LoggedFailure) : undefined,
  };
}

/**
 * An ioredis connection that fails at once while Redis is unreachable (no offline queue), as the
 * limits store's (src/limits/redis-store.ts). `queued`: commands sent before it is up wait for it
 * (a reader's own connection, the cancel subscriber), failing at the first failed attempt.
 */
function connect(options: RedisLogOptions, name: string, queued = false): Redis {
  const redis = new Redis(options.url, {
    connectTimeout: Math.max(1000, options.timeoutMs),
    enableOfflineQueue: queued,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(100 * times, 1000),
    connectionName: name,
  });
  redis.on("error", (error: Error) => options.onBackgroundError("connection", error));
  return redis;
}
