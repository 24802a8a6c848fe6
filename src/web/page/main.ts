// The chat page Envoy serves at `/`: a conversation with the gateway through `chat-gateway/web`,
// on the same origin as `POST /chat`, `GET /models` and `/conversations`. Each chat is a stored
// conversation (docs/conversations.md): created on its first message, its id in the URL's fragment
// so a reload reopens it, and listed beside the chat.
import {
  ChatError,
  GrpcCode,
  createConversation,
  deleteConversation,
  getConversation,
  listConversations,
  listModels,
  renameConversation,
  streamChat,
  type Conversation,
  type ListModelsResponse,
  type Turn,
} from "../client.js";
import { AssistantTurn, appendUserTurn, describeError } from "./turns.js";
import { askForKey, savedKey } from "./key.js";
import { showConversations } from "./list.js";

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;
const log = $("#log");
const form = $<HTMLFormElement>("#composer");
const input = $<HTMLTextAreaElement>("#input");
const sendButton = $<HTMLButtonElement>("#send");
const stopButton = $<HTMLButtonElement>("#stop");
const modelSelect = $<HTMLSelectElement>("#model");
const keyButton = $<HTMLButtonElement>("#key-button");
const notice = $("#notice");
const conversationList = $<HTMLUListElement>("#conversation-list");
const moreButton = $<HTMLButtonElement>("#more-conversations");

/** The stored conversation on screen (the URL's fragment); none until a new chat's first message. */
let conversationId: string | undefined = decodeURIComponent(location.hash.slice(1)) || undefined;
/** The caller's conversations as last listed, newest first. */
let listed: Conversation[] = [];
/** Where the list's next page starts ("": it has all of them). */
let nextPageToken = "";
/** Conversations per page of the list: the page's `?page_size=` (1 to 100, what the gateway allows), or 100. */
const pageSize = Math.min(100, Math.max(1, Number(new URLSearchParams(location.search).get("page_size")) || 100));
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

/** The models, then the conversations (asking for a caller key first if the gateway wants one). */
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
  await loadConversations();
  if (conversationId && !log.hasChildNodes()) await openConversation(conversationId);
}

/** The list's first page (`more`: false), or the next one after what is listed (`more`: true). */
async function loadConversations(more = false): Promise<void> {
  try {
    const page = await listConversations(
      { pageSize, ...(more && { pageToken: nextPageToken }) },
      { apiKey: savedKey() },
    );
    // Pages go by a cursor (created before the last one listed), so none repeats; a conversation
    // created here meanwhile is at the top already.
    const seen = new Set(listed.map((c) => c.id));
    listed = more ? [...listed, ...page.conversations.filter((c) => !seen.has(c.id))] : page.conversations;
    nextPageToken = page.nextPageToken;
    showList();
  } catch (error) {
    say(`Could not list the conversations: ${describeError(asChatError(error))}`);
  }
}

function showList(): void {
  showConversations(conversationList, listed, conversationId, {
    open: (id) => void openConversation(id),
    rename: (conversation) => void rename(conversation),
    remove: (conversation) => void remove(conversation),
  });
  moreButton.hidden = nextPageToken === "";
}

/** Makes `id` the conversation on screen (none: a new chat), in the URL too, without a new history entry. */
function setCurrent(id: string | undefined): void {
  conversationId = id;
  window.history.replaceState(null, "", id ? `#${encodeURIComponent(id)}` : location.pathname + location.search);
  showList();
}

/** Leaves whatever is on screen (a reply still streaming is stopped) for an empty log. */
function clearChat(): void {
  current?.abort();
  conversation++;
  log.replaceChildren();
}

async function openConversation(id: string): Promise<void> {
  clearChat();
  const mine = conversation;
  setCurrent(id);
  try {
    const { turns } = await getConversation(id, { apiKey: savedKey() });
    if (mine !== conversation) return;
    for (const turn of turns) showStoredTurn(turn);
    following = true;
    follow();
    say("");
  } catch (error) {
    if (mine !== conversation) return;
    say(`Could not open the conversation: ${describeError(asChatError(error))}`);
    setCurrent(undefined);
  }
  input.focus();
}

/** A stored turn, drawn as the same turn streamed: the user's text, or the reply and how it ended. */
function showStoredTurn(stored: Turn): void {
  if (stored.role !== "assistant") {
    appendUserTurn(log, stored.role === "user" ? stored.content : `${stored.role}: ${stored.content}`);
    return;
  }
  const turn = new AssistantTurn(log);
  if (stored.reasoning) turn.appendReasoning(stored.reasoning);
  stored.toolCalls.forEach((call, index) =>
    turn.toolCall({ index, id: call.id, name: call.function?.name ?? "", arguments: call.function?.arguments ?? "" }),
  );
  if (stored.content) turn.appendAnswer(stored.content);
  if (stored.incompleteReason) turn.incomplete(stored.incompleteReason);
  else turn.finish({ model: stored.model, finishReason: stored.finishReason, usage: stored.usage });
}

async function rename(conversation: Conversation): Promise<void> {
  const title = prompt("New title:", conversation.title)?.trim();
  if (!title || title === conversation.title) return;
  try {
    const renamed = await renameConversation(conversation.id, title, { apiKey: savedKey() });
    listed = listed.map((c) => (c.id === renamed.id ? renamed : c));
    showList();
  } catch (error) {
    say(`Could not rename the conversation: ${describeError(asChatError(error))}`);
  }
}

async function remove(conversation: Conversation): Promise<void> {
  if (!confirm(`Delete “${conversation.title || "Untitled"}” and its turns, for good?`)) return;
  try {
    await deleteConversation(conversation.id, { apiKey: savedKey() });
    if (conversation.id === conversationId) {
      clearChat();
      setCurrent(undefined);
    }
    listed = listed.filter((c) => c.id !== conversation.id);
    showList();
  } catch (error) {
    say(`Could not delete the conversation: ${describeError(asChatError(error))}`);
  }
}

/** A new conversation's title: its first message's first words. */
function titleOf(text: string): string {
  const words = text.split(/\s+/).filter(Boolean).slice(0, 8).join(" ");
  return words.length > 60 ? `${words.slice(0, 59)}…` : words;
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
  let started = false;
  try {
    let id = conversationId;
    if (!id) {
      // A new chat is stored from its first message on.
      const created = await createConversation(
        { title: titleOf(text) },
        { apiKey: savedKey(), signal: controller.signal },
      );
      if (mine !== conversation) return;
      id = created.id;
      listed = [created, ...listed];
      setCurrent(id);
    }
    // Only the new turn: the gateway sends the stored ones before it, and stores this one and the reply.
    const request = { conversationId: id, text, model: modelSelect.value };
    // Resumable: a dropped connection (a train's tunnel, a Wi-Fi switch) re-attaches by itself and
    // the answer carries on where it stopped; Stop (aborting) cancels the generation (DELETE).
    const resume = { onReconnecting: () => turn.reconnecting(), onReconnected: () => turn.reconnected() };
    for await (const { event } of streamChat(request, { signal: controller.signal, apiKey: savedKey(), resume })) {
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
  if (!started && !input.value) {
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

moreButton.addEventListener("click", () => {
  moreButton.disabled = true;
  void loadConversations(true).finally(() => (moreButton.disabled = false));
});

$("#new-chat").addEventListener("click", () => {
  clearChat();
  setCurrent(undefined);
  say("");
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
