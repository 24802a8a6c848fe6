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
buf=$PWD/node_modules/.bin/buf
(cd "$old" && "$buf" build --path proto/chat -o image.binpb)
"$buf" build --path proto/chat -o "$old/current.binpb"
"$buf" breaking "$old/current.binpb" --against "$old/image.binpb" --exclude-imports
echo "no breaking change since ${base:0:12}"
