// The conversation on screen: a user's turn as plain text, and an assistant's turn as it streams
// (reasoning, tool calls, the answer as Markdown, a refusal, and how it ended).
import type { ChatError, Finish, ToolCallDelta } from "../client.js";
import { renderMarkdown } from "./markdown.js";

type TurnState = "streaming" | "finished" | "stopped" | "error";

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  parent?: HTMLElement,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  parent?.append(node);
  return node;
}

export function appendUserTurn(log: HTMLElement, text: string): HTMLElement {
  const turn = element("article", "turn user", log);
  element("div", "text", turn).textContent = text;
  return turn;
}

/** One assistant reply, filled in event by event. The answer is re-rendered at most once a frame. */
export class AssistantTurn {
  readonly root: HTMLElement;
  /** The answer's Markdown source so far. */
  answer = "";
  private readonly reasoning: HTMLDetailsElement;
  private readonly reasoningText: HTMLElement;
  private readonly tools: HTMLOListElement;
  private readonly toolCalls = new Map<number, { name: HTMLElement; args: HTMLElement }>();
  private readonly answerView: HTMLElement;
  private readonly refusal: HTMLElement;
  private readonly refusalText: HTMLElement;
  private readonly status: HTMLElement;
  private renderQueued = false;

  /** `onRender` is called after each change on screen (to keep the newest line in view). */
  constructor(
    log: HTMLElement,
    private readonly onRender: () => void = () => undefined,
  ) {
    this.root = element("article", "turn assistant", log);
    this.reasoning = element("details", "reasoning", this.root);
    this.reasoning.hidden = true;
    this.reasoning.open = true;
    element("summary", "", this.reasoning).textContent = "Reasoning";
    this.reasoningText = element("div", "reasoning-text", this.reasoning);
    this.tools = element("ol", "tool-calls", this.root);
    this.tools.hidden = true;
    this.answerView = element("div", "answer markdown", this.root);
    this.refusal = element("div", "refusal", this.root);
    this.refusal.hidden = true;
    // Said in words, not only by its colour: a refusal is the model's answer, not the gateway's error.
    element("p", "refusal-label", this.refusal).textContent = "The model refused";
    this.refusalText = element("div", "refusal-text", this.refusal);
    this.status = element("p", "status", this.root);
    // How the reply ended (stopped, an error) is announced to screen readers; the tokens are not.
    this.status.setAttribute("role", "status");
    this.setState("streaming", "waiting for the model…");
  }

  appendReasoning(text: string): void {
    this.contentCame();
    this.reasoning.hidden = false;
    this.reasoningText.textContent += text;
  }

  appendAnswer(text: string): void {
    this.contentCame();
    // The reasoning folds away once the answer starts; a click opens it again.
    if (!this.answer && !this.reasoning.hidden) this.reasoning.open = false;
    this.answer += text;
    this.queueRender();
  }

  appendRefusal(text: string): void {
    this.contentCame();
    this.refusal.hidden = false;
    this.refusalText.textContent += text;
  }

  toolCall(delta: ToolCallDelta): void {
    this.contentCame();
    this.tools.hidden = false;
    let call = this.toolCalls.get(delta.index);
    if (!call) {
      const item = element("li", "tool-call", this.tools);
      element("span", "tool-label", item).textContent = "tool call ";
      const name = element("code", "tool-name", item);
      const args = element("pre", "tool-args", item);
      call = { name, args };
      this.toolCalls.set(delta.index, call);
    }
    if (delta.name) call.name.textContent = delta.name;
    if (delta.id) call.name.title = delta.id;
    call.args.textContent += delta.arguments;
  }

  /** The upstream has been silent this long (a heartbeat event): say the stream is alive. */
  waiting(waitedMs: number): void {
    this.status.textContent = `thinking… ${Math.round(waitedMs / 1000)} s`;
  }

  /** The connection dropped mid-answer and the client is re-attaching: said quietly, the answer stays. */
  reconnecting(): void {
    this.root.dataset.connection = "reconnecting";
    this.status.textContent = "reconnecting…";
  }

  /** The stream is back: the answer carries on where it stopped. */
  reconnected(): void {
    delete this.root.dataset.connection;
    if (this.root.dataset.state === "streaming") this.status.textContent = "";
  }

  /** Whatever the model sends ends the wait: "waiting for the model…" or "thinking… N s" goes. */
  private contentCame(): void {
    if (this.root.dataset.state === "streaming") this.status.textContent = "";
  }

  finish(finish: Finish): void {
    this.flush();
    const parts = [finish.model, finish.finishReason === "stop" ? "" : `finish: ${finish.finishReason}`];
    if (finish.usage) parts.push(`${finish.usage.promptTokens} → ${finish.usage.completionTokens} tokens`);
    this.setState("finished", parts.filter(Boolean).join(" · "));
  }

  stopped(): void {
    this.flush();
    this.setState("stopped", "stopped");
  }

  failed(error: ChatError): void {
    this.flush();
    this.setState("error", describeError(error));
  }

  /** A stored reply that was cut short (its `incomplete_reason`): "cancelled" reads as a Stop did. */
  incomplete(reason: string): void {
    this.flush();
    if (reason === "cancelled") this.setState("stopped", "stopped");
    else this.setState("error", `incomplete: ${reason}`);
  }

  private setState(state: TurnState, status: string): void {
    delete this.root.dataset.connection;
    this.root.dataset.state = state;
    this.root.setAttribute("aria-busy", String(state === "streaming"));
    this.status.textContent = status;
  }

  private queueRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => this.flush());
  }

  private flush(): void {
    this.renderQueued = false;
    this.answerView.innerHTML = renderMarkdown(this.answer);
    this.onRender();
  }
}

/** An error as the table in docs/errors.md names it: HTTP status (before the answer) or in-band, gRPC code, message, retry-after. */
export function describeError(error: ChatError): string {
  const where =
    error.httpStatus === undefined ? "no response" : error.inBand ? "error mid-answer" : `HTTP ${error.httpStatus}`;
  // Said once: the gateway's own messages may already say it ("...; retry after 7s").
  const retry =
    error.retryAfterSeconds === undefined || /retry after \d/.test(error.message)
      ? ""
      : ` · retry after ${error.retryAfterSeconds} s`;
  const id = error.requestId ? ` · request ${error.requestId}` : "";
  return `${where} · ${error.codeName}: ${error.message}${retry}${id}`;
}
