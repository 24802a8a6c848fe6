// The folders of src/ and which way their imports go (npm run check fails on a back-edge or a
// cycle). From the bottom up:
//   gen/            generated from proto/ (never edited); only contract/ imports it
//   contract/       chat.v1 for Node (chat.ts) and browsers (web.ts), the descriptor set
//   upstream/       the provider-neutral port: ChatUpstream, request, events, errors; router, fallback
//   providers/X/    one upstream provider each (openai/): imports the port only
//   redis/          what the Redis users share about an ioredis connection: stands alone
//   resume/         resumable streams' event log (memory, Redis) and this process's generations: contract/, redis/
//   chat/           the Chat and ListModels handlers: contract/, upstream/, resume/; no provider
//   limits/         caller budgets: contract/, upstream/, chat/ (error details), redis/
//   observability/  logs, metrics, tracing: contract/, upstream/, chat/ (types)
//   conversations/  the conversation store (SQLite, PostgreSQL) and ConversationService: contract/, upstream/ (types)
//   api/X/          one API shape each (openai/: Chat Completions, models): contract/, upstream/, chat/
//   server/         the composition root: everything above; nothing imports it but dev/ and the entries
//   dev/            the local launcher (npm start, the cluster, Envoy's config): server/, demo/, observability/
//   demo/           npm start's demo model: stands alone
//   web/            the browser client and page: contract/web.ts only
//   cli/            the terminal client: web/, contract/
// The entry points (src/*.ts: main, stack, cluster, client) may import any folder.
const folder = (name) => `^src/${name}/`;

/** `from` may import only what `allowed` lists (besides itself, npm packages and Node's). */
function only(name, allowed, comment) {
  return {
    name: `${name}-imports`,
    comment,
    severity: "error",
    from: { path: folder(name) },
    to: { path: "^src/", pathNot: [folder(name), ...allowed.map(folder)] },
  };
}

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "A cycle makes load order matter and folders impossible to understand alone.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "gen-only-through-contract",
      comment: "Generated code is walled off: src/contract/ is its one door.",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/contract/", "^src/gen/"] },
      to: { path: "^src/gen/" },
    },
    {
      name: "no-sdk-outside-providers",
      comment: "Everything that knows a provider's SDK lives in its folder under src/providers/.",
      severity: "error",
      from: { path: "^src/", pathNot: ["^src/providers/"] },
      to: { path: "node_modules/openai/" },
    },
    only("contract", ["gen"], "The contract knows only the generated code."),
    only("upstream", [], "The port knows no provider, no gRPC handler, no server."),
    only("providers", ["upstream"], "A provider implements the port and knows nothing else of the gateway."),
    only("redis", [], "Connection helpers for ioredis: nothing of the gateway."),
    only("resume", ["contract", "redis"], "The event log keeps chat.v1 messages; it knows no handler, no upstream."),
    only("chat", ["contract", "upstream", "resume"], "The handler speaks to the ports, never to a provider or the bookkeeping."),
    only("limits", ["contract", "upstream", "chat", "redis"], "Budgets sit beside the handler, below the server."),
    only("observability", ["contract", "upstream", "chat"], "Logs, metrics and traces are told things; they call nothing above."),
    only("conversations", ["contract", "upstream"], "The store keeps turns in the port's terms; it knows no handler."),
    only("api", ["contract", "upstream", "chat", "resume"], "An API shape translates to and from the chat pipeline."),
    only("server", ["contract", "upstream", "providers", "chat", "limits", "observability", "api", "conversations", "resume"], "The composition root."),
    only("dev", ["server", "demo", "observability"], "The local launcher wraps the server."),
    only("demo", [], "The demo model stands alone: it is a separate server."),
    only("web", ["contract"], "The browser client needs no Node and nothing of the server."),
    only("cli", ["web", "contract"], "The terminal client speaks to the gateway as any client does."),
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    includeOnly: "^src/|node_modules/openai/",
    exclude: { path: "^src/gen/google/" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default", "types"] },
  },
};
