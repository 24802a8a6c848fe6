// Builds the chat page (src/web/page) into dist/page: index.html, app.js (the page and everything it
// imports, bundled and minified by esbuild) and app.css. Envoy serves these three files itself
// (envoy.yaml's `page` routes, `direct_response` from a file read at start-up), so each must fit
// under the route table's max_direct_response_body_size_bytes: checked here, with a clear message,
// rather than by Envoy refusing to start.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const page = join(root, "src/web/page");
const out = join(root, "dist/page");
mkdirSync(out, { recursive: true });

await build({
  // app.js and app.css.
  entryPoints: [
    { in: join(page, "main.ts"), out: "app" },
    { in: join(page, "style.css"), out: "app" },
  ],
  outdir: out,
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  // Browsers of the last few years (fetch streams, TextDecoderStream, <dialog>); esbuild lowers
  // syntax for them, it adds no polyfills.
  target: ["chrome120", "firefox120", "safari17"],
  legalComments: "none",
  logLevel: "warning",
  tsconfig: join(page, "tsconfig.json"),
});
copyFileSync(join(page, "index.html"), join(out, "index.html"));

const envoy = parse(readFileSync(join(root, "envoy.yaml"), "utf8"));
const routes = envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config;
// Envoy's default when unset: 4 KiB.
const limit = Number(routes.max_direct_response_body_size_bytes ?? 4096);
for (const route of routes.virtual_hosts.flatMap((host) => host.routes)) {
  const file = route.direct_response?.body?.filename;
  if (!file) continue;
  const size = statSync(join(root, file)).size;
  if (!(size <= limit)) {
    throw new Error(
      `${file} is ${size} bytes, over envoy.yaml's max_direct_response_body_size_bytes (${limit}): Envoy would refuse to start`,
    );
  }
  console.error(`[setup] ${file}: ${(size / 1024).toFixed(1)} KiB`);
}
