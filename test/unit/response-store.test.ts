// The store's parts for the OpenAI API's stored side (migration 0002: responses; conversations made
// with their first items; items appended, edited and deleted), against both databases it runs on:
// SQLite in a temporary folder and a real PostgreSQL server started for the test.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openConversationStore, type DatabaseTarget } from "../../src/conversations/kysely-store.js";
import type { ConversationStore, NewTurn, StoredResponse } from "../../src/conversations/store.js";
import { startPostgres } from "../support/postgres.js";

const databases: { name: string; open: () => Promise<{ target: DatabaseTarget; close: () => Promise<void> }> }[] = [
  {
    name: "SQLite",
    open: async () => {
      const dir = mkdtempSync(join(tmpdir(), "responses-sqlite-"));
      return {
        target: { kind: "sqlite", path: join(dir, "conversations.db") },
        close: async () => rmSync(dir, { recursive: true, force: true }),
      };
    },
  },
  {
    name: "PostgreSQL",
    open: async () => {
      const server = await startPostgres();
      return { target: { kind: "postgres", url: server.url }, close: () => server.close() };
    },
  },
];

let next = 0;
function response(owner: string, previous: string | undefined, input: string, output: string): StoredResponse {
  return {
    id: `resp_${(next++).toString(16).padStart(32, "0")}`,
    owner,
    conversationId: undefined,
    previousResponseId: previous,
    input: [{ role: "user", content: input }],
    output: [{ role: "assistant", content: output }],
    response: { object: "response", status: "completed", output: [{ text: output }] },
    createdAt: new Date("2026-12-06T10:00:00.000Z"),
  };
}

describe.each(databases)("the store's OpenAI parts on $name", ({ open }) => {
  let store: ConversationStore;
  let closeDatabase: () => Promise<void>;
  beforeAll(async () => {
    let target: DatabaseTarget;
    ({ target, close: closeDatabase } = await open());
    store = await openConversationStore(target);
  });
  afterAll(async () => {
    await store?.close();
    await closeDatabase?.();
  });

  it("keeps a response for its owner only, its JSON as it was; deleted, it is gone", async () => {
    const r = response("ada", undefined, "hi", "hello");
    await store.saveResponse(r);
    expect(await store.getResponse("ada", r.id)).toEqual(r);
    expect(await store.getResponse("bob", r.id)).toBeUndefined();
    expect(await store.deleteResponse("bob", r.id)).toBe(false);
    expect(await store.deleteResponse("ada", r.id)).toBe(true);
    expect(await store.getResponse("ada", r.id)).toBeUndefined();
  });

  it("rewrites a background response's output and object as it ends, for its owner; a deleted one stays deleted", async () => {
    const r = response("ada", undefined, "hi", "");
    await store.saveResponse({ ...r, output: [], response: { object: "response", status: "in_progress" } });
    const ended = { output: r.output, response: { object: "response", status: "completed" } };
    expect(await store.updateResponse("bob", r.id, ended)).toBe(false);
    expect((await store.getResponse("ada", r.id))?.response.status).toBe("in_progress");
    expect(await store.updateResponse("ada", r.id, ended)).toBe(true);
    expect(await store.getResponse("ada", r.id)).toEqual({ ...r, ...ended });
    await store.deleteResponse("ada", r.id);
    expect(await store.updateResponse("ada", r.id, ended)).toBe(false);
    expect(await store.getResponse("ada", r.id)).toBeUndefined();
  });

  it("walks a chain oldest first; branches are apart; another owner's or an unknown id is undefined", async () => {
    const a = response("ada", undefined, "q1", "r1");
    const b = response("ada", a.id, "q2", "r2");
    const branch = response("ada", a.id, "qb", "rb");
    for (const r of [a, b, branch]) await store.saveResponse(r);
    const contents = (turns: NewTurn[] | undefined) => turns?.map((t) => t.content);
    expect(contents(await store.responseChain("ada", b.id, 100))).toEqual(["q1", "r1", "q2", "r2"]);
    expect(contents(await store.responseChain("ada", branch.id, 100))).toEqual(["q1", "r1", "qb", "rb"]);
    expect(await store.responseChain("bob", b.id, 100)).toBeUndefined();
    expect(await store.responseChain("ada", `resp_${"f".repeat(32)}`, 100)).toBeUndefined();
    // Walked only as far as `minTurns` needs: the newest link has 2 turns.
    expect(contents(await store.responseChain("ada", b.id, 2))).toEqual(["q2", "r2"]);
    // A link deleted from the middle ends the chain there.
    const c = response("ada", b.id, "q3", "r3");
    await store.saveResponse(c);
    await store.deleteResponse("ada", b.id);
    expect(contents(await store.responseChain("ada", c.id, 100))).toEqual(["q3", "r3"]);
  });

  it("creates a conversation with its first turns in one transaction: a bad turn leaves nothing", async () => {
    const made = await store.create({
      owner: "ada",
      title: "",
      systemPrompt: "",
      metadata: { k: "v" },
      turns: [
        { role: "user", content: "one" },
        { role: "assistant", content: "two", toolCalls: [{ id: "c1", name: "f", arguments: "{}" }] },
      ],
    });
    expect((await store.get("ada", made.id))?.turns.map((t) => [t.seq, t.content])).toEqual([
      [1, "one"],
      [2, "two"],
    ]);
    const before = (await store.list("carol", 100)).length;
    await expect(
      store.create({
        owner: "carol",
        title: "",
        systemPrompt: "",
        metadata: undefined,
        turns: [
          { role: "user", content: "fine" },
          { role: "user", content: null as unknown as string },
        ],
      }),
    ).rejects.toThrow();
    expect(await store.list("carol", 100)).toHaveLength(before);
  });

  it("appends and edits turns for the owner, never under a live stream's lease", async () => {
    const c = await store.create({ owner: "ada", title: "", systemPrompt: "", metadata: undefined });
    const appended = await store.append("ada", c.id, [
      { role: "user", content: "a" },
      { role: "tool", content: "out", toolCallId: "c1" },
    ]);
    expect(appended).toMatchObject({
      ok: true,
      value: [
        { seq: 1, content: "a" },
        { seq: 2, toolCallId: "c1" },
      ],
    });
    expect(await store.append("bob", c.id, [{ role: "user", content: "x" }])).toEqual({ ok: false, why: "not_found" });

    expect(await store.editTurn("ada", c.id, 1, (t) => ({ ...t, content: "A" }))).toEqual({ ok: true, value: true });
    expect(await store.editTurn("ada", c.id, 2, () => undefined)).toEqual({ ok: true, value: true });
    expect(await store.editTurn("ada", c.id, 9, (t) => t)).toEqual({ ok: true, value: false });
    expect(await store.editTurn("bob", c.id, 1, () => undefined)).toEqual({ ok: false, why: "not_found" });
    expect((await store.get("ada", c.id))?.turns.map((t) => t.content)).toEqual(["A"]);

    const began = await store.begin("ada", c.id, "holder", 60_000, []);
    expect(began.ok).toBe(true);
    expect(await store.append("ada", c.id, [{ role: "user", content: "x" }])).toEqual({ ok: false, why: "busy" });
    expect(await store.editTurn("ada", c.id, 1, () => undefined)).toEqual({ ok: false, why: "busy" });
    await store.end(c.id, "holder", 2, undefined);
    expect((await store.append("ada", c.id, [{ role: "user", content: "x" }])).ok).toBe(true);
  });

  it("replaces metadata for the owner only", async () => {
    const c = await store.create({ owner: "ada", title: "t", systemPrompt: "", metadata: { a: "1" } });
    expect(await store.setMetadata("bob", c.id, { b: "2" })).toBeUndefined();
    expect((await store.setMetadata("ada", c.id, { b: "2" }))?.metadata).toEqual({ b: "2" });
    expect((await store.get("ada", c.id))?.conversation).toMatchObject({ title: "t", metadata: { b: "2" } });
  });
});
