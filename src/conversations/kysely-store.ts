// The conversation store on a SQL database through Kysely: SQLite (node:sqlite, a file under
// DATA_DIR) or PostgreSQL (`pg`, DATABASE_URL), the same queries for both. Every value is a bound
// parameter; no SQL is built from strings.
import { Kysely, Migrator, PostgresDialect, type Dialect, type Selectable, type Transaction } from "kysely";
import type { UpstreamContentPart, UpstreamToolCall } from "../upstream/request.js";
import type { UpstreamUsage } from "../upstream/events.js";
// Time-ordered (UUIDv7, RFC 9562; monotonic within a millisecond), so "newest first" is a strict order.
import { v7 as uuidv7 } from "uuid";
import { migrationProvider } from "./migrations.js";
import { nodeSqliteDialect } from "./sqlite.js";
import {
  INTERRUPTED,
  STREAMING,
  type BeginOutcome,
  type Conversation,
  type ConversationStore,
  type EditOutcome,
  type StoredResponse,
  type NewTurn,
  type PageCursor,
  type Turn,
  type TurnRole,
} from "./store.js";

interface Tables {
  conversations: {
    id: string;
    owner: string;
    title: string;
    system_prompt: string;
    metadata: string | null;
    created_at: string;
    updated_at: string;
  };
  turns: {
    conversation_id: string;
    seq: number;
    role: string;
    content: string;
    /** Migration 0002: a user turn's parts as JSON. */
    parts: string | null;
    reasoning: string | null;
    tool_calls: string | null;
    tool_call_id: string | null;
    model: string | null;
    finish_reason: string | null;
    usage: string | null;
    incomplete_reason: string | null;
    created_at: string;
  };
  conversation_leases: { conversation_id: string; holder: string; expires_at: number };
  responses: {
    id: string;
    owner: string;
    conversation_id: string | null;
    previous_response_id: string | null;
    input: string;
    output: string;
    response: string;
    created_at: string;
  };
}

export type DatabaseTarget = { kind: "sqlite"; path: string } | { kind: "postgres"; url: string };

/** The PostgreSQL pool; `pg` is loaded only when there is a PostgreSQL to talk to. */
async function postgresPool(url: string) {
  const pool = new (await import("pg")).default.Pool({
    connectionString: url,
    max: 10,
    // A database that does not answer fails the request that needs it soon, not after the OS's
    // TCP timeout: the caller gets UNAVAILABLE and can retry.
    connectionTimeoutMillis: 2_000,
  });
  // An idle connection the server drops (a restart, a failover) is reported on the pool; unheard,
  // that event would end the process. The next query on it fails and reconnects by itself.
  pool.on("error", () => undefined);
  return pool;
}

/** Opens the database and brings its schema up to date (the migrations not yet run, in order). */
export async function openConversationStore(target: DatabaseTarget): Promise<ConversationStore> {
  const dialect: Dialect =
    target.kind === "sqlite"
      ? nodeSqliteDialect(target.path)
      : new PostgresDialect({ pool: await postgresPool(target.url) });
  const db = new Kysely<Tables>({ dialect });
  const migrator = new Migrator({ db, provider: migrationProvider });
  let { error, results } = await migrator.migrateToLatest();
  // Kysely takes no lock on SQLite: processes starting together on one file can collide, and the
  // one that lost finds the migrations done when it tries again.
  if (error && target.kind === "sqlite") ({ error, results } = await migrator.migrateToLatest());
  if (error) {
    await db.destroy();
    const failed = results?.find((r) => r.status === "Error")?.migrationName;
    throw new Error(`conversation store: migration ${failed ?? "(none)"} failed: ${String(error)}`, { cause: error });
  }
  return new KyselyConversationStore(db, target.kind);
}

class KyselyConversationStore implements ConversationStore {
  constructor(
    private readonly db: Kysely<Tables>,
    readonly kind: "sqlite" | "postgres",
  ) {}

  async create(input: {
    owner: string;
    title: string;
    systemPrompt: string;
    metadata: Record<string, unknown> | undefined;
    turns?: NewTurn[];
  }) {
    const now = new Date().toISOString();
    const row = {
      id: uuidv7(),
      owner: input.owner,
      title: input.title,
      system_prompt: input.systemPrompt,
      metadata: input.metadata === undefined ? null : JSON.stringify(input.metadata),
      created_at: now,
      updated_at: now,
    };
    await this.db.transaction().execute(async (tx) => {
      await tx.insertInto("conversations").values(row).execute();
      await appendTurns(tx, row.id, 1, input.turns ?? []);
    });
    return toConversation(row);
  }

  async setMetadata(owner: string, id: string, metadata: Record<string, unknown>) {
    const row = await this.db
      .updateTable("conversations")
      .set({ metadata: JSON.stringify(metadata), updated_at: new Date().toISOString() })
      .where("id", "=", id)
      .where("owner", "=", owner)
      .returningAll()
      .executeTakeFirst();
    return row && toConversation(row);
  }

  async append(owner: string, id: string, turns: NewTurn[]): Promise<EditOutcome<Turn[]>> {
    return this.db.transaction().execute(async (tx) => {
      const refused = await editRefusal(tx, owner, id);
      if (refused) return refused;
      const first = nextSeq(await turnsOf(tx, id));
      await appendTurns(tx, id, first, turns);
      const appended = await tx
        .selectFrom("turns")
        .selectAll()
        .where("conversation_id", "=", id)
        .where("seq", ">=", first)
        .orderBy("seq")
        .execute();
      return { ok: true, value: appended.map(toTurn) } as const;
    });
  }

  async editTurn(
    owner: string,
    id: string,
    seq: number,
    edit: (turn: Turn) => NewTurn | undefined,
  ): Promise<EditOutcome<boolean>> {
    return this.db.transaction().execute(async (tx) => {
      const refused = await editRefusal(tx, owner, id);
      if (refused) return refused;
      const row = await tx
        .selectFrom("turns")
        .selectAll()
        .where("conversation_id", "=", id)
        .where("seq", "=", seq)
        .executeTakeFirst();
      if (!row) return { ok: true, value: false } as const;
      const edited = edit(toTurn(row));
      if (edited) await writeTurn(tx, id, seq, edited);
      else await tx.deleteFrom("turns").where("conversation_id", "=", id).where("seq", "=", seq).execute();
      return { ok: true, value: true } as const;
    });
  }

  async saveResponse(response: StoredResponse) {
    await this.db
      .insertInto("responses")
      .values({
        id: response.id,
        owner: response.owner,
        conversation_id: response.conversationId ?? null,
        previous_response_id: response.previousResponseId ?? null,
        input: JSON.stringify(response.input),
        output: JSON.stringify(response.output),
        response: JSON.stringify(response.response),
        created_at: response.createdAt.toISOString(),
      })
      .execute();
  }

  async updateResponse(owner: string, id: string, ended: Pick<StoredResponse, "output" | "response">) {
    const result = await this.db
      .updateTable("responses")
      .set({ output: JSON.stringify(ended.output), response: JSON.stringify(ended.response) })
      .where("id", "=", id)
      .where("owner", "=", owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async getResponse(owner: string, id: string) {
    const row = await this.db
      .selectFrom("responses")
      .selectAll()
      .where("id", "=", id)
      .where("owner", "=", owner)
      .executeTakeFirst();
    return row && toStoredResponse(row);
  }

  async deleteResponse(owner: string, id: string) {
    const result = await this.db
      .deleteFrom("responses")
      .where("id", "=", id)
      .where("owner", "=", owner)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async responseChain(owner: string, id: string, minTurns: number) {
    return this.db.transaction().execute(async (tx) => {
      const links: NewTurn[][] = [];
      let count = 0;
      let next: string | null = id;
      const seen = new Set<string>();
      // One row per step back: a chain is walked only as far as the history it gives can reach.
      // (A response names only one made before it, so a chain has no loop; `seen` makes sure.)
      while (next !== null && count < minTurns && !seen.has(next)) {
        seen.add(next);
        const row = await tx
          .selectFrom("responses")
          .select(["input", "output", "previous_response_id"])
          .where("id", "=", next)
          .where("owner", "=", owner)
          .executeTakeFirst();
        if (!row) break;
        const turns = [...(JSON.parse(row.input) as NewTurn[]), ...(JSON.parse(row.output) as NewTurn[])];
        links.push(turns);
        count += turns.length;
        next = row.previous_response_id;
      }
      if (links.length === 0) return undefined;
      return links.reverse().flat();
    });
  }

  /** Ties of created_at (the same millisecond) are ordered by id, which is time-ordered (ids.ts). */
  async list(owner: string, limit: number, after?: PageCursor) {
    let query = this.db.selectFrom("conversations").selectAll().where("owner", "=", owner);
    if (after) {
      const at = after.createdAt.toISOString();
      query = query.where((eb) =>
        eb.or([eb("created_at", "<", at), eb.and([eb("created_at", "=", at), eb("id", "<", after.id)])]),
      );
    }
    const rows = await query.orderBy("created_at", "desc").orderBy("id", "desc").limit(limit).execute();
    return rows.map(toConversation);
  }

  async get(owner: string, id: string) {
    return this.db.transaction().execute(async (tx) => {
      const row = await ownedRow(tx, owner, id);
      if (!row) return undefined;
      const turns = await turnsOf(tx, id);
      // A reply still marked as streaming whose lease is gone or expired: its process died mid-stream.
      if (turns.some((t) => t.incompleteReason === STREAMING) && !(await liveLease(tx, id))) {
        for (const t of turns) if (t.incompleteReason === STREAMING) t.incompleteReason = INTERRUPTED;
      }
      return { conversation: toConversation(row), turns };
    });
  }

  async rename(owner: string, id: string, title: string) {
    const row = await this.db
      .updateTable("conversations")
      .set({ title, updated_at: new Date().toISOString() })
      .where("id", "=", id)
      .where("owner", "=", owner)
      .returningAll()
      .executeTakeFirst();
    return row && toConversation(row);
  }

  async delete(owner: string, id: string) {
    // The turns and the lease go with it (ON DELETE CASCADE).
    const result = await this.db
      .deleteFrom("conversations")
      .where("id", "=", id)
      .where("owner", "=", owner)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async begin(owner: string, id: string, holder: string, leaseMs: number, turns: NewTurn[]): Promise<BeginOutcome> {
    return this.db.transaction().execute(async (tx) => {
      const row = await ownedRow(tx, owner, id);
      if (!row) return { ok: false, why: "not_found" } as const;
      const now = Date.now();
      const expired = await tx
        .deleteFrom("conversation_leases")
        .where("conversation_id", "=", id)
        .where("expires_at", "<", now)
        .executeTakeFirst();
      // The expired holder died mid-stream (a live one renews its lease with each flush): what it
      // flushed of its reply is all there will be.
      if (Number(expired.numDeletedRows) > 0) {
        await tx
          .updateTable("turns")
          .set({ incomplete_reason: INTERRUPTED })
          .where("conversation_id", "=", id)
          .where("incomplete_reason", "=", STREAMING)
          .execute();
      }
      const taken = await tx
        .insertInto("conversation_leases")
        .values({ conversation_id: id, holder, expires_at: now + leaseMs })
        .onConflict((oc) => oc.column("conversation_id").doNothing())
        .executeTakeFirst();
      if (Number(taken.numInsertedOrUpdatedRows ?? 0) === 0) return { ok: false, why: "busy" } as const;
      const history = await turnsOf(tx, id);
      const first = nextSeq(history);
      await appendTurns(tx, id, first, turns);
      return { ok: true, conversation: toConversation(row), history, replySeq: first + turns.length } as const;
    });
  }

  async flush(id: string, holder: string, leaseMs: number, seq: number, reply: NewTurn | undefined) {
    return this.db.transaction().execute(async (tx) => {
      const renewed = await tx
        .updateTable("conversation_leases")
        .set({ expires_at: Date.now() + leaseMs })
        .where("conversation_id", "=", id)
        .where("holder", "=", holder)
        .executeTakeFirst();
      // No lease, no write: the conversation was deleted, or another stream has it.
      if (Number(renewed.numUpdatedRows) === 0) return false;
      if (reply) await writeTurn(tx, id, seq, reply);
      return true;
    });
  }

  async end(id: string, holder: string, seq: number, reply: NewTurn | undefined) {
    await this.db.transaction().execute(async (tx) => {
      if (reply) {
        const held = await tx
          .selectFrom("conversation_leases")
          .select("holder")
          .where("conversation_id", "=", id)
          .where("holder", "=", holder)
          .executeTakeFirst();
        if (held) {
          await writeTurn(tx, id, seq, reply);
        } else {
          const last = await tx
            .selectFrom("turns")
            .select((eb) => eb.fn.max("seq").as("seq"))
            .where("conversation_id", "=", id)
            .executeTakeFirst();
          // The conversation may have been deleted meanwhile: then there is nothing to append to.
          const exists = await tx.selectFrom("conversations").select("id").where("id", "=", id).executeTakeFirst();
          if (exists) await appendTurns(tx, id, Number(last?.seq ?? 0) + 1, [reply]);
        }
      }
      await tx
        .deleteFrom("conversation_leases")
        .where("conversation_id", "=", id)
        .where("holder", "=", holder)
        .execute();
    });
  }

  close() {
    return this.db.destroy();
  }
}

/** Why turns may not be changed now: no such conversation of the owner's, or a stream holds it. */
async function editRefusal(tx: Transaction<Tables>, owner: string, id: string) {
  if (!(await ownedRow(tx, owner, id))) return { ok: false, why: "not_found" } as const;
  if (await liveLease(tx, id)) return { ok: false, why: "busy" } as const;
  return undefined;
}

function toStoredResponse(row: Selectable<Tables["responses"]>): StoredResponse {
  return {
    id: row.id,
    owner: row.owner,
    conversationId: row.conversation_id ?? undefined,
    previousResponseId: row.previous_response_id ?? undefined,
    input: JSON.parse(row.input) as NewTurn[],
    output: JSON.parse(row.output) as NewTurn[],
    response: JSON.parse(row.response) as Record<string, unknown>,
    createdAt: new Date(row.created_at),
  };
}

function ownedRow(tx: Transaction<Tables>, owner: string, id: string) {
  return tx.selectFrom("conversations").selectAll().where("id", "=", id).where("owner", "=", owner).executeTakeFirst();
}

async function turnsOf(tx: Transaction<Tables>, id: string): Promise<Turn[]> {
  const rows = await tx.selectFrom("turns").selectAll().where("conversation_id", "=", id).orderBy("seq").execute();
  return rows.map(toTurn);
}

function nextSeq(turns: Turn[]): number {
  return (turns.at(-1)?.seq ?? 0) + 1;
}

function liveLease(tx: Transaction<Tables>, id: string) {
  return tx
    .selectFrom("conversation_leases")
    .select("holder")
    .where("conversation_id", "=", id)
    .where("expires_at", ">=", Date.now())
    .executeTakeFirst();
}

function turnRow(id: string, seq: number, turn: NewTurn, now: string) {
  return {
    conversation_id: id,
    seq,
    role: turn.role,
    content: turn.content,
    parts: turn.parts?.length ? JSON.stringify(turn.parts) : null,
    reasoning: turn.reasoning || null,
    tool_calls: turn.toolCalls?.length ? JSON.stringify(turn.toolCalls) : null,
    tool_call_id: turn.toolCallId || null,
    model: turn.model || null,
    finish_reason: turn.finishReason || null,
    usage: turn.usage ? JSON.stringify(turn.usage) : null,
    incomplete_reason: turn.incompleteReason || null,
    created_at: now,
  };
}

async function appendTurns(tx: Transaction<Tables>, id: string, firstSeq: number, turns: NewTurn[]): Promise<void> {
  if (turns.length === 0) return;
  const now = new Date().toISOString();
  await tx
    .insertInto("turns")
    .values(turns.map((turn, i) => turnRow(id, firstSeq + i, turn, now)))
    .execute();
  await tx.updateTable("conversations").set({ updated_at: now }).where("id", "=", id).execute();
}

/** The turn at `seq`, inserted or replacing the one there (a reply's earlier flush). */
async function writeTurn(tx: Transaction<Tables>, id: string, seq: number, turn: NewTurn): Promise<void> {
  const now = new Date().toISOString();
  const { conversation_id: _, seq: __, created_at: ___, ...columns } = turnRow(id, seq, turn, now);
  await tx
    .insertInto("turns")
    .values(turnRow(id, seq, turn, now))
    .onConflict((oc) => oc.columns(["conversation_id", "seq"]).doUpdateSet(columns))
    .execute();
  await tx.updateTable("conversations").set({ updated_at: now }).where("id", "=", id).execute();
}

function toConversation(row: Selectable<Tables["conversations"]>): Conversation {
  return {
    id: row.id,
    owner: row.owner,
    title: row.title,
    systemPrompt: row.system_prompt,
    metadata: row.metadata === null ? undefined : (JSON.parse(row.metadata) as Record<string, unknown>),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function toTurn(row: Selectable<Tables["turns"]>): Turn {
  return {
    seq: Number(row.seq),
    role: row.role as TurnRole,
    content: row.content,
    ...(row.parts !== null && { parts: JSON.parse(row.parts) as UpstreamContentPart[] }),
    ...(row.reasoning !== null && { reasoning: row.reasoning }),
    ...(row.tool_calls !== null && { toolCalls: JSON.parse(row.tool_calls) as UpstreamToolCall[] }),
    ...(row.tool_call_id !== null && { toolCallId: row.tool_call_id }),
    ...(row.model !== null && { model: row.model }),
    ...(row.finish_reason !== null && { finishReason: row.finish_reason }),
    ...(row.usage !== null && { usage: JSON.parse(row.usage) as UpstreamUsage }),
    ...(row.incomplete_reason !== null && { incompleteReason: row.incomplete_reason }),
    createdAt: new Date(row.created_at),
  };
}
