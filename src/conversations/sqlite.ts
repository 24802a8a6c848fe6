// Kysely's SQLite dialect over Node's built-in `node:sqlite` (no native addon to build): Kysely's
// dialect takes any database with better-sqlite3's shape, and this is that shape, a few lines.
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { SqliteDialect, type SqliteDatabase } from "kysely";

export function nodeSqliteDialect(path: string): SqliteDialect {
  return new SqliteDialect({ database: async () => openDatabase(path) });
}

function openDatabase(path: string): SqliteDatabase {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  // WAL: readers do not wait for the writer; foreign keys are off by default in SQLite, and the
  // turns' ON DELETE CASCADE needs them; busy_timeout: another process on the same file waits for
  // its lock instead of failing at once. synchronous = NORMAL: in WAL mode a commit is durable
  // against a process crash (SIGKILL, OOM: test/e2e/conversations-kill.test.ts) without an fsync
  // each; only an OS crash or power loss can lose the last commits. FULL's fsync per commit ran on
  // the event loop (node:sqlite is synchronous): 0.84 ms p50 / 39 ms p99 / 177 ms max per commit on
  // this machine under load, against 0.013 / 0.032 / 4 ms, and every stream waited through it.
  db.exec(
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
  );
  return {
    close: () => db.close(),
    prepare(sql) {
      const statement = db.prepare(sql);
      const values = (parameters: ReadonlyArray<unknown>) => parameters as SQLInputValue[];
      return {
        // A statement that returns rows has result columns; an INSERT without RETURNING has none.
        reader: statement.columns().length > 0,
        all: (parameters) => statement.all(...values(parameters)),
        run: (parameters) => statement.run(...values(parameters)),
        iterate: (parameters) => statement.iterate(...values(parameters)),
      };
    },
  };
}
