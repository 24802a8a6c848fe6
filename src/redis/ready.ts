// What the two Redis users (limits/redis-store.ts, resume/redis-log.ts) share about an ioredis
// connection. Stands alone: ioredis only.
import type { Redis } from "ioredis";

/** Resolves true once `redis` is connected, or false after `withinMs` without. */
export function waitUntilReady(redis: Redis, withinMs: number): Promise<boolean> {
  if (redis.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), withinMs);
    redis.once("ready", onReady);
  });
}
