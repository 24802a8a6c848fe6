// The caller's stored conversations beside the chat (GET /conversations, newest first): each entry
// opens its conversation, and has its own Rename and Delete buttons.
import type { Conversation } from "../client.js";

export interface ListActions {
  open(id: string): void;
  rename(conversation: Conversation): void;
  remove(conversation: Conversation): void;
}

export function showConversations(
  list: HTMLUListElement,
  conversations: Conversation[],
  currentId: string | undefined,
  actions: ListActions,
): void {
  list.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li");
      item.className = "conversation";
      item.dataset.id = conversation.id;
      const title = conversation.title || "Untitled";
      const openButton = button("open", title, () => actions.open(conversation.id));
      if (conversation.id === currentId) openButton.setAttribute("aria-current", "true");
      const rename = button("rename", "Rename", () => actions.rename(conversation));
      rename.setAttribute("aria-label", `Rename “${title}”`);
      const remove = button("delete", "Delete", () => actions.remove(conversation));
      remove.setAttribute("aria-label", `Delete “${title}”`);
      item.append(openButton, rename, remove);
      return item;
    }),
  );
}

function button(className: string, text: string, onClick: () => void): HTMLButtonElement {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.textContent = text;
  node.addEventListener("click", onClick);
  return node;
}
