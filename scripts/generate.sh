#!/usr/bin/env bash
# Regenerates everything derived from proto/: the TypeScript code in src/gen/ (ts-proto through buf)
# and the descriptor set that Envoy's transcoder and the server's reflection service load.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p third_party/google/api
for f in annotations.proto http.proto; do
  cp node_modules/google-proto-files/google/api/$f third_party/google/api/$f
done

buf=node_modules/.bin/buf
$buf generate --path proto/chat
# Imports stay in the set: Envoy needs google/api/{annotations,http}.proto to read the HTTP rules.
$buf build --path proto/chat -o src/gen/chat.binpb
