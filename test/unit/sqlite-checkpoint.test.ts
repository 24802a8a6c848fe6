// SQLite's WAL is checkpointed by a worker thread, never inside a commit on the event loop (where a
// checkpoint's fsyncs held every stream for up to ~20 ms): the service's own connection has
// automatic checkpoints off, and the WAL still stops growing while the store keeps writing.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Kysely, sql } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { nodeSqliteDialect } from "../../src/conversations/sqlite.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe("the SQLite store's checkpoints", () => {
  it("run off the event loop, and keep the WAL from growing with what is written", { timeout: 20_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sqlite-checkpoint-"));
    dirs.push(dir);
    const path = join(dir, "store.db");
    const db = new Kysely<{ t: { id: number; body: string } }>({ dialect: nodeSqliteDialect(path) });
    try {
      await sql`CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)`.execute(db);
      // The connection commits run on: SQLite never checkpoints inside one of its commits.
      const { rows } = await sql<{ wal_autocheckpoint: number }>`PRAGMA wal_autocheckpoint`.execute(db);
      expect(rows[0]?.wal_autocheckpoint).toBe(0);

      // 12 batches of 250 8 KB rows, 400 ms apart; the checkpointer runs every second. Unchecked,
      // the WAL would hold every batch; checkpointed, it is rewound and holds the last few.
      const body = "x".repeat(8_000);
      const sizes: number[] = [];
      for (let batch = 0; batch < 12; batch++) {
        for (let i = 0; i < 250; i++)
          await db
            .insertInto("t")
            .values({ id: batch * 250 + i, body })
            .execute();
        sizes.push(statSync(`${path}-wal`).size);
        await new Promise((resolve) => setTimeout(resolve, 400));
      }
      const batch = sizes[0]!;
      expect(Math.max(...sizes), `WAL after each batch: ${sizes.join(", ")}`).toBeLessThan(6 * batch);
      const { count } = await db.selectFrom("t").select(db.fn.countAll<number>().as("count")).executeTakeFirstOrThrow();
      expect(Number(count)).toBe(3_000);
    } finally {
      await db.destroy();
    }
  });
});
