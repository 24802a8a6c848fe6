#!/usr/bin/env bash
# Static checks CI runs before the tests: types, proto lint and breaking changes, Envoy's config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

echo "== tsc"
node_modules/.bin/tsc -p tsconfig.json
# The chat page, with DOM types and without Node's: what it imports must run in a browser.
node_modules/.bin/tsc -p src/web/page/tsconfig.json

echo "== buf lint"
node_modules/.bin/buf lint

echo "== buf breaking (against the first published chat.v1)"
bash scripts/proto-breaking.sh

echo "== envoy --mode validate"
.tools/bin/envoy --mode validate -c envoy.yaml --log-level warn
