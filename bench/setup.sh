#!/usr/bin/env bash
# What `npm run bench` needs beyond scripts/setup.sh: the reference implementation's Python env
# (FastAPI, uvicorn, openai) in .tools/bench-venv. Idempotent: quick when the env matches
# bench/reference/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

VENV=.tools/bench-venv
REQS=bench/reference/requirements.txt
if [ ! -x "$VENV/bin/uvicorn" ] || ! cmp -s "$REQS" "$VENV/requirements.txt"; then
  printf '[bench setup] installing the reference app env into %s\n' "$VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$VENV/requirements.txt"
fi
