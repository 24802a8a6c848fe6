// Every relative link in README.md and docs/*.md resolves: the file or folder it names exists, and
// an anchor (#...) names a heading of its page by GitHub's slug rules. The README was split into
// docs/ pages that link into each other, and into the source tree, which moves; a link that no
// longer resolves fails here rather than on GitHub. External (http:, https:, mailto:) links are not
// fetched: the test runs offline.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import GithubSlugger from "github-slugger";
import { Lexer, Parser, marked, type Token, type Tokens } from "marked";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DOCS = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => `docs/${name}`),
];

const tokensOf = (file: string): Token[] => Lexer.lex(readFileSync(file, "utf8"));

/** The anchors GitHub gives a page's headings: the heading's text as rendered (no Markdown), slugged,
 *  a repeated heading suffixed -1, -2, ... in order (github-slugger keeps that count per page). */
function anchorsIn(markdown: string): Set<string> {
  const slugger = new GithubSlugger();
  const parser = new Parser();
  const anchors = new Set<string>();
  marked.walkTokens(Lexer.lex(markdown), (token) => {
    if (token.type === "heading")
      anchors.add(slugger.slug(parser.parseInline((token as Tokens.Heading).tokens, parser.textRenderer)));
  });
  return anchors;
}
const anchorsCache = new Map<string, Set<string>>();
function anchorsOf(file: string): Set<string> {
  if (!anchorsCache.has(file)) anchorsCache.set(file, anchorsIn(readFileSync(file, "utf8")));
  return anchorsCache.get(file)!;
}

/** Why a link from `file` does not resolve, or undefined when it does. */
function problemOf(file: string, href: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith("//")) return undefined; // external: not fetched
  const hash = href.indexOf("#");
  const path = decodeURIComponent(hash === -1 ? href : href.slice(0, hash));
  const anchor = hash === -1 ? undefined : decodeURIComponent(href.slice(hash + 1));
  // On GitHub a path starting with / is from the repository's root, any other from the page's folder.
  const target = path === "" ? file : path.startsWith("/") ? join(ROOT, path) : resolve(dirname(file), path);
  if (relative(ROOT, target).startsWith("..")) return `${path} is outside the repository`;
  if (!existsSync(target)) return `${relative(ROOT, target)} does not exist`;
  if (anchor === undefined) return undefined;
  if (statSync(target).isDirectory() || !target.endsWith(".md"))
    return `#${anchor} on ${relative(ROOT, target)}, which has no headings`;
  return anchorsOf(target).has(anchor) ? undefined : `${relative(ROOT, target)} has no heading #${anchor}`;
}

describe("documentation links", () => {
  it.each(DOCS)("every link in %s resolves", (name) => {
    const file = join(ROOT, name);
    const links: string[] = [];
    marked.walkTokens(tokensOf(file), (token) => {
      if (token.type === "link" || token.type === "image") links.push((token as Tokens.Link | Tokens.Image).href);
    });
    const problems = links.flatMap((href) => {
      const problem = problemOf(file, href);
      return problem ? [`${href}: ${problem}`] : [];
    });
    expect(problems).toEqual([]);
  });

  it("finds the links and headings it checks", () => {
    // Guards the test itself: a lexer that found no links would pass every page above.
    const readme = join(ROOT, "README.md");
    let links = 0;
    marked.walkTokens(tokensOf(readme), (token) => {
      if (token.type === "link") links++;
    });
    expect(links).toBeGreaterThan(10);
    expect(anchorsOf(join(ROOT, "docs", "api.md"))).toContain("from-a-terminal-npx-chat-gateway");
    expect([...anchorsIn("# Limits\n## The `MAX_*` limits: what (each) bounds\n## Limits\n### Limits\n")]).toEqual([
      "limits",
      "the-max_-limits-what-each-bounds",
      "limits-1",
      "limits-2",
    ]);
  });
});
