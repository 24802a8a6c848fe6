#!/usr/bin/env bash
# Regenerates everything derived from proto/: the TypeScript code in src/gen/ (ts-proto through buf)
# and the descriptor set that Envoy's transcoder and the server's reflection service load.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p third_party/google/api third_party/google/rpc third_party/grpc/health/v1
for f in annotations.proto http.proto httpbody.proto; do
  cp node_modules/google-proto-files/google/api/$f third_party/google/api/$f
done
# google.rpc.Status with ErrorInfo and RetryInfo: the details of every error status
# (grpc-status-details-bin). In the descriptor set too, so Envoy's transcoder can print them as JSON.
# google.rpc.Code: the table of status codes the web client's GrpcCode is (src/web/errors.ts).
for f in status.proto error_details.proto code.proto; do
  cp node_modules/google-proto-files/google/rpc/$f third_party/google/rpc/$f
done
# In the descriptor set so server reflection can describe the health service to grpcurl.
cp node_modules/grpc-health-check/proto/health/v1/health.proto third_party/grpc/health/v1/health.proto

buf=node_modules/.bin/buf
$buf generate --path proto/chat --path third_party/google/rpc
# Imports stay in the set: Envoy needs google/api/{annotations,http}.proto to read the HTTP rules.
$buf build --path proto/chat --path third_party/grpc --path third_party/google/rpc -o src/gen/chat.binpb
