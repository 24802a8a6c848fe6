// The conversation store itself, against both databases it runs on: SQLite (a file in a temporary
// folder) and a real PostgreSQL server started for the test. The same cases for each.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openConversationStore, type DatabaseTarget } from "../../src/conversations/kysely-store.js";
import type { ConversationStore } from "../../src/conversations/store.js";
import { startPostgres, type RunningPostgres } from "../support/postgres.js";

const databases: { name: string; open: () => Promise<{ target: DatabaseTarget; close: () => Promise<void> }> }[] = [
  {
    name: "SQLite",
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), "store-sqlite-"));
      return {
        // A folder that does not exist yet: the store creates it on first start.
        target: { kind: "sqlite", path: join(dir, "data", "conversations.db") },
        close: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "PostgreSQL",
    open: async () => {
      const server: RunningPostgres = await startPostgres();
      return { target: { kind: "postgres", url: server.url }, close: () => server.close() };
    },
  },
];

describe.each(databases)("the conversation store on $name", ({ open }) => {
  let store: ConversationStore;
  let target: DatabaseTarget;
  let closeDatabase: () => Promise<void>;
  beforeAll(async () => {
    ({ target, close: closeDatabase } = await open());
    store = await openConversationStore(target);
  });
  afterAll(async () => {
    await store?.close();
    await closeDatabase?.();
  });

  it("migrates once: a second start on the same database finds the schema as it is", async () => {
    const again = await openConversationStore(target);
    await again.close();
  });

  it("keeps a conversation's turns in order, JSON columns (a user turn's parts too) as they were", async () => {
    const c = await store.create({ owner: "ada", title: "t", systemPrompt: "s", metadata: { tags: ["x"], n: 1 } });
    const parts = [
      { type: "text" as const, text: "hi" },
      { type: "image_url" as const, url: "https://example.com/a.png", detail: "low" as const },
    ];
    const began = await store.begin("ada", c.id, "h1", 60_000, [{ role: "user", content: "hi", parts }]);
    expect(began).toMatchObject({ ok: true, history: [] });
    const usage = { promptTokens: 3, completionTokens: 2, totalTokens: 5, reasoningTokens: 0, cachedPromptTokens: 0 };
    const toolCalls = [{ id: "call_1", name: "f", arguments: '{"a":1}' }];
    await store.end(c.id, "h1", 2, {
      role: "assistant",
      content: "",
      reasoning: "hmm",
      toolCalls,
      usage,
      finishReason: "tool_calls",
      model: "m",
    });
    const got = await store.get("ada", c.id);
    expect(got?.conversation.metadata).toEqual({ tags: ["x"], n: 1 });
    expect(got?.turns.map((t) => [t.seq, t.role])).toEqual([
      [1, "user"],
      [2, "assistant"],
    ]);
    expect(got?.turns[0]).toMatchObject({ content: "hi", parts });
    expect(got?.turns[1]).toMatchObject({ reasoning: "hmm", toolCalls, usage, finishReason: "tool_calls", model: "m" });
    expect(got?.turns[1]?.parts).toBeUndefined();
    expect(await store.get("bob", c.id)).toBeUndefined();
  });

  it("holds a conversation for one stream at a time, and frees it when the stream ends or its lease expires", async () => {
    const c = await store.create({ owner: "ada", title: "", systemPrompt: "", metadata: undefined });
    expect((await store.begin("ada", c.id, "h1", 60_000, [])).ok).toBe(true);
    expect(await store.begin("ada", c.id, "h2", 60_000, [])).toEqual({ ok: false, why: "busy" });
    await store.end(c.id, "h1", 1, undefined);
    // An expired lease (a replica that died mid-stream) no longer holds it.
    expect((await store.begin("ada", c.id, "h2", -1, [])).ok).toBe(true);
    expect((await store.begin("ada", c.id, "h3", 60_000, [])).ok).toBe(true);
    expect(await store.begin("bob", c.id, "h4", 60_000, [])).toEqual({ ok: false, why: "not_found" });
  });

  it("flushes a streaming reply in place, renewing the lease; the end replaces it with the whole reply", async () => {
    const c = await store.create({ owner: "ada", title: "", systemPrompt: "", metadata: undefined });
    const began = await store.begin("ada", c.id, "h1", 60_000, [{ role: "user", content: "hi" }]);
    expect(began).toMatchObject({ ok: true, replySeq: 2 });
    expect(
      await store.flush(c.id, "h1", 60_000, 2, { role: "assistant", content: "Hel", incompleteReason: "streaming" }),
    ).toBe(true);
    expect(
      await store.flush(c.id, "h1", 60_000, 2, { role: "assistant", content: "Hello", incompleteReason: "streaming" }),
    ).toBe(true);
    // Read while it streams: the reply so far, marked as streaming (its lease is live).
    expect((await store.get("ada", c.id))?.turns.map((t) => [t.seq, t.content, t.incompleteReason])).toEqual([
      [1, "hi", undefined],
      [2, "Hello", "streaming"],
    ]);
    // A holder whose lease is gone writes nothing.
    expect(await store.flush(c.id, "other", 60_000, 2, { role: "assistant", content: "x" })).toBe(false);
    await store.end(c.id, "h1", 2, { role: "assistant", content: "Hello there.", finishReason: "stop" });
    expect((await store.get("ada", c.id))?.turns.map((t) => [t.seq, t.content, t.incompleteReason])).toEqual([
      [1, "hi", undefined],
      [2, "Hello there.", undefined],
    ]);
    expect((await store.begin("ada", c.id, "h2", 60_000, [])).ok).toBe(true);
  });

  it("a lease renewed by a flush outlives its first term; one left to expire frees the conversation and marks its reply interrupted", async () => {
    const c = await store.create({ owner: "ada", title: "", systemPrompt: "", metadata: undefined });
    // A lease that has already run out when taken, renewed by the flush: a stream still alive keeps it.
    expect((await store.begin("ada", c.id, "h1", -1, [{ role: "user", content: "hi" }])).ok).toBe(true);
    expect(
      await store.flush(c.id, "h1", 60_000, 2, { role: "assistant", content: "par", incompleteReason: "streaming" }),
    ).toBe(true);
    expect(await store.begin("ada", c.id, "h2", 60_000, [])).toEqual({ ok: false, why: "busy" });
    // Its process killed: the last flush's lease expires (a negative term stands for the time passed).
    expect(await store.flush(c.id, "h1", -1, 2, undefined)).toBe(true);
    expect((await store.get("ada", c.id))?.turns[1]).toMatchObject({ content: "par", incompleteReason: "interrupted" });
    const next = await store.begin("ada", c.id, "h3", 60_000, [{ role: "user", content: "again" }]);
    expect(next).toMatchObject({
      ok: true,
      replySeq: 4,
      history: [{ seq: 1 }, { seq: 2, content: "par", incompleteReason: "interrupted" }],
    });
    expect((await store.get("ada", c.id))?.turns.map((t) => t.incompleteReason)).toEqual([
      undefined,
      "interrupted",
      undefined,
    ]);
  });

  it("lists the owner's newest first, pages by cursor, renames and deletes with the turns", async () => {
    const owner = `lister-${Math.random()}`;
    const made = [];
    for (const title of ["a", "b", "c"])
      made.push(await store.create({ owner, title, systemPrompt: "", metadata: undefined }));
    const first = await store.list(owner, 2);
    expect(first.map((c) => c.title)).toEqual(["c", "b"]);
    const last = first.at(-1)!;
    expect((await store.list(owner, 2, { createdAt: last.createdAt, id: last.id })).map((c) => c.title)).toEqual(["a"]);
    expect((await store.rename(owner, made[0]!.id, "A"))?.title).toBe("A");
    expect(await store.rename("bob", made[0]!.id, "B")).toBeUndefined();

    await store.begin(owner, made[0]!.id, "h", 60_000, [{ role: "user", content: "x" }]);
    expect(await store.delete("bob", made[0]!.id)).toBe(false);
    expect(await store.delete(owner, made[0]!.id)).toBe(true);
    expect(await store.get(owner, made[0]!.id)).toBeUndefined();
    // The reply of a stream whose conversation was deleted meanwhile has nowhere to go, and is dropped.
    await store.end(made[0]!.id, "h", 2, { role: "assistant", content: "late" });
    expect(await store.delete(owner, made[0]!.id)).toBe(false);
  });
});
