// The chat page resuming by itself: Debian's Chromium (playwright-core) on the page Envoy serves,
// the built service and a fake upstream that streams slowly, so the browser's own offline switch
// (`context.setOffline`) lands mid-answer. The answer on screen must be the upstream's text exactly:
// no gap, no repeat. Its own browser: going offline is the whole context's.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Page } from "playwright-core";
import { startFakeUpstream, type FakeUpstream, type Reply } from "../support/fake-model.js";
import { startStack, type Stack } from "../support/processes.js";
import { hold } from "../support/gates.js";
import { launchChromium, type Browser } from "../support/browser.js";

/** Plain words (Markdown leaves them as they are), some of them multi-byte. */
const TOKENS = Array.from({ length: 60 }, (_, i) => `${i === 0 ? "" : " "}w${i}·héllo·🌍`);
const TEXT = TOKENS.join("");
/** Slow enough that a second offline lands well inside the answer (60 tokens: about 3 s). */
const TOKEN_DELAY_MS = 50;

let browser: Browser;
let upstream: FakeUpstream;
let stack: Stack;
let reply: () => Reply = () => ({ tokens: TOKENS, tokenDelayMs: TOKEN_DELAY_MS });

beforeAll(async () => {
  upstream = await startFakeUpstream({ reply: () => reply() });
  [browser, stack] = await Promise.all([
    launchChromium(),
    startStack({
      OPENAI_BASE_URL: upstream.baseURL,
      OPENAI_API_KEY: "sk-page",
      CHAT_MODEL: "fake-model",
      UPSTREAM_MAX_RETRIES: "0",
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([browser?.close(), stack?.stop()]);
  await upstream?.close();
});

const lastTurn = (page: Page) => page.locator(".turn.assistant").last();

async function openPage(): Promise<{ page: Page; errors: string[] }> {
  const opened = await browser.open(`http://127.0.0.1:${stack.envoy.httpPort}/`);
  await opened.page.locator('#model option[value="fake-model"]').waitFor({ state: "attached" });
  return opened;
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("#input").fill(text);
  await page.locator("#input").press("Enter");
}

describe("the chat page, its network cut mid-answer", () => {
  it("reconnects by itself, says so quietly, and the answer is the upstream's text exactly", async () => {
    const { page, errors } = await openPage();
    const index = upstream.requests.length;
    await send(page, "Count slowly");
    // Offline once some of the answer is on screen, and well before its end.
    await lastTurn(page).locator(".answer").getByText("w10·").waitFor();
    await browser.context.setOffline(true);
    await lastTurn(page).locator('.status:text-is("reconnecting…")').waitFor();
    expect(await lastTurn(page).getAttribute("data-connection")).toBe("reconnecting");
    const cutAt = (await lastTurn(page).locator(".answer").innerText()).length;
    expect(cutAt).toBeLessThan(TEXT.length);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await browser.context.setOffline(false);
    await page.locator('.turn.assistant[data-state="finished"]').last().waitFor();
    expect(await lastTurn(page).locator(".answer").innerText()).toBe(TEXT);
    expect(await lastTurn(page).getAttribute("data-connection")).toBeNull();
    expect(await lastTurn(page).locator(".status").textContent()).toContain("fake-model");
    // One generation, which the cut did not stop.
    expect(upstream.requests.length).toBe(index + 1);
    expect(await upstream.ended(index)).toBe("finished");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("Stop before the first token: the generation is cancelled as soon as the first token names the stream", async () => {
    const gate = hold();
    reply = () => ({ tokens: TOKENS, tokenDelayMs: TOKEN_DELAY_MS, gate: (i) => (i === 0 ? gate.promise : undefined) });
    try {
      const { page, errors } = await openPage();
      const index = upstream.requests.length;
      await send(page, "Think first");
      await upstream.received(index);
      await page.locator("#stop").click();
      await page.locator('.turn.assistant[data-state="stopped"]').last().waitFor();
      gate.release();
      // Without the cancel the model would write all 60 tokens (`finished`) for nobody.
      expect(await upstream.ended(index)).toBe("closed");
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      gate.release();
      reply = () => ({ tokens: TOKENS, tokenDelayMs: TOKEN_DELAY_MS });
    }
  });

  it("Stop cancels the resumable stream: the upstream's request is closed at once", async () => {
    const gate = hold();
    reply = () => ({ tokens: ["Partial", " never sent"], gate: (i) => (i === 1 ? gate.promise : undefined) });
    try {
      const { page, errors } = await openPage();
      const index = upstream.requests.length;
      await send(page, "Tell me everything");
      await lastTurn(page).locator(".answer").getByText("Partial").waitFor();
      await page.locator("#stop").click();
      // The page's request closed alone would leave the generation running for RESUME_GRACE_MS.
      expect(await upstream.ended(index)).toBe("closed");
      await page.locator('.turn.assistant[data-state="stopped"]').last().waitFor();
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      gate.release();
      reply = () => ({ tokens: TOKENS, tokenDelayMs: TOKEN_DELAY_MS });
    }
  });
});
