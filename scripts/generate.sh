#!/usr/bin/env bash
# Regenerates everything derived from proto/: the TypeScript code in src/gen/ (ts-proto through buf)
# and the descriptor set that Envoy's transcoder and the server's reflection service load.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p third_party/google/api third_party/grpc/health/v1
for f in annotations.proto http.proto; do
  cp node_modules/google-proto-files/google/api/$f third_party/google/api/$f
done
# In the descriptor set so server reflection can describe the health service to grpcurl.
cp node_modules/grpc-health-check/proto/health/v1/health.proto third_party/grpc/health/v1/health.proto

buf=node_modules/.bin/buf
$buf generate --path proto/chat
# Imports stay in the set: Envoy needs google/api/{annotations,http}.proto to read the HTTP rules.
$buf build --path proto/chat --path third_party/grpc -o src/gen/chat.binpb
