#!/usr/bin/env node
// `chat-gateway` / `npx chat-gateway`: the terminal client. This file is plain JavaScript that any
// Node can read, so it can say what is missing; the client itself is built into dist/ (TypeScript).
// In a clone, `npx chat-gateway` puts node_modules/.bin first on PATH, where the `node` package
// installed by `npm run setup` is Node 24.
import { existsSync } from "node:fs";

const built = new URL("../dist/cli/main.js", import.meta.url);
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `chat-gateway needs Node 24 or later, and this is ${process.version}.\n` +
      "In a clone of chat-gateway, run `npm run setup` once (it installs Node 24 into node_modules),\n" +
      "then `npx chat-gateway ...`, which runs it with that Node.\n",
  );
  process.exit(1);
}
if (!existsSync(built)) {
  process.stderr.write(
    "chat-gateway is not built yet: run `npm run setup` once in the project folder (it installs the\n" +
      "dependencies and builds dist/), then `npx chat-gateway ...` again.\n",
  );
  process.exit(1);
}

const { run } = await import(built.href);
process.exitCode = await run(process.argv.slice(2), process);
// The process ends by itself once the call's connection has closed (a cancel is sent before it
// goes); this is only a backstop, and does not keep it alive.
setTimeout(() => process.exit(), 3000).unref();
