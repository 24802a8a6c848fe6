// `npm run deploy:render`: writes what the front Envoy of docker-compose.yml and deploy/ mounts at
// /etc/envoy, into deploy/generated/ (not committed: every file is derived):
//   envoy.json        envoy.yaml rendered for the replicas behind one DNS name (default `chat:50051`:
//                     compose's service, deploy/'s headless Service), reading the descriptor below
//   chat.binpb        the descriptor set, as `npm run generate` built it from proto/
//   envoy-sidecar.sh  the script Envoy runs under, so it drains before it stops
//   index.html, app.js, app.css  the chat page Envoy serves at `/`, as `npm run setup` built it
// deploy/kustomization.yaml turns them into a ConfigMap (configMapGenerator); compose mounts the folder.
//
//   node dist/dev/render-deploy.js [--service NAME:PORT] [--out DIR] [--config-dir DIR]
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ROOT, renderEnvoyConfig } from "./envoy.js";

/** Where the front Envoy's container finds these files. */
export const ENVOY_CONFIG_DIR = "/etc/envoy";
/** The chat page's files, as scripts/build-web.mjs writes them to dist/page. */
const PAGE_FILES = ["index.html", "app.js", "app.css"];
/** The replicas' DNS name and gRPC port, as docker-compose.yml and deploy/chat.yaml name them. */
export const REPLICAS_SERVICE = { address: "chat", port: 50051 };

export function renderDeploy(outDir: string, service = REPLICAS_SERVICE, configDir = ENVOY_CONFIG_DIR): string[] {
  mkdirSync(outDir, { recursive: true });
  const config = renderEnvoyConfig({
    serviceEndpoints: [service],
    // envoy.yaml's own addresses: the listener on every interface, admin on loopback only.
    httpPort: 8080,
    adminPort: 9901,
    descriptorPath: join(configDir, "chat.binpb"),
    pageDir: configDir,
  });
  writeFileSync(join(outDir, "envoy.json"), `${config}\n`);
  copyFileSync(join(ROOT, "src", "gen", "chat.binpb"), join(outDir, "chat.binpb"));
  copyFileSync(join(ROOT, "scripts", "envoy-sidecar.sh"), join(outDir, "envoy-sidecar.sh"));
  // Side by side with the rest: a ConfigMap has no folders.
  for (const file of PAGE_FILES) copyFileSync(join(ROOT, "dist", "page", file), join(outDir, file));
  return ["envoy.json", "chat.binpb", "envoy-sidecar.sh", ...PAGE_FILES];
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(ROOT, "dist", "dev", "render-deploy.js")) {
  // --config-dir: where envoy.json says its files are, instead of /etc/envoy (scripts/check.sh
  // validates a copy that points at the folder it was rendered into: `envoy --mode validate` reads them).
  const { values } = parseArgs({
    options: { service: { type: "string" }, out: { type: "string" }, "config-dir": { type: "string" } },
  });
  const [address, port] = (values.service ?? `${REPLICAS_SERVICE.address}:${REPLICAS_SERVICE.port}`).split(":");
  if (!address || !/^\d+$/.test(port ?? "")) {
    process.stderr.write("usage: render-deploy [--service NAME:PORT] [--out DIR] [--config-dir DIR]\n");
    process.exit(2);
  }
  const out = resolve(values.out ?? join(ROOT, "deploy", "generated"));
  const files = renderDeploy(
    out,
    { address, port: Number(port) },
    values["config-dir"] && resolve(values["config-dir"]),
  );
  process.stdout.write(
    `rendered for the replicas behind ${address}:${port}: ${files.map((f) => join(out, f)).join(", ")}\n`,
  );
}
