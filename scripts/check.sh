#!/usr/bin/env bash
# Static checks CI runs before the tests: formatting and lint, types, the folders' import rules,
# proto lint and breaking changes, Envoy's config, and deploy/'s Kubernetes manifests against the
# Kubernetes schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== biome (formatting and lint: biome.jsonc; \`npm run format\` fixes what it can)"
# Writes nothing; a warning fails as an error does, so none piles up.
node_modules/.bin/biome ci --error-on-warnings .

echo "== tsc"
node_modules/.bin/tsc -p tsconfig.json
# The chat page, with DOM types and without Node's: what it imports must run in a browser.
node_modules/.bin/tsc -p src/web/page/tsconfig.json

echo "== dependency-cruiser (the folders' import rules: .dependency-cruiser.cjs)"
node_modules/.bin/depcruise src --config .dependency-cruiser.cjs

echo "== buf lint"
node_modules/.bin/buf lint

echo "== buf breaking (against the first published chat.v1)"
bash scripts/proto-breaking.sh

echo "== envoy --mode validate"
.tools/bin/envoy --mode validate -c envoy.yaml --log-level warn

echo "== envoy --mode validate, rendered for deploy/ and docker-compose.yml (a DNS cluster)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
node dist/dev/render-deploy.js --out "$scratch" --config-dir "$scratch" >/dev/null
.tools/bin/envoy --mode validate -c "$scratch/envoy.json" --log-level warn

echo "== deploy/: kustomize build, kubernetes-validate --strict (the schemas it ships; no cluster)"
node dist/dev/render-deploy.js >/dev/null
.tools/bin/kustomize build deploy > "$scratch/deploy.yaml"
# The oldest Kubernetes the manifests are meant for (native gRPC probes are GA since 1.27), and the
# newest the validator knows.
for version in 1.29.0 1.37.0; do
  .tools/k8s-venv/bin/python -m kubernetes_validate --strict --quiet -k "$version" "$scratch/deploy.yaml" deploy/secret.example.yaml
done
