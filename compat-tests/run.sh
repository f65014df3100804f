#!/usr/bin/env bash
# Runs the Go compatibility suites (etcd client/v3 + Kubernetes storage conformance)
# against a server binary that this script starts itself.
#
#   bash compat-tests/run.sh <server-binary> [oxcd|etcd]
#
# The server gets a fresh data dir and random free ports on 127.0.0.1 and is started
# with --watch-progress-notify-interval=1s (the Kubernetes progress-notify tests need
# it). Both version lines run against it:
#   3.7 line: client/v3 v3.7.x + k8s.io/apiserver v0.37.x   (go.mod)
#   3.6 line: client/v3 v3.6.x + k8s.io/apiserver v0.36.x   (go.036.mod, -tags k8s036)
# The server is stopped by its pid and its data dir removed on exit. Exits non-zero if
# any test of either line fails.
#
# Environment: COMPAT_LINES="037 036" (which lines to run), COMPAT_RUN (go test -run
# regexp), COMPAT_TEST_TIMEOUT (go test -timeout per line, default 20m),
# COMPAT_KEEP_LOGS=1 (keep the temp dir with the server log), COMPAT_CLUSTER=1 (start a
# 3-member cluster instead and run the tests through a member that does not lead).
set -euo pipefail

usage() { echo "usage: $0 <server-binary> [oxcd|etcd]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BIN="$(readlink -f "$1")"
KIND="${2:-}"
[ -x "$BIN" ] || { echo "$BIN: not an executable" >&2; exit 2; }
if [ -z "$KIND" ]; then
  case "$(basename "$BIN")" in *oxcd*) KIND=oxcd ;; *) KIND=etcd ;; esac
fi
case "$KIND" in oxcd|etcd) ;; *) usage ;; esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LINES="${COMPAT_LINES:-037 036}"
TEST_TIMEOUT="${COMPAT_TEST_TIMEOUT:-20m}"
RUN_FILTER="${COMPAT_RUN:-}"
PROGRESS_INTERVAL=1s

command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null 2>&1 || { echo "go not found (expected on PATH or in /usr/local/go/bin)" >&2; exit 2; }

log() { printf '[compat %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/oxcd-compat.XXXXXX")"
SERVER_PID=""

SERVER_PIDS=()

stop_one() {
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
}

stop_server() {
  stop_one "$SERVER_PID"
  for pid in "${SERVER_PIDS[@]}"; do stop_one "$pid"; done
  SERVER_PID=""
  SERVER_PIDS=()
}

cleanup() {
  local rc=$?
  stop_server
  if [ "${COMPAT_KEEP_LOGS:-0}" = 1 ]; then
    rm -rf "$WORK"/data-*
    log "kept $WORK (server and test logs)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! port_in_use "$p" && [ "$p" != "${1:-0}" ]; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# etcd before 3.6 only knows the experimental- name of the progress interval flag.
PROGRESS_FLAG=--watch-progress-notify-interval
if ! "$BIN" --help 2>&1 | grep -q -E '^\s*--watch-progress-notify-interval'; then
  PROGRESS_FLAG=--experimental-watch-progress-notify-interval
fi

# start_server <name>: a fresh server on a new data dir and new ports; sets ENDPOINT.
start_server() {
  local name="$1" ready=0 code i
  CLIENT_PORT="$(pick_port)"
  PEER_PORT="$(pick_port "$CLIENT_PORT")"
  ENDPOINT="http://127.0.0.1:$CLIENT_PORT"
  DATA_DIR="$WORK/data-$name"
  SERVER_LOG="$WORK/server-$name.log"
  local args=(
    --name compat
    --data-dir "$DATA_DIR"
    --listen-client-urls "$ENDPOINT"
    --advertise-client-urls "$ENDPOINT"
    "$PROGRESS_FLAG" "$PROGRESS_INTERVAL"
    --listen-peer-urls "http://127.0.0.1:$PEER_PORT"
    --initial-advertise-peer-urls "http://127.0.0.1:$PEER_PORT"
    --initial-cluster "compat=http://127.0.0.1:$PEER_PORT"
  )
  if [ "$KIND" = etcd ]; then
    args+=(
      --log-level warn
    )
  fi
  log "starting $KIND: $BIN ${args[*]}"
  "$BIN" "${args[@]}" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  # Ready when the client port accepts connections and /health answers 200 (a server
  # without /health is given the benefit of the doubt 10s after its port opened).
  for i in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server exited during startup; its log:"
      tail -n 50 "$SERVER_LOG" >&2
      return 1
    fi
    if port_in_use "$CLIENT_PORT"; then
      code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$ENDPOINT/health" 2>/dev/null || true)"
      if [ "$code" = 200 ] || [ "$i" -ge 100 ]; then
        ready=1
        [ "$code" = 200 ] || log "port open but GET /health = ${code:-no answer}; going on"
        break
      fi
    fi
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    log "server not serving on $ENDPOINT after 30s"
    tail -n 50 "$SERVER_LOG" >&2
    return 1
  fi
  log "$KIND (pid $SERVER_PID) serving on $ENDPOINT"
}

# start_cluster <name>: COMPAT_CLUSTER=1 — three members of the same binary
# (the flags of scripts/cluster); ENDPOINT is a member that does not lead,
# so every write and linearizable read goes through raft between members.
start_cluster() {
  local name="$1" i cp pp initial="" eps=() logs=() dirs=() follower="" code
  local cports=() pports=()
  for i in 0 1 2; do
    cp="$(pick_port)"; pp="$(pick_port "$cp")"
    cports+=("$cp"); pports+=("$pp")
    initial+="${initial:+,}m$i=http://127.0.0.1:$pp"
  done
  for i in 0 1 2; do
    local url="http://127.0.0.1:${cports[$i]}" dir="$WORK/data-$name-m$i" log="$WORK/server-$name-m$i.log"
    "$BIN" --name "m$i" --data-dir "$dir" \
      --listen-client-urls "$url" --advertise-client-urls "$url" \
      --listen-peer-urls "http://127.0.0.1:${pports[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${pports[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --initial-cluster-token compat-cluster \
      "$PROGRESS_FLAG" "$PROGRESS_INTERVAL" >"$log" 2>&1 &
    SERVER_PIDS+=($!)
    eps+=("$url"); logs+=("$log"); dirs+=("$dir")
  done
  local healthy metrics
  for _ in $(seq 1 300); do
    follower=""
    healthy=1
    for i in 0 1 2; do
      code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "${eps[$i]}/health" 2>/dev/null || true)"
      [ "$code" = 200 ] || healthy=0
    done
    if [ "$healthy" = 1 ]; then
      for i in 0 1 2; do
        # (not piped into grep -q: with pipefail, curl's SIGPIPE would count)
        metrics="$(curl -s -m 2 "${eps[$i]}/metrics" || true)"
        if grep -q '^etcd_server_is_leader 0' <<<"$metrics"; then
          follower="$i"; break
        fi
      done
    fi
    [ -n "$follower" ] && break
    sleep 0.1
  done
  if [ -z "$follower" ]; then
    log "cluster not healthy after 30s"
    for l in "${logs[@]}"; do tail -n 20 "$l" >&2; done
    return 1
  fi
  ENDPOINT="${eps[$follower]}"
  SERVER_PID="${SERVER_PIDS[$follower]}"
  SERVER_LOG="${logs[$follower]}"
  DATA_DIR="$WORK/data-$name-m*"
  export OXCD_CLUSTER_SIZE=3
  log "$KIND: 3-member cluster; testing through member m$follower (not the leader) at $ENDPOINT"
}

export OXCD_WATCH_PROGRESS_NOTIFY_INTERVAL="$PROGRESS_INTERVAL"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

overall=0
summary=()
cd "$HERE"
for line in $LINES; do
  case "$line" in
    037) FLAGS=() ;;
    036) FLAGS=(-modfile=go.036.mod -tags k8s036) ;;
    *) echo "unknown line $line (want 037 or 036)" >&2; exit 2 ;;
  esac
  out="$WORK/test-$line.log"

  t0="$(now)"
  go list "${FLAGS[@]}" -deps -test ./... >/dev/null
  t1="$(now)"
  # Build (and start) the test binary without running tests, to time the compile.
  OXCD_ENDPOINT=http://127.0.0.1:1 go test "${FLAGS[@]}" -count=1 -run '^$' ./... >/dev/null
  t2="$(now)"

  # A fresh server per line: some tests need history from revision 1 (uncompacted).
  if [ "${COMPAT_CLUSTER:-0}" = 1 ]; then
    start_cluster "$line"
  else
    start_server "$line"
  fi
  export OXCD_ENDPOINT="$ENDPOINT"
  log "line $line: go test ${FLAGS[*]} -count=1 -timeout $TEST_TIMEOUT ./... against $KIND"
  run=(go test "${FLAGS[@]}" -count=1 -timeout "$TEST_TIMEOUT" -v)
  [ -z "$RUN_FILTER" ] || run+=(-run "$RUN_FILTER")
  set +e
  "${run[@]}" ./... >"$out" 2>&1
  rc=$?
  set -e
  t3="$(now)"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server died during the tests; last lines of its log:"
    tail -n 50 "$SERVER_LOG" >&2
    rc=1
  fi
  stop_server
  [ "${COMPAT_KEEP_LOGS:-0}" = 1 ] || rm -rf $DATA_DIR

  # Failures with their output, then the per-test verdicts, then the go test result.
  grep -a -v -E '^(=== (RUN|PAUSE|CONT|NAME)|\s+--- (PASS|SKIP)|--- (PASS|SKIP))' "$out" \
    | grep -a -E -B2 -A40 -e '--- FAIL|^panic:|^FAIL|timed out' | head -n 2000 || true
  grep -a -E '^--- (PASS|FAIL|SKIP)' "$out" | sed 's/^/  /' || true
  tail -n 3 "$out"
  passed=$(grep -a -c -E '^--- PASS' "$out" || true)
  failed=$(grep -a -c -E '^--- FAIL' "$out" || true)
  skipped=$(grep -a -c -E '^--- SKIP' "$out" || true)
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1 # build failure, panic or timeout: count it
  fi
  [ "$rc" -eq 0 ] || overall=1
  what="$KIND"
  [ "${COMPAT_CLUSTER:-0}" != 1 ] || what="$KIND (3-member cluster, through a follower)"
  summary+=("line $line against $what: $passed passed, $failed failed, $skipped skipped (deps $(secs "$t0" "$t1")s, compile $(secs "$t1" "$t2")s, tests $(secs "$t2" "$t3")s)")
  total_pass=$(( ${total_pass:-0} + passed ))
  total_fail=$(( ${total_fail:-0} + failed ))
  total_skip=$(( ${total_skip:-0} + skipped ))
done

echo
for s in "${summary[@]}"; do echo "$s"; done
echo "compat: ${total_pass:-0} passed, ${total_fail:-0} failed, ${total_skip:-0} skipped"
exit "$overall"
