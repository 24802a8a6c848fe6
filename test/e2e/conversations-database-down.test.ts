// Stored conversations while their PostgreSQL is down: the built service (DATABASE_URL) behind the
// real Envoy, on a real PostgreSQL the test stops and starts again (same data folder, same port) under
// the running service. While it is down, a Chat naming a conversation fails fast with UNAVAILABLE
// (HTTP 503), a Chat without one streams as ever, and a stream already open on a conversation ends
// normally for its caller. Once it is back, conversations work again with no restart, and the open
// stream's reply and lease were written by the retried end (not left behind until the lease expires).
import { setTimeout as sleep } from "node:timers/promises";
import { credentials, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  ChatRequest,
  ChatServiceClient,
  ConversationServiceClient,
  CreateConversationRequest,
  type ChatResponse,
  type GetConversationResponse,
} from "../../src/gen/chat/v1/chat.js";
import { startFakeUpstream, type FakeUpstream, type RecordedRequest, type Reply } from "../support/fake-model.js";
import { hold } from "../support/gates.js";
import { collect } from "../support/grpc.js";
import { allEvents, post } from "../support/http.js";
import { startPostgres, type RunningPostgres } from "../support/postgres.js";
import { startStack, type Stack } from "../support/processes.js";

let postgres: RunningPostgres;
let upstream: FakeUpstream;
let stack: Stack;
let chat: ChatServiceClient;
let conversations: ConversationServiceClient;
// The first request's reply waits here after its first token: a stream open when the database goes.
const gate = hold();

beforeAll(async () => {
  postgres = await startPostgres();
  upstream = await startFakeUpstream({
    reply: (r: RecordedRequest): Reply =>
      r.index === 0
        ? { tokens: ["one ", "two"], gate: (i) => (i === 1 ? gate.promise : undefined) }
        : { tokens: ["ok"] },
  });
  // A password in the URL (trust authentication ignores it): the start-up line must not show it.
  const url = new URL(postgres.url);
  url.password = "pw-SECRET-db";
  stack = await startStack({
    DATABASE_URL: url.href,
    OPENAI_BASE_URL: upstream.baseURL,
    OPENAI_API_KEY: "sk-e2e",
    CHAT_MODEL: "fake-model",
    CONVERSATION_FLUSH_MS: "200",
    // Longer than the test's outage: a conversation found busy after it was left behind by the
    // stream that ended while the database was down, not freed by the lease's expiry.
    CONVERSATION_LEASE_MS: "60000",
  });
  const address = `127.0.0.1:${stack.service.port}`;
  chat = new ChatServiceClient(address, credentials.createInsecure());
  conversations = new ConversationServiceClient(address, credentials.createInsecure());
}, 60_000);
afterAll(async () => {
  gate.release();
  chat?.close();
  conversations?.close();
  await stack?.stop();
  await upstream?.close();
  await postgres?.close();
});

const create = () =>
  new Promise<string>((resolve, reject) =>
    conversations.createConversation(CreateConversationRequest.fromPartial({}), new Metadata(), (e, r) =>
      e ? reject(e) : resolve(r!.conversation!.id),
    ),
  );
const get = (id: string) =>
  new Promise<GetConversationResponse>((resolve, reject) =>
    conversations.getConversation({ id }, new Metadata(), (e: ServiceError | null, r) => (e ? reject(e) : resolve(r!))),
  );
const httpChat = async (body: object) => {
  const response = await post(stack.envoy.httpPort, "/chat", JSON.stringify(body));
  return { status: response.status, text: await response.body() };
};

it("names its PostgreSQL in the start-up line, without the password", async () => {
  const line = await stack.service.logLine((l) => l.msg === "chat gateway listening");
  const url = new URL(postgres.url);
  url.username = "redacted";
  url.password = "redacted";
  expect(line.conversations).toBe(`PostgreSQL at ${url.href}`);
  expect(stack.service.output.join("\n")).not.toContain("SECRET");
});

it("PostgreSQL stopped and started under the running service", { timeout: 60_000 }, async () => {
  const open = await create();
  const other = await create();

  // A stream open on `open`, past its first token (its turn and lease are in the database).
  const call = chat.chat(ChatRequest.fromPartial({ conversationId: open, text: "Count." }));
  const received: ChatResponse[] = [];
  const ended = new Promise<status>((resolve) => {
    call.on("error", (e: ServiceError) => resolve(e.code));
    call.on("status", (s) => s.code === status.OK && resolve(s.code));
  });
  await new Promise<void>((resolve) =>
    call.on("data", (r: ChatResponse) => {
      received.push(r);
      if (r.event?.$case === "delta") resolve();
    }),
  );

  await postgres.stop();

  // A Chat naming a conversation: refused at once, over gRPC and through Envoy.
  let startedAt = performance.now();
  const refused = await collect(chat, { conversationId: other, text: "Hello?" });
  const refusedMs = performance.now() - startedAt;
  expect([refused.code, refused.details]).toEqual([status.UNAVAILABLE, "conversation store unavailable"]);
  expect(refusedMs).toBeLessThan(5_000);
  startedAt = performance.now();
  const refusedHttp = await httpChat({ conversation_id: other, text: "Hello?" });
  expect(performance.now() - startedAt).toBeLessThan(5_000);
  expect(refusedHttp.status).toBe(503);
  expect(JSON.parse(refusedHttp.text)).toMatchObject({ code: 14, message: "conversation store unavailable" });
  console.log(`database down: Chat refused in ${refusedMs.toFixed(0)} ms (gRPC)`);
  // ConversationService too.
  await expect(get(other)).rejects.toMatchObject({
    code: status.UNAVAILABLE,
    details: "conversation store unavailable",
  });

  // A Chat without one does not touch the database.
  expect(await collect(chat, { text: "No conversation." })).toMatchObject({ code: status.OK, text: "ok" });
  const plain = await post(stack.envoy.httpPort, "/chat", JSON.stringify({ text: "No conversation." }));
  expect(plain.status).toBe(200);
  expect((await allEvents(plain)).at(-1)).toMatchObject({ finish: { finishReason: "stop" } });

  // The open stream ends normally for its caller: its reply's store failing is logged, no stream error.
  gate.release();
  expect(await ended).toBe(status.OK);
  expect(received.at(-1)?.event?.$case).toBe("finish");
  await stack.service.logLine((l) => l.msg === "conversation store failed" && l.operation === "end");

  await postgres.start();

  // Back, with no restart: the pool reconnects by itself.
  const back = await collect(chat, { conversationId: other, text: "Hello again." });
  expect(back).toMatchObject({ code: status.OK, text: "ok" });
  // The stream that ended while the database was down stored its reply and gave the conversation
  // back once the database answered again: not busy until its lease (a minute here) runs out.
  // The end is retried every 0.25 s doubling to 5 s: within ~10 s of the database's return.
  let again = await collect(chat, { conversationId: open, text: "Go on." });
  for (let tries = 0; again.code === status.FAILED_PRECONDITION && tries < 100; tries++) {
    await sleep(100);
    again = await collect(chat, { conversationId: open, text: "Go on." });
  }
  expect([again.code, again.details]).toEqual([status.OK, ""]);
  expect((await get(open)).turns.map((t) => [t.role, t.content, t.incompleteReason])).toEqual([
    ["user", "Count.", ""],
    ["assistant", "one two", ""],
    ["user", "Go on.", ""],
    ["assistant", "ok", ""],
  ]);
  const listed = await httpChat({ conversation_id: other, text: "Through Envoy." });
  expect(listed.status).toBe(200);
});
