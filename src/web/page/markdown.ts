// Model output → HTML that cannot run script. Two layers, each enough for the usual attacks alone:
// raw HTML in the model's text is shown as the text it is (marked's `html` tokens escaped), and
// DOMPurify cleans whatever marked made of the Markdown (a `javascript:` link, say). The page's
// Content-Security-Policy (envoy.yaml) is the third: no inline script, no remote images.
import { Marked } from "marked";
import DOMPurify from "dompurify";

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

const marked = new Marked({
  gfm: true,
  async: false,
  renderer: {
    html: ({ text }) => escapeHtml(text),
  },
});

// Links open in a new tab, and give the target no handle on this page.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function renderMarkdown(text: string): string {
  return DOMPurify.sanitize(marked.parse(text) as string);
}
