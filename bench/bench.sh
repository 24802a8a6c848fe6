#!/usr/bin/env bash
# `npm run bench [-- --full | --smoke | --paths grpc,http | --out DIR]`: set up, then run bench/run.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
# The project's Node 24 (the `node` package), as `npm run` puts first on PATH, also when this script
# is run directly: every process the bench starts is a `process.execPath` of this one.
export PATH="$PWD/node_modules/.bin:$PATH"
# 10,000 open streams hold ~20,000 sockets across the processes.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node --import tsx bench/run.ts "$@"
