#!/usr/bin/env bash
# Runs Envoy so that it stops last: on SIGTERM or SIGINT it stops taking new requests (fails its
# health check, drains its listeners gracefully), waits until no request is in flight through it
# (the service behind it is draining its streams meanwhile), and only then stops Envoy. Envoy alone
# would exit at once on the signal and cut every HTTP stream, while the service gives its gRPC
# callers a grace period.
#
#   envoy-sidecar.sh [--exit-with-stdin] ENVOY_BINARY [ENVOY ARGS...]
#
# --exit-with-stdin: stop Envoy at once when stdin reaches end-of-file, which happens when the
#   process holding the other end of the pipe dies, however it dies (SIGKILL included). `npm start`
#   uses it so its Envoy never outlives it.
# SHUTDOWN_GRACE_MS (default 30000): how long the service lets streams run after the signal. Envoy
#   waits that long plus 5 s for them (the service's in-band shutdown errors must get through),
#   then stops anyway.
# ENVOY_PID_FILE: where to write Envoy's process id (optional).
#
#   envoy-sidecar.sh --ready ADMIN_ADDRESS_FILE
#
# Exits 0 when the Envoy whose admin address is in that file (--admin-address-path) answers LIVE on
# /ready (initialized, not draining), 1 otherwise: deploy/'s readiness and liveness probe, since
# Envoy's admin port listens on the pod's loopback only.
#
# Bash only, with no curl: the official envoyproxy/envoy image has bash but no HTTP client, so the
# admin API is spoken over bash's /dev/tcp.
set -uo pipefail

probe_ready=""
[[ ${1:-} == --ready ]] && probe_ready=${2:?usage: $0 --ready ADMIN_ADDRESS_FILE}
watch_stdin=false
if [[ ${1:-} == --exit-with-stdin ]]; then
  watch_stdin=true
  shift
fi
(($# > 0)) || { echo "usage: $0 [--exit-with-stdin] ENVOY_BINARY [ARGS...]" >&2; exit 2; }

grace_ms=${SHUTDOWN_GRACE_MS:-30000}
[[ $grace_ms =~ ^[0-9]+$ ]] || grace_ms=30000
extra_ms=5000

# The admin address: where Envoy is told to write it, or a file of our own.
admin_file=""
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  [[ ${args[i]} == --admin-address-path ]] && admin_file=${args[i + 1]}
done
own_dir=""
if [[ -n $probe_ready ]]; then
  admin_file=$probe_ready
elif [[ -z $admin_file ]]; then
  own_dir=$(mktemp -d)
  admin_file=$own_dir/admin-address
  args+=(--admin-address-path "$admin_file")
fi

log() { printf 'envoy-sidecar: %s\n' "$*" >&2; }

# admin METHOD PATH: the response body of an admin request (HTTP/1.1; Envoy's admin refuses 1.0).
# A subshell, so a failed connection ends only it.
admin() (
  [[ -r $admin_file ]] || exit 1
  address=$(<"$admin_file")
  host=${address%:*} port=${address##*:}
  exec 3<>"/dev/tcp/$host/$port" || exit 1
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$2" "$host" >&3
  chunked=false body=""
  while IFS= read -r line <&3; do
    line=${line%$'\r'}
    [[ -z $line ]] && break
    [[ ${line,,} == "transfer-encoding: chunked" ]] && chunked=true
  done
  if $chunked; then
    while IFS= read -r size <&3; do
      size=${size%$'\r'}
      size=${size%%;*}
      [[ $size =~ ^[0-9a-fA-F]+$ ]] || break
      ((16#$size == 0)) && break
      LC_ALL=C IFS= read -r -N $((16#$size)) chunk <&3
      body+=$chunk
      IFS= read -r line <&3 # the CRLF after the chunk
    done
  else
    while IFS= read -r line <&3 || [[ -n $line ]]; do body+=$line$'\n'; done
  fi
  printf '%s' "$body"
) 2>/dev/null

if [[ -n $probe_ready ]]; then
  [[ $(admin GET /ready) == LIVE* ]]
  exit
fi

# Requests in flight on Envoy's HTTP listeners, plus response bytes still waiting to be written to
# slow clients (the admin interface's own left out). Idle keep-alive connections do not count: they
# carry nothing, and nothing closes them.
in_flight() {
  local stats total=0 name value
  stats=$(admin GET '/stats?filter=downstream_%28rq_active%7Ccx_tx_bytes_buffered%29%24') || return 1
  while read -r name value; do
    [[ $name =~ ^http\.[^.]+\.downstream_(rq_active|cx_tx_bytes_buffered):$ && $name != http.admin.* ]] || continue
    ((total += value))
  done <<<"$stats"
  echo "$total"
}

envoy_pid=""
watch_pid=""
stopping=false

finish() {
  local code=0
  if [[ -n $envoy_pid ]] && kill -0 "$envoy_pid" 2>/dev/null; then
    kill -TERM "$envoy_pid" 2>/dev/null
    # Envoy stops in well under a second; do not let a stuck one hold the container.
    for _ in $(seq 50); do kill -0 "$envoy_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$envoy_pid" 2>/dev/null
  fi
  [[ -n $envoy_pid ]] && { wait "$envoy_pid" 2>/dev/null; code=$?; }
  [[ -n $watch_pid ]] && kill "$watch_pid" 2>/dev/null
  [[ -n $own_dir ]] && rm -rf "$own_dir"
  # Envoy's exit status after our SIGTERM is 0; 143 would only say that we sent it.
  ((code == 143)) && code=0
  exit "$code"
}

drain_then_stop() {
  $stopping && return
  stopping=true
  log "draining: failing health checks, closing listeners gracefully"
  admin POST /healthcheck/fail >/dev/null
  admin POST '/drain_listeners?graceful' >/dev/null
  local deadline=$((SECONDS + (grace_ms + extra_ms + 999) / 1000)) open
  while ((SECONDS < deadline)) && kill -0 "$envoy_pid" 2>/dev/null; do
    open=$(in_flight) || break
    ((open == 0)) && break
    sleep 0.1
  done
  ((SECONDS >= deadline)) && log "deadline passed with requests in flight; stopping Envoy"
  finish
}

trap drain_then_stop TERM INT
trap finish USR1

"${args[@]}" </dev/null &
envoy_pid=$!
[[ -n ${ENVOY_PID_FILE:-} ]] && echo "$envoy_pid" >"$ENVOY_PID_FILE"

if $watch_stdin; then
  # Reads stdin until end-of-file, then tells this script to stop Envoy now. (A background job's
  # stdin is /dev/null unless redirected explicitly, hence the copy on fd 4.)
  exec 4<&0
  (
    while read -r _; do :; done <&4
    kill -USR1 $$ 2>/dev/null
  ) &
  watch_pid=$!
  exec 4<&-
fi

# `wait` returns early when a trapped signal arrives; the trap then runs and exits.
while kill -0 "$envoy_pid" 2>/dev/null; do wait "$envoy_pid"; done
finish
