#!/usr/bin/env bash
# Runs a command that must not outlive the process that started it: when this script's stdin reaches
# end-of-file, which happens when the process holding the other end of the pipe dies, however it
# dies (SIGKILL included), the command is stopped at once (SIGKILL: whoever read its output and
# waited for its orderly stop is gone). SIGTERM and SIGINT sent to this script are passed on, for
# the command's own orderly stop. Exits with the command's status.
#
#   exit-with-stdin.sh COMMAND [ARGS...]
#
# `npm run start:cluster` (src/cluster.ts) runs Redis and each replica under it: Node cannot set
# PR_SET_PDEATHSIG, and a pipe works on every OS. (scripts/envoy-sidecar.sh does the same for Envoy.)
set -uo pipefail
(($# > 0)) || { echo "usage: $0 COMMAND [ARGS...]" >&2; exit 2; }

"$@" </dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM
trap 'kill -INT "$child" 2>/dev/null' INT
trap 'kill -KILL "$child" 2>/dev/null' USR1

# A background job's stdin is /dev/null unless redirected explicitly, hence the copy on fd 4.
exec 4<&0
(
  while read -r _; do :; done <&4
  kill -USR1 $$ 2>/dev/null
) &
watcher=$!
exec 4<&-

# `wait` returns early when a trapped signal arrives; wait again until the command has exited.
while :; do
  wait "$child"
  code=$?
  kill -0 "$child" 2>/dev/null || break
done
kill "$watcher" 2>/dev/null
exit "$code"
