// A stored conversation through a SIGKILL of the service mid-stream: the real built service on a
// SQLite DATA_DIR, killed while its upstream holds a reply half-sent, then a new process on the same
// folder. What was flushed of the reply is there, marked interrupted; the database opens; the dead
// stream's lease expires and the next Chat on the conversation works.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ChatRequest,
  ChatServiceClient,
  ConversationServiceClient,
  type ChatResponse,
  type GetConversationResponse,
} from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest, type Reply } from "../support/fake-model.js";
import { never } from "../support/gates.js";
import { collect } from "../support/grpc.js";
import { startServiceProcess, type ServiceProcess } from "../support/processes.js";

let upstream: FakeUpstream;
const dataDir = mkdtempSync(join(tmpdir(), "gateway-kill-"));
const processes: ServiceProcess[] = [];

beforeAll(async () => {
  upstream = await startFakeUpstream({
    // The first reply stops after three tokens and never goes on: the stream is open when the kill comes.
    reply: (r: RecordedRequest): Reply =>
      r.index === 0
        ? { tokens: ["one ", "two ", "three ", "four"], gate: (i) => (i === 3 ? never : undefined) }
        : { tokens: ["Still here."] },
  });
});
afterAll(async () => {
  for (const p of processes) await p.stop("SIGKILL");
  await upstream?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function service() {
  const p = await startServiceProcess({
    DATA_DIR: dataDir,
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    // A flush after every token, and a short lease: the dead stream's hold goes within the test.
    CONVERSATION_FLUSH_CHARS: "1",
    CONVERSATION_FLUSH_MS: "200",
    CONVERSATION_LEASE_MS: "1000",
  });
  processes.push(p);
  const address = `127.0.0.1:${p.port}`;
  const chat = new ChatServiceClient(address, credentials.createInsecure());
  const conversations = new ConversationServiceClient(address, credentials.createInsecure());
  const unary = <T>(method: "createConversation" | "getConversation", request: object) =>
    new Promise<T>((resolve, reject) =>
      (
        conversations[method] as unknown as (
          r: object,
          m: Metadata,
          cb: (e: ServiceError | null, res: unknown) => void,
        ) => void
      ).call(conversations, request, new Metadata(), (e, res) => (e ? reject(e) : resolve(res as T))),
    );
  return {
    process: p,
    chat,
    create: () =>
      unary<{ conversation?: { id: string } }>("createConversation", { title: "", systemPrompt: "" }).then(
        (r) => r.conversation!.id,
      ),
    get: (id: string) => unary<GetConversationResponse>("getConversation", { id }),
    close() {
      chat.close();
      conversations.close();
    },
  };
}

const turnsOf = (got: GetConversationResponse) =>
  got.turns.map((t) => ({ role: t.role, content: t.content, incompleteReason: t.incompleteReason }));

it("SIGKILL mid-stream: the user's turn and the flushed reply survive, marked interrupted, and the next Chat works", {
  timeout: 60_000,
}, async () => {
  const first = await service();
  const id = await first.create();
  const call = first.chat.chat(ChatRequest.fromPartial({ conversationId: id, text: "Count." }));
  call.on("error", () => undefined);
  let streamed = "";
  await new Promise<void>((resolve) =>
    call.on("data", (r: ChatResponse) => {
      if (r.event?.$case === "delta") streamed += r.event.value.text;
      if (streamed === "one two three ") resolve();
    }),
  );
  // What the caller was sent, written by a flush: the kill comes once it is in the database.
  for (;;) {
    const reply = (await first.get(id)).turns[1];
    if (reply?.content === streamed) break;
    await sleep(50);
  }
  first.close();
  await first.process.stop("SIGKILL");

  const second = await service();
  // Incomplete either way: "streaming" while the dead stream's lease has not expired yet (the new
  // process may be up within CONVERSATION_LEASE_MS of the last flush), "interrupted" after.
  expect(turnsOf(await second.get(id))).toEqual([
    { role: "user", content: "Count.", incompleteReason: "" },
    {
      role: "assistant",
      content: "one two three ",
      incompleteReason: expect.stringMatching(/^(streaming|interrupted)$/),
    },
  ]);

  // Refused as busy until the dead stream's lease (CONVERSATION_LEASE_MS past its last flush) expires.
  let result = await collect(second.chat, { conversationId: id, text: "Still there?" });
  let busy = 0;
  while (result.code === status.FAILED_PRECONDITION && busy++ < 50) {
    await sleep(100);
    result = await collect(second.chat, { conversationId: id, text: "Still there?" });
  }
  expect(result).toMatchObject({ code: status.OK, text: "Still here." });
  expect(upstream.requests[1]?.body.messages).toEqual([
    { role: "user", content: "Count." },
    { role: "assistant", content: "one two three " },
    { role: "user", content: "Still there?" },
  ]);
  expect(turnsOf(await second.get(id)).map((t) => [t.role, t.content, t.incompleteReason])).toEqual([
    ["user", "Count.", ""],
    ["assistant", "one two three ", "interrupted"],
    ["user", "Still there?", ""],
    ["assistant", "Still here.", ""],
  ]);
  second.close();
});
