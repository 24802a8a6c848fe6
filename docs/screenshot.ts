// Takes docs/page.png, the README's picture of the chat page: a second turn caught mid-answer, its
// reasoning folded above it (the fake upstream holds the rest), in Debian's Chromium, through the real Envoy and the built service.
// Run with `npm run docs:screenshot` after `npm run setup`.
import { join } from "node:path";
import { startFakeUpstream, wire, type Reply } from "../test/support/fake-model.js";
import { ROOT } from "../src/dev/envoy.js";
import { startStack } from "../test/support/processes.js";
import { launchChromium } from "../test/support/browser.js";
import { hold, never } from "../test/support/gates.js";

const FIRST: Reply = {
  tokens: [
    "It is served by the same Envoy as `POST /chat` and `GET /models`: ",
    "one origin, so the browser sends no preflight.",
  ],
};
const shown = hold();
const SECOND: Reply = {
  // Reasoning first: folded away under its label once the answer starts.
  deltas: [
    wire.reasoning("The question is about the transport: explain the SSE events and how Stop reaches the upstream."),
  ],
  tokens: [
    "Each `data:` line is one `ChatResponse`, decoded by the generated code:\n\n",
    '```ts\nimport { streamChat } from "chat-gateway/web";\n\n',
    "for await (const { event } of streamChat({ text }, { signal })) {\n",
    '  if (event?.$case === "delta") show(event.value.text);\n}\n```\n\n',
    "Pressing **Stop** aborts the `fetch`; Envoy resets the gRPC stream, ",
    "and the service closes the upstream request",
    " at once.",
  ],
  // Hold the rest once the page shows token 5 (step 6, after the reasoning), so the picture is of a reply still streaming.
  gate: (i) => (i === 6 ? shown.promise : i === 7 ? never : undefined),
};

const upstream = await startFakeUpstream({
  reply: (r) => (r.index === 0 ? FIRST : SECOND),
  models: () => ({ ids: ["demo", "demo-large"] }),
});
const stack = await startStack({ OPENAI_BASE_URL: upstream.baseURL, OPENAI_API_KEY: "sk-demo", CHAT_MODEL: "demo" });
const browser = await launchChromium();
try {
  const { page } = await browser.open(`http://127.0.0.1:${stack.envoy.httpPort}/`, { width: 760, height: 600 });
  await page.locator('#model option[value="demo"]').waitFor({ state: "attached" });
  await page.locator("#input").fill("Why does the page need no CORS?");
  await page.locator("#input").press("Enter");
  await page.locator('.turn.assistant[data-state="finished"]').waitFor();
  await page.locator("#input").fill("And how does it stream?");
  await page.locator("#input").press("Enter");
  await page.locator(".turn.assistant .answer").last().getByText("aborts the").waitFor();
  shown.release();
  await page.locator(".turn.assistant .answer").last().getByText("upstream request").waitFor();
  await page.screenshot({ path: join(ROOT, "docs", "page.png") });
} finally {
  await browser.close();
  await stack.stop();
  await upstream.close();
}
