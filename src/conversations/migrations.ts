// The schema, as versioned migrations Kysely's Migrator runs at start-up (it records each in its own
// table and takes a lock, so replicas starting together run each once). Append new ones; never edit
// a migration that has shipped. Written in Kysely's schema builder, so one text serves SQLite and
// PostgreSQL. Times are ISO 8601 text in UTC (sortable as text in both), JSON is text.
import type { Kysely, Migration, MigrationProvider } from "kysely";

const migrations: Record<string, Migration> = {
  "0001_conversations": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("conversations")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("owner", "text", (c) => c.notNull())
        .addColumn("title", "text", (c) => c.notNull())
        .addColumn("system_prompt", "text", (c) => c.notNull())
        .addColumn("metadata", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      // The list: one owner's, newest first.
      await db.schema
        .createIndex("conversations_owner_created")
        .on("conversations")
        .columns(["owner", "created_at", "id"])
        .execute();
      await db.schema
        .createTable("turns")
        .addColumn("conversation_id", "text", (c) => c.notNull().references("conversations.id").onDelete("cascade"))
        .addColumn("seq", "integer", (c) => c.notNull())
        .addColumn("role", "text", (c) => c.notNull())
        .addColumn("content", "text", (c) => c.notNull())
        .addColumn("reasoning", "text")
        .addColumn("tool_calls", "text")
        .addColumn("tool_call_id", "text")
        .addColumn("model", "text")
        .addColumn("finish_reason", "text")
        .addColumn("usage", "text")
        .addColumn("incomplete_reason", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("turns_pk", ["conversation_id", "seq"])
        .execute();
      // Who is streaming on a conversation now: one row while a Chat stream is open on it, so a
      // second one is refused on every replica; `expires_at` (ms since the epoch) frees it after a
      // replica died mid-stream.
      await db.schema
        .createTable("conversation_leases")
        .addColumn("conversation_id", "text", (c) => c.primaryKey().references("conversations.id").onDelete("cascade"))
        .addColumn("holder", "text", (c) => c.notNull())
        .addColumn("expires_at", "bigint", (c) => c.notNull())
        .execute();
    },
  },
  // A user turn's parts (text and images) as JSON, when it had any: before, only its text was kept.
  // Turns stored before this have none and are sent again as their text, as they were.
  "0002_turn_parts": {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable("turns").addColumn("parts", "text").execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
