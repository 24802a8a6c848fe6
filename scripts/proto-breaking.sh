#!/usr/bin/env bash
# chat.v1 is a published contract: compare proto/ with the commit that first added it, so no
# change since then (in one commit or spread over many) may break a generated client.
# The google/api imports are not in git, so the old side is built from a scratch copy.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(git log --diff-filter=A --format=%H -- proto/chat/v1/chat.proto 2>/dev/null | tail -n 1)
if [ -z "$base" ]; then
  echo "no committed chat.v1 yet: nothing to compare against"
  exit 0
fi
old=$(mktemp -d)
trap 'rm -rf "$old"' EXIT
git archive "$base" proto buf.yaml | tar -x -C "$old"
cp -r third_party "$old/"
(cd "$old" && "$OLDPWD/node_modules/.bin/buf" build -o image.binpb)
node_modules/.bin/buf breaking --against "$old/image.binpb"
echo "no breaking change since ${base:0:12}"
