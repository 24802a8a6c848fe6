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
  // Stored responses (the OpenAI API's `POST /v1/responses` with `store`): each response's own input
  // and output are kept in its row, not as turns of a conversation, because responses chained by
  // `previous_response_id` form a tree (two responses may continue the same one), which a
  // conversation's single line of turns cannot hold. A response made on a conversation also has its
  // turns in that conversation (as Chat's would be). No foreign keys: a response outlives the
  // conversation it was made on, and the response it continued, as OpenAI's do.
  "0002_responses": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("responses")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("owner", "text", (c) => c.notNull())
        .addColumn("conversation_id", "text")
        .addColumn("previous_response_id", "text")
        // JSON: the response's own input turns (instructions not among them) and its output turns.
        .addColumn("input", "text", (c) => c.notNull())
        .addColumn("output", "text", (c) => c.notNull())
        // JSON: the `response` object as the create returned it.
        .addColumn("response", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
    },
  },
  // A user turn's parts (text and images) as JSON, when it had any: before, only its text was kept.
  // Turns stored before this have none and are sent again as their text, as they were.
  "0003_turn_parts": {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable("turns").addColumn("parts", "text").execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
