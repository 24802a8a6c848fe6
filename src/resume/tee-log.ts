// With Redis, the generating replica keeps a copy of each of its streams in its own memory too:
// the readers on that replica (the call that started the stream, a resume that lands there) read
// the copy, with no round trip and no Redis connection of their own, and readers on other replicas
// read Redis. Both number the events alike (one writer appends to both, in order). A copy the
// memory bounds refuse or forget leaves the stream to Redis alone.
import { LogRefused, type EventLog, type LogWriter } from "./log.js";
import type { MemoryLog } from "./memory-log.js";

export function teeLog(local: MemoryLog, shared: EventLog): EventLog {
  return {
    kind: shared.kind,
    async create(owner, onBroken, id) {
      const remote = await shared.create(owner, onBroken, id);
      let copy: LogWriter;
      try {
        copy = local.createWithId(remote.streamId, owner);
      } catch (error) {
        if (error instanceof LogRefused) return remote;
        throw error;
      }
      return {
        streamId: remote.streamId,
        append(message) {
          copy.append(message);
          return remote.append(message);
        },
        end(message, failure) {
          copy.end(message, failure);
          return remote.end(message, failure);
        },
      };
    },
    reader: (streamId) => (local.has(streamId) ? local.reader(streamId) : shared.reader(streamId)),
    async open(streamId, owner) {
      return (await local.open(streamId, owner)) ?? shared.open(streamId, owner);
    },
    cancelElsewhere: (streamId) => shared.cancelElsewhere(streamId),
    onCancel: (listener) => shared.onCancel(listener),
    attachedElsewhere: (streamId) => shared.attachedElsewhere(streamId),
    async close() {
      await Promise.all([local.close(), shared.close()]);
    },
  };
}
