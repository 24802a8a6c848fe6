// The chat page as a person uses it: Debian's Chromium (playwright-core) on the page Envoy serves at
// `/`, the built service behind it, and the fake upstream, which shows what the page really sent and
// whether its request was closed. One browser for the whole file.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { startFakeUpstream, wire, type FakeUpstream, type Reply, type RecordedRequest } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { hold, never } from "../support/gates.js";
import { launchChromium, type Browser } from "../support/browser.js";

const KEY = "page-caller-key-0123456789";

/** A fake upstream whose reply each test sets, behind the built service and Envoy. */
interface Gateway {
  upstream: FakeUpstream;
  stack: Stack;
  reply: (r: RecordedRequest) => Reply;
  url: string;
}

async function startGateway(env: Record<string, string> = {}): Promise<Gateway> {
  const gateway = { reply: () => ({ tokens: ["ok"] }) } as unknown as Gateway;
  gateway.upstream = await startFakeUpstream({
    reply: (r) => gateway.reply(r),
    models: () => ({ ids: ["fake-model", "other-model"] }),
  });
  gateway.stack = await startStack({
    OPENAI_BASE_URL: gateway.upstream.baseURL,
    OPENAI_API_KEY: "sk-page",
    CHAT_MODEL: "fake-model",
    UPSTREAM_MAX_RETRIES: "0",
    ...env,
  });
  gateway.url = `http://127.0.0.1:${gateway.stack.envoy.httpPort}/`;
  return gateway;
}

let browser: Browser;
let open: Gateway;
let keyed: Gateway;

/** The open gateway's settings a test relies on: a heartbeat after 1 s of silence, and a small input limit to break. */
const HEARTBEAT_INTERVAL_MS = 1000;
const MAX_INPUT_BYTES = 8192;

// One browser for the file; it and both gateways start side by side.
beforeAll(async () => {
  [browser, open, keyed] = await Promise.all([
    launchChromium(),
    startGateway({ HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), MAX_INPUT_BYTES: String(MAX_INPUT_BYTES) }),
    startGateway({ CALLER_KEYS: `page ${KEY}` }),
  ]);
});
afterAll(async () => {
  await Promise.all([browser?.close(), open?.stack.stop(), keyed?.stack.stop()]);
  await Promise.all([open?.upstream.close(), keyed?.upstream.close()]);
});

const lastTurn = (page: Page) => page.locator(".turn.assistant").last();
const answer = (page: Page) => lastTurn(page).locator(".answer");
const status = (page: Page) => lastTurn(page).locator(".status");

/**
 * Watches `selector` in the last reply from now on; the returned function resolves to the reply's
 * status line as it was the first time that element changed (before the page handles another event:
 * hold the upstream after the event looked at).
 */
async function statusOnFirstChange(page: Page, selector: string): Promise<() => Promise<string>> {
  const key = JSON.stringify(`__status ${selector}`);
  // Strings, run in the page (the tests' TypeScript has no DOM types).
  await page.evaluate(`(() => {
    const turn = [...document.querySelectorAll(".turn.assistant")].at(-1);
    const target = turn.querySelector(${JSON.stringify(selector)});
    const status = turn.querySelector(".status");
    window[${key}] = new Promise((resolve) =>
      new MutationObserver((_, observer) => {
        observer.disconnect();
        resolve(status.textContent);
      }).observe(target, { childList: true, characterData: true, subtree: true }),
    );
  })()`);
  return async () => (await page.evaluate(`window[${key}]`)) as string;
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
}

/** Resolves once the last reply has ended in `state` (finished, stopped, error). */
async function ended(page: Page, state: "finished" | "stopped" | "error"): Promise<void> {
  await page.locator(`.turn.assistant[data-state="${state}"]`).last().waitFor();
}

describe("the page's files, as Envoy serves them", () => {
  it("serves index.html, app.js and app.css on GET, with a policy that allows only the page's own files", async () => {
    const get = (path: string) => fetch(new URL(path, open.url));
    const html = await get("/");
    expect(html.status).toBe(200);
    expect(html.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(html.headers.get("content-security-policy")).toMatch(/^default-src 'none'; script-src 'self';/);
    expect(html.headers.get("x-content-type-options")).toBe("nosniff");
    for (const [path, type] of [
      ["/app.js", "text/javascript; charset=utf-8"],
      ["/app.css", "text/css; charset=utf-8"],
    ]) {
      const file = await get(path!);
      expect([file.status, file.headers.get("content-type")]).toEqual([200, type]);
      expect((await file.text()).length).toBeGreaterThan(1000);
    }
    // Not a page route: the API's own 404.
    const post = await fetch(new URL("/", open.url), { method: "POST" });
    expect([post.status, await post.json()]).toEqual([
      404,
      { code: 5, message: "not found: the HTTP API is POST /chat" },
    ]);
  });
});

describe("the chat page, open gateway", () => {
  let ctx: Gateway;
  let page: Page;
  let errors: string[];
  beforeAll(() => {
    ctx = open;
  });

  const openPage = async (viewport?: { width: number; height: number }) => {
    ({ page, errors } = await browser.open(ctx.url, viewport));
    // The model list has loaded.
    await page.locator('#model option[value="other-model"]').waitFor({ state: "attached" });
  };
  afterEach(async () => {
    expect(errors).toEqual([]);
    await page?.close();
  });

  it("shows the answer token by token: the upstream holds each token until the page shows the one before", async () => {
    await openPage();
    const shown = [hold(), hold()];
    ctx.reply = () => ({ tokens: ["Alpha", " Beta", " Gamma"], gate: (i) => shown[i - 1]?.promise });
    const index = ctx.upstream.requests.length;
    await send(page, "Count for me");

    await answer(page).getByText("Alpha").waitFor();
    expect(await answer(page).innerText()).toBe("Alpha");
    expect(await lastTurn(page).getAttribute("data-state")).toBe("streaming");
    expect(await page.locator("#stop").isVisible()).toBe(true);
    shown[0]!.release();
    await answer(page).getByText("Alpha Beta").waitFor();
    expect(await answer(page).innerText()).toBe("Alpha Beta");
    shown[1]!.release();
    await ended(page, "finished");
    expect(await answer(page).innerText()).toBe("Alpha Beta Gamma");
    expect(await lastTurn(page).locator(".status").textContent()).toContain("fake-model");
    expect(await page.locator("#send").isVisible()).toBe(true);
    expect((await ctx.upstream.received(index)).body.messages).toEqual([{ role: "user", content: "Count for me" }]);
  });

  it("Stop closes the upstream request at once and keeps the partial answer, marked as stopped", async () => {
    await openPage();
    ctx.reply = () => ({ tokens: ["Partial", " never sent"], gate: (i) => (i === 1 ? never : undefined) });
    const index = ctx.upstream.requests.length;
    await send(page, "Tell me everything");
    await answer(page).getByText("Partial").waitFor();
    await page.locator("#stop").click();
    expect(await ctx.upstream.ended(index)).toBe("closed");
    await ended(page, "stopped");
    expect(await answer(page).innerText()).toBe("Partial");
    expect(await lastTurn(page).locator(".status").textContent()).toBe("stopped");
  });

  it("Escape stops too", async () => {
    await openPage();
    ctx.reply = () => ({ tokens: ["Partial"], gate: () => never });
    const index = ctx.upstream.requests.length;
    await send(page, "Wait for it");
    await ctx.upstream.received(index);
    await page.locator("#input").press("Escape");
    expect(await ctx.upstream.ended(index)).toBe("closed");
    await ended(page, "stopped");
  });

  it("carries the conversation and the model picked from GET /models; Shift+Enter is a new line", async () => {
    await openPage();
    ctx.reply = (r) => ({ tokens: [`Answer ${r.index}`] });
    await send(page, "First question");
    await ended(page, "finished");
    const first = ctx.upstream.requests.at(-1)!;

    await page.locator("#model").selectOption("other-model");
    await page.locator("#input").fill("Second");
    await page.locator("#input").press("Shift+Enter");
    await page.locator("#input").pressSequentially("question");
    expect(await page.locator("#input").inputValue()).toBe("Second\nquestion");
    await page.locator("#input").press("Enter");
    await page.locator(`.turn.assistant[data-state="finished"]`).nth(1).waitFor();

    const second = ctx.upstream.requests.at(-1)!;
    expect(second.index).toBe(first.index + 1);
    expect(second.body.model).toBe("other-model");
    expect(second.body.messages).toEqual([
      { role: "user", content: "First question" },
      { role: "assistant", content: `Answer ${first.index}` },
      { role: "user", content: "Second\nquestion" },
    ]);
    expect(await page.locator(".turn.user .text").allTextContents()).toEqual(["First question", "Second\nquestion"]);
  });

  it("streams the reasoning apart from the answer and before it, and folds it away once the answer starts", async () => {
    await openPage();
    // Held before each step: the test looks at the page between every two events.
    const shown = [hold(), hold(), hold()];
    ctx.reply = () => ({
      deltas: [wire.reasoning("First, the question. "), wire.reasoning("Then, the answer.")],
      tokens: ["It is", " 42."],
      gate: (i) => shown[i - 1]?.promise,
    });
    await send(page, "Think first");
    const reasoning = lastTurn(page).locator("details.reasoning");
    const thought = reasoning.locator(".reasoning-text");

    await thought.getByText("First, the question.").waitFor();
    expect(await thought.innerText()).toBe("First, the question. ");
    expect(await reasoning.locator("summary").innerText()).toBe("Reasoning");
    expect(await answer(page).innerText()).toBe("");
    shown[0]!.release();
    await thought.getByText("First, the question. Then, the answer.").waitFor();
    // Open while it streams, the answer not started.
    expect(await reasoning.getAttribute("open")).toBe("");
    expect(await answer(page).innerText()).toBe("");

    shown[1]!.release();
    await answer(page).getByText("It is").waitFor();
    // The answer started: the reasoning is folded away (its label stays, its text hidden), above the answer.
    expect(await reasoning.getAttribute("open")).toBeNull();
    expect(await thought.isVisible()).toBe(false);
    expect(await reasoning.locator("summary").isVisible()).toBe(true);
    expect(await answer(page).innerText()).toBe("It is");
    const [box, answerBox] = [await reasoning.boundingBox(), await answer(page).boundingBox()];
    expect(box!.y + box!.height).toBeLessThanOrEqual(answerBox!.y);

    shown[2]!.release();
    await ended(page, "finished");
    expect(await answer(page).innerText()).toBe("It is 42.");
    // Still there to read: a click opens it.
    await reasoning.locator("summary").click();
    expect(await thought.isVisible()).toBe(true);
    expect(await thought.innerText()).toBe("First, the question. Then, the answer.");
    // The reasoning is the model's, not the conversation's: only the answer goes back.
    ctx.reply = () => ({ tokens: ["Next"] });
    await send(page, "And then?");
    await page.locator(`.turn.assistant[data-state="finished"]`).nth(1).waitFor();
    expect(ctx.upstream.requests.at(-1)!.body.messages).toEqual([
      { role: "user", content: "Think first" },
      { role: "assistant", content: "It is 42." },
      { role: "user", content: "And then?" },
    ]);
  });

  it("shows the tool calls the model makes, in parallel, each with its name and its arguments assembled from interleaved pieces", async () => {
    await openPage();
    const [first, halfway] = [hold(), hold()];
    ctx.reply = () => ({
      deltas: [
        wire.toolCall(0, "call_weather", "get_weather", '{"ci'),
        wire.toolCall(1, "call_time", "get_time", '{"zone"'),
        wire.toolArgs(0, 'ty":"Pa'),
        wire.toolArgs(1, ':"Europe/Paris"}'),
        wire.toolArgs(0, 'ris"}'),
      ],
      tokens: [],
      finishReason: "tool_calls",
      gate: (i) => (i === 0 ? first.promise : i === 4 ? halfway.promise : undefined),
    });
    await send(page, "Weather and time in Paris?");
    await lastTurn(page).waitFor();
    const atFirstCall = await statusOnFirstChange(page, ".tool-calls");
    first.release();
    const calls = lastTurn(page).locator(".tool-call");

    // Mid-stream: each call's arguments so far, in its own place.
    await calls.nth(1).getByText('{"zone":"Europe/Paris"}').waitFor();
    expect(await calls.locator(".tool-args").allInnerTexts()).toEqual(['{"city":"Pa', '{"zone":"Europe/Paris"}']);
    // The first call ended the wait ("waiting for the model…").
    expect(await atFirstCall()).toBe("");
    halfway.release();
    await ended(page, "finished");
    expect(await calls.count()).toBe(2);
    expect(await calls.locator(".tool-name").allInnerTexts()).toEqual(["get_weather", "get_time"]);
    expect(await calls.locator(".tool-args").allInnerTexts()).toEqual(['{"city":"Paris"}', '{"zone":"Europe/Paris"}']);
    expect(await calls.first().isVisible()).toBe(true);
    expect(await calls.last().isVisible()).toBe(true);
    expect(await answer(page).innerText()).toBe("");
    expect(await status(page).innerText()).toContain("finish: tool_calls");
  });

  it("says the model is thinking while the upstream is silent (heartbeats), and stops saying it when content comes", async () => {
    await openPage();
    const [reasoned, answered, rest] = [hold(), hold(), hold()];
    ctx.reply = () => ({
      deltas: [wire.reasoning("Hmm.")],
      tokens: ["Done", " thinking."],
      gate: (i) => [reasoned, answered, rest][i]?.promise,
    });
    const index = ctx.upstream.requests.length;
    await send(page, "Take your time");
    await ctx.upstream.received(index);

    // Nothing but the role chunk from the upstream: the service's heartbeat is what the page shows.
    await status(page).getByText("thinking…").waitFor();
    expect(await status(page).innerText()).toMatch(/^thinking… [1-9]\d* s$/);
    expect(await lastTurn(page).getAttribute("data-state")).toBe("streaming");

    // Content ends the wait: the status the page shows the moment the reasoning, then the answer,
    // appears. (Looked at in the page itself: a heartbeat may rightly come again a second later.)
    const atReasoning = await statusOnFirstChange(page, ".reasoning-text");
    reasoned.release();
    expect(await atReasoning()).toBe("");
    expect(await lastTurn(page).locator(".reasoning-text").innerText()).toBe("Hmm.");
    // Silent again after the reasoning: thinking again, until the answer starts.
    await status(page).getByText("thinking…").waitFor();
    const atAnswer = await statusOnFirstChange(page, ".answer");
    answered.release();
    expect(await atAnswer()).toBe("");
    expect(await answer(page).innerText()).toBe("Done");
    rest.release();
    await ended(page, "finished");
    expect(await answer(page).innerText()).toBe("Done thinking.");
    expect(await status(page).innerText()).toMatch(/^fake-model · \d+ → \d+ tokens$/);
  });

  it("shows a refusal as a refusal, not as an answer", async () => {
    await openPage();
    const first = hold();
    ctx.reply = () => ({
      deltas: [wire.refusal("I can't help "), wire.refusal("with that.")],
      tokens: [],
      gate: (i) => (i === 0 ? first.promise : undefined),
    });
    await send(page, "Something I should not ask");
    await lastTurn(page).waitFor();
    const atRefusal = await statusOnFirstChange(page, ".refusal-text");
    first.release();
    await ended(page, "finished");
    // The refusal ended the wait ("waiting for the model…").
    expect(await atRefusal()).toBe("");
    const refusal = lastTurn(page).locator(".refusal");
    expect(await refusal.isVisible()).toBe(true);
    expect(await refusal.locator(".refusal-label").innerText()).toBe("The model refused");
    expect(await refusal.locator(".refusal-text").innerText()).toBe("I can't help with that.");
    expect(await answer(page).innerText()).toBe("");
  });

  it.each([
    [
      "400",
      { status: 400, errorMessage: "bad things" },
      ["HTTP 400", "INVALID_ARGUMENT", "upstream rejected the request: bad things"],
    ],
    [
      "429",
      { status: 429, headers: { "retry-after": "7" } },
      ["HTTP 429", "RESOURCE_EXHAUSTED", "upstream rate limit reached; retry after 7s"],
    ],
    ["503", { status: 503 }, ["HTTP 503", "UNAVAILABLE", "upstream error 503"]],
  ] as [string, Reply, string[]][])(
    "shows an upstream %s before the answer as docs/errors.md's table names it, and gives the text back",
    async (_name, reply, parts) => {
      await openPage();
      ctx.reply = () => reply;
      await send(page, "Will this work?");
      await ended(page, "error");
      const status = await lastTurn(page).locator(".status").textContent();
      for (const part of parts) expect(status).toContain(part);
      expect(status?.match(/retry after/g) ?? []).toHaveLength(reply.headers?.["retry-after"] === undefined ? 0 : 1);
      expect(await page.locator("#input").inputValue()).toBe("Will this work?");
    },
  );

  it("shows the gateway's own 400 (a request it refuses) with the message naming the field, and gives the text back", async () => {
    await openPage();
    const index = ctx.upstream.requests.length;
    const text = "x".repeat(MAX_INPUT_BYTES + 1);
    await send(page, text);
    await ended(page, "error");
    expect(await status(page).innerText()).toMatch(
      new RegExp(
        `^HTTP 400 · INVALID_ARGUMENT: text: input is \\d+ bytes, more than the limit of ${MAX_INPUT_BYTES} · request [\\w-]+$`,
      ),
    );
    expect(await page.locator("#input").inputValue()).toBe(text);
    // Refused before the model: the upstream saw nothing.
    expect(ctx.upstream.requests.length).toBe(index);
  });

  it("shows an in-band error mid-answer after the partial answer", async () => {
    await openPage();
    ctx.reply = () => ({ tokens: ["Half an", " answer"], end: "error-event" });
    await send(page, "Go on");
    await ended(page, "error");
    expect(await answer(page).innerText()).toBe("Half an answer");
    expect(await lastTurn(page).locator(".status").textContent()).toContain(
      "error mid-answer · UNAVAILABLE: upstream failed mid-stream: the model crashed",
    );
  });

  it("renders Markdown with code blocks, and model text that carries HTML as text: no script runs", async () => {
    await openPage();
    ctx.reply = () => ({
      tokens: [
        "**Bold** and <img src=x onerror=\"window.__xss='img'\"> and ",
        "<script>window.__xss='script'</script>",
        " and [a link](javascript:window.__xss='link') and <a href=\"javascript:window.__xss='a'\">raw</a>\n\n",
        "<p onclick=\"window.__xss='p'\">block html</p>\n\n",
        "```js\nconst answer = 42;\n```\n",
      ],
    });
    await send(page, "Try to break the page");
    await ended(page, "finished");
    const view = answer(page);
    expect(await view.locator("strong").textContent()).toBe("Bold");
    expect(await view.locator("pre code.language-js").textContent()).toBe("const answer = 42;\n");
    // The HTML the model wrote is on screen as the text it is.
    const text = await view.textContent();
    expect(text).toContain(`<img src=x onerror="window.__xss='img'">`);
    expect(text).toContain("<script>window.__xss='script'</script>");
    expect(text).toContain(`<p onclick="window.__xss='p'">block html</p>`);
    // ... and none of it became an element, a handler or a script link.
    expect(await view.locator("img, script, [onerror], [onclick]").count()).toBe(0);
    expect(await view.locator('a[href^="javascript"]').count()).toBe(0);
    await view.getByText("a link").click();
    expect(await page.evaluate("window.__xss")).toBeUndefined();
  });

  it("keeps each chat as a stored conversation: listed beside it, reopened by a reload or a click, renamed and deleted from the list", async () => {
    await openPage();
    // The open gateway's callers share one list (AUTH=none): this test's conversation is found by its title.
    const text = `Remember the lighthouse keeper ${Date.now()}`;
    ctx.reply = () => ({ deltas: [wire.reasoning("Noting it.")], tokens: ["Noted", " well."] });
    const index = ctx.upstream.requests.length;
    await send(page, text);
    await ended(page, "finished");
    // Created on the first message, titled by its first words, marked as the one on screen.
    const entry = page.locator(".conversation", { hasText: text });
    await entry.waitFor();
    const id = await entry.getAttribute("data-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(await entry.locator("button.open").getAttribute("aria-current")).toBe("true");
    expect(page.url()).toBe(`${ctx.url}#${id}`);
    expect((await ctx.upstream.received(index)).body.messages).toEqual([{ role: "user", content: text }]);
    const stored = async () => fetch(new URL(`/conversations/${id}`, ctx.url));
    type Stored = { conversation: { title: string }; turns: { role: string; content: string }[] };
    const storedJson = async () => (await (await stored()).json()) as Stored;
    expect((await storedJson()).turns.map((t) => [t.role, t.content])).toEqual([
      ["user", text],
      ["assistant", "Noted well."],
    ]);

    // A reload: the list still has it, and the URL's fragment reopens it, both turns as they were drawn.
    await page.reload();
    await answer(page).getByText("Noted well.").waitFor();
    await entry.waitFor();
    expect(await page.locator(".turn.user .text").allTextContents()).toEqual([text]);
    expect(await page.locator(".turn.assistant").count()).toBe(1);
    expect(await lastTurn(page).locator(".reasoning-text").textContent()).toBe("Noting it.");
    expect(await status(page).innerText()).toMatch(/^fake-model · \d+ → \d+ tokens$/);

    // New chat empties the page; a click on the entry opens the conversation again.
    await page.locator("#new-chat").click();
    expect(await page.locator(".turn").count()).toBe(0);
    expect(page.url()).toBe(ctx.url);
    expect(await entry.locator("button.open").getAttribute("aria-current")).toBeNull();
    await entry.locator("button.open").click();
    await answer(page).getByText("Noted well.").waitFor();
    expect(await page.locator(".turn.user .text").allTextContents()).toEqual([text]);
    expect(page.url()).toBe(`${ctx.url}#${id}`);

    // The next message carries only itself: the gateway sends the stored turns before it.
    ctx.reply = () => ({ tokens: ["Again"] });
    await send(page, "And again");
    await page.locator(`.turn.assistant[data-state="finished"]`).nth(1).waitFor();
    expect((await storedJson()).turns).toHaveLength(4);
    expect(ctx.upstream.requests.at(-1)!.body.messages).toEqual([
      { role: "user", content: text },
      { role: "assistant", content: "Noted well." },
      { role: "user", content: "And again" },
    ]);

    // Rename from the list (a prompt), stored by PATCH.
    const mine = page.locator(`.conversation[data-id="${id}"]`);
    page.once("dialog", (dialog) => void dialog.accept("Lighthouse notes"));
    await mine.getByRole("button", { name: `Rename “${text}”` }).click();
    await mine.getByRole("button", { name: "Lighthouse notes", exact: true }).waitFor();
    expect((await storedJson()).conversation.title).toBe("Lighthouse notes");

    // Delete from the list (confirmed), by DELETE: gone from the list, the page and the gateway.
    page.once("dialog", (dialog) => void dialog.accept());
    await mine.getByRole("button", { name: "Delete “Lighthouse notes”" }).click();
    await mine.waitFor({ state: "detached" });
    expect((await stored()).status).toBe(404);
    expect(await page.locator(".turn").count()).toBe(0);
    expect(page.url()).toBe(ctx.url);
    await page.reload();
    await page.locator("#conversation-list").waitFor({ state: "attached" });
    await page.locator(".conversation").first().waitFor();
    expect(await mine.count()).toBe(0);
  });

  it("lists the conversations a page at a time: More loads the next page (next_page_token) until there is none", async () => {
    // Five of this test's, newest first; the open gateway's list has other tests' too, older.
    const mark = `Paged ${Date.now()}`;
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const response = await fetch(new URL("/conversations", ctx.url), {
        method: "POST",
        body: JSON.stringify({ title: `${mark} #${i}` }),
      });
      ids.unshift(((await response.json()) as { conversation: { id: string } }).conversation.id);
    }
    const all = (await (await fetch(new URL("/conversations?page_size=100", ctx.url))).json()) as {
      conversations: { id: string }[];
    };
    ({ page, errors } = await browser.open(`${ctx.url}?page_size=2`));
    const entries = page.locator(".conversation");
    const listedIds = async () => Promise.all((await entries.all()).map((e) => e.getAttribute("data-id")));
    const more = page.locator("#more-conversations");

    await entries.nth(1).waitFor();
    expect(await listedIds()).toEqual(ids.slice(0, 2));
    await more.click();
    await entries.nth(3).waitFor();
    expect(await listedIds()).toEqual(ids.slice(0, 4));
    // On to the end: every conversation once, in the gateway's order, and no More past the last page.
    while (await more.isVisible()) {
      const count = await entries.count();
      await more.click();
      // The gateway gives a next_page_token only when more follow: each page adds entries.
      await entries.nth(count).waitFor();
    }
    expect(await listedIds()).toEqual(all.conversations.map((c) => c.id));
  });

  it("fits a phone: no horizontal scroll with a long code line, a long word and a wide table", async () => {
    await openPage({ width: 360, height: 740 });
    ctx.reply = () => ({
      tokens: [
        `Here: ${"x".repeat(200)}\n\n`,
        "```\n" + "const line = [" + "1, ".repeat(120) + "];\n```\n\n",
        "| a | b | c | d | e | f |\n|---|---|---|---|---|---|\n| " + "wide cell text | ".repeat(6) + "\n",
      ],
    });
    await send(page, "Something wide, please");
    await ended(page, "finished");
    const widths = (await page.evaluate(
      "({ page: document.documentElement.scrollWidth, viewport: window.innerWidth, log: document.querySelector('#log').scrollWidth, logBox: document.querySelector('#log').clientWidth })",
    )) as { page: number; viewport: number; log: number; logBox: number };
    expect(widths.page).toBeLessThanOrEqual(widths.viewport);
    expect(widths.log).toBeLessThanOrEqual(widths.logBox);
    const sendBox = await page.locator("#send").boundingBox();
    expect(sendBox!.x + sendBox!.width).toBeLessThanOrEqual(360);
  });
});

describe("the chat page, caller keys on", () => {
  let ctx: Gateway;
  beforeAll(() => {
    ctx = keyed;
  });

  it("asks for a key, keeps it in sessionStorage only, and chats with it", async () => {
    const { page, errors } = await browser.open(ctx.url);
    const dialog = page.locator("#key-dialog");
    await dialog.getByText("This gateway needs a caller key.").waitFor();
    await page.locator("#key-input").fill(`${KEY}-wrong`);
    await page.locator("#key-input").press("Enter");
    await dialog.getByText("The gateway refused this caller key. Enter another.").waitFor();
    await page.locator("#key-input").fill(KEY);
    await page.locator("#key-input").press("Enter");
    await page.locator('#model option[value="fake-model"]').waitFor({ state: "attached" });
    expect(await dialog.isVisible()).toBe(false);

    ctx.reply = () => ({ tokens: ["Keyed", " answer"] });
    const index = ctx.upstream.requests.length;
    await send(page, "Hello with a key");
    await ended(page, "finished");
    expect(await answer(page).innerText()).toBe("Keyed answer");
    expect((await ctx.upstream.received(index)).body.messages).toEqual([{ role: "user", content: "Hello with a key" }]);

    const storage = (await page.evaluate(
      "({ session: { ...sessionStorage }, local: { ...localStorage }, cookie: document.cookie })",
    )) as Record<string, unknown>;
    expect(storage).toEqual({ session: { "chat-gateway.caller-key": KEY }, local: {}, cookie: "" });
    expect(errors).toEqual([]);

    // Another tab has a session of its own: it asks again.
    const other = await browser.open(ctx.url);
    await other.page.locator("#key-dialog").getByText("This gateway needs a caller key.").waitFor();
    await other.page.close();
    await page.close();
  });
});
