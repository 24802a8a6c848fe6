// The caller key (AUTH=keys), asked for when the gateway answers 401 and kept for this tab's
// session only: sessionStorage, never localStorage or a cookie, so closing the tab forgets it.
const STORAGE_KEY = "chat-gateway.caller-key";

export function savedKey(): string | undefined {
  return sessionStorage.getItem(STORAGE_KEY) ?? undefined;
}

/**
 * Shows the key dialog with `reason`; resolves with the key entered (and keeps it), or undefined
 * when the dialog is dismissed (Escape).
 */
export function askForKey(reason: string): Promise<string | undefined> {
  const dialog = document.querySelector<HTMLDialogElement>("#key-dialog")!;
  const input = dialog.querySelector<HTMLInputElement>("#key-input")!;
  dialog.querySelector("#key-reason")!.textContent = reason;
  input.value = "";
  dialog.returnValue = "";
  dialog.querySelector<HTMLButtonElement>("#key-cancel")!.onclick = () => dialog.close("cancel");
  if (!dialog.open) dialog.showModal();
  input.focus();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const key = input.value.trim();
        input.value = "";
        if (dialog.returnValue !== "save" || !key) return resolve(undefined);
        sessionStorage.setItem(STORAGE_KEY, key);
        resolve(key);
      },
      { once: true },
    );
  });
}
