// The chat page Envoy serves at `/`: a conversation with the gateway through `chat-gateway/web`,
// on the same origin as `POST /chat` and `GET /models`.
import {
  ChatError,
  GrpcCode,
  listModels,
  streamChat,
  type ChatMessage,
  type DeepPartial,
  type ListModelsResponse,
} from "../client.js";
import { AssistantTurn, appendUserTurn, describeError } from "./turns.js";
import { askForKey, savedKey } from "./key.js";

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const log = $("#log");
const form = $<HTMLFormElement>("#composer");
const input = $<HTMLTextAreaElement>("#input");
const sendButton = $<HTMLButtonElement>("#send");
const stopButton = $<HTMLButtonElement>("#stop");
const modelSelect = $<HTMLSelectElement>("#model");
const keyButton = $<HTMLButtonElement>("#key-button");
const notice = $("#notice");

/** The turns sent back with each request: the user's, and the answers as far as they got. */
let history: DeepPartial<ChatMessage>[] = [];
let current: AbortController | undefined;
/** Bumped by "New chat": a reply of an earlier conversation that ends later must not write into this one. */
let conversation = 0;
/** Follow the answer as it grows, unless the reader scrolled up to read something else. */
let following = true;

const unauthenticated = (error: unknown): error is ChatError =>
  error instanceof ChatError && error.code === GrpcCode.UNAUTHENTICATED;
const asChatError = (error: unknown) =>
  error instanceof ChatError ? error : new ChatError({ code: GrpcCode.UNKNOWN, message: String(error), cause: error });

function say(text: string): void {
  notice.textContent = text;
  notice.hidden = !text;
}

async function loadModels(): Promise<void> {
  try {
    showModels(await listModels({ apiKey: savedKey() }));
    say("");
  } catch (error) {
    if (unauthenticated(error)) {
      keyButton.hidden = false;
      const reason = savedKey()
        ? "The gateway refused this caller key. Enter another."
        : "This gateway needs a caller key.";
      if (await askForKey(reason)) return loadModels();
      say("No caller key: the gateway will refuse to chat until you give one (Caller key, above).");
      return;
    }
    say(`Could not list the models: ${describeError(asChatError(error))}`);
  }
}

function showModels({ models, unavailable }: ListModelsResponse): void {
  const chosen = modelSelect.value;
  modelSelect.replaceChildren(new Option("gateway default", ""));
  // Grouped by upstream, in the order ListModels gives them.
  const groups = new Map<string, HTMLOptGroupElement>();
  for (const model of models) {
    let group = groups.get(model.upstream);
    if (!group) {
      group = document.createElement("optgroup");
      group.label = model.upstream;
      groups.set(model.upstream, group);
      modelSelect.append(group);
    }
    group.append(new Option(model.id, model.id, false, model.id === chosen));
  }
  for (const { upstream, message } of unavailable) {
    const option = new Option(`${upstream}: ${message}`, "");
    option.disabled = true;
    modelSelect.append(option);
  }
}

function setStreaming(streaming: boolean): void {
  sendButton.hidden = streaming;
  stopButton.hidden = !streaming;
}

function follow(): void {
  if (following) log.scrollTop = log.scrollHeight;
}

async function send(text: string): Promise<void> {
  const controller = new AbortController();
  const mine = conversation;
  current = controller;
  setStreaming(true);
  following = true;
  appendUserTurn(log, text);
  const turn = new AssistantTurn(log, follow);
  follow();
  const messages = [...history, { role: "user", content: text }];
  let started = false;
  try {
    const request = { messages, model: modelSelect.value };
    for await (const { event } of streamChat(request, { signal: controller.signal, apiKey: savedKey() })) {
      started = true;
      switch (event?.$case) {
        case "delta":
          turn.appendAnswer(event.value.text);
          break;
        case "reasoning":
          turn.appendReasoning(event.value.text);
          break;
        case "toolCall":
          turn.toolCall(event.value);
          break;
        case "refusal":
          turn.appendRefusal(event.value.text);
          break;
        case "heartbeat":
          turn.waiting(event.value.waitedMs);
          break;
        case "finish":
          turn.finish(event.value);
          break;
        // "error": the client throws it next, with its code, as a ChatError.
      }
      follow();
    }
  } catch (error) {
    if (controller.signal.aborted) turn.stopped();
    else turn.failed(asChatError(error));
    if (unauthenticated(error)) {
      keyButton.hidden = false;
      void askForKey(
        savedKey()
          ? "The gateway refused this caller key. Enter another, then send again."
          : "This gateway needs a caller key. Enter it, then send again.",
      ).then((key) => (key ? loadModels() : undefined));
    }
  } finally {
    if (current === controller) {
      current = undefined;
      setStreaming(false);
    }
    follow();
  }
  if (mine !== conversation) return;
  if (started) {
    history = [...messages, ...(turn.answer ? [{ role: "assistant", content: turn.answer }] : [])];
  } else if (!input.value) {
    // Nothing reached the model: give the text back, to send again.
    input.value = text;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || current) return;
  input.value = "";
  fitInput();
  void send(text);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  } else if (event.key === "Escape" && current) {
    current.abort();
  }
});

function fitInput(): void {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}
input.addEventListener("input", fitInput);

stopButton.addEventListener("click", () => current?.abort());

$("#new-chat").addEventListener("click", () => {
  current?.abort();
  conversation++;
  history = [];
  log.replaceChildren();
  input.focus();
});

keyButton.addEventListener(
  "click",
  () => void askForKey("Caller key for this tab:").then((key) => (key ? loadModels() : undefined)),
);

log.addEventListener("scroll", () => {
  following = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
});

void loadModels();
