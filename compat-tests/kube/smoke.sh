#!/usr/bin/env bash
# kube-apiserver smoke test against an etcd-compatible server.
#
#   compat-tests/kube/smoke.sh SERVER_BINARY KUBE_BIN_DIR
#
# SERVER_BINARY is oxcd or a real etcd (KUBE_SMOKE_SERVER=etcd|oxcd overrides the guess
# made from `SERVER_BINARY --version`); KUBE_BIN_DIR holds kube-apiserver and kubectl
# (build.sh). Starts the server on a fresh data dir and random loopback ports, a
# kube-apiserver on top of it (token auth, RBAC, compaction every minute) and drives it
# with kubectl: CRUD of namespaces, configmaps, secrets and deployments, conflicts,
# watches, paginated lists, a compaction, and a restart of the server under a running
# apiserver and watch. Prints one line per check and exits non-zero if any failed.
#
# Environment: KUBE_SMOKE_CLUSTER=1 (three members instead of one, the apiserver given
# all three, and the restart hits the leader), KUBE_SMOKE_TIMEOUT (overall limit in seconds, default 600),
# KUBE_SMOKE_STOP_TIMEOUT (seconds the server may take to exit on SIGTERM, default 30),
# KUBE_SMOKE_KEEP=1 (keep the work dir with all logs), KUBE_SMOKE_WORKDIR (where to put it).
# Only processes started by this script are stopped, by their PIDs.
set -uo pipefail

usage() { echo "usage: $0 SERVER_BINARY KUBE_BIN_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
SERVER_BIN="$(readlink -f "$1")"
KUBE_BIN="$(readlink -f "$2")"
[[ -x "$SERVER_BIN" ]] || { echo "not executable: $1" >&2; exit 2; }
[[ -x "$KUBE_BIN/kube-apiserver" && -x "$KUBE_BIN/kubectl" ]] ||
  { echo "kube-apiserver or kubectl missing in $2 (run compat-tests/kube/build.sh)" >&2; exit 2; }
for tool in openssl python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

KIND="${KUBE_SMOKE_SERVER:-}"
if [[ -z "$KIND" ]]; then
  if "$SERVER_BIN" --version 2>/dev/null | grep -qi '^oxcd'; then KIND=oxcd; else KIND=etcd; fi
fi
[[ "$KIND" == etcd || "$KIND" == oxcd ]] || { echo "KUBE_SMOKE_SERVER must be etcd or oxcd" >&2; exit 2; }

TOTAL_TIMEOUT="${KUBE_SMOKE_TIMEOUT:-600}"
# The traps may run while a check's output is redirected: they write to these copies.
exec 8>&1 9>&2
START_TS=$(date +%s)
W="$(mktemp -d "${KUBE_SMOKE_WORKDIR:-${TMPDIR:-/tmp}}/kube-smoke.XXXXXX")"
PIDS_FILE="$W/pids"
: >"$PIDS_FILE"
SERVER_PID=""
MEMBER_PIDS=()
APISERVER_PID=""
WATCHDOG_PID=""
PASSED=0
FAILED=0
FAILURES=()

log() { printf '[%4ss] %s\n' "$(($(date +%s) - START_TS))" "$*"; }
pass() { PASSED=$((PASSED + 1)); log "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); FAILURES+=("$*"); log "FAIL $*"; }
# check NAME CMD...: runs CMD (stdout+stderr kept in $W/last.out), pass/fail on its status.
check() {
  local name="$1"; shift
  if "$@" >"$W/last.out" 2>&1; then pass "$name"; return 0; fi
  fail "$name: $(tail -c 600 "$W/last.out" | tr '\n' ' ')"
  return 1
}
track() { echo "$1" >>"$PIDS_FILE"; }

stop_pid() { # stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 15)
  local pid="$1" wait_s="${2:-15}" i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < wait_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  exec 1>&8 2>&9
  [[ -n "$WATCHDOG_PID" ]] && kill "$WATCHDOG_PID" 2>/dev/null
  # Watches and other helpers first, then the apiserver, then the storage server.
  local pid
  if [[ -s "$PIDS_FILE" ]]; then
    while read -r pid; do
      [[ "$pid" == "$APISERVER_PID" || " ${MEMBER_PIDS[*]} " == *" $pid "* ]] && continue
      stop_pid "$pid" 5
    done <"$PIDS_FILE"
  fi
  stop_pid "$APISERVER_PID" 20
  for pid in "${MEMBER_PIDS[@]}"; do stop_pid "$pid" 20; done
  if [[ $FAILED -gt 0 || $rc -ne 0 ]]; then
    echo "---- last lines of the ${KIND} log ($W/server.log) ----"
    tail -n 25 "$W/server.log" 2>/dev/null
    echo "---- kube-apiserver errors about etcd/storage ($W/apiserver.log) ----"
    grep -E '^E[0-9]{4} ' "$W/apiserver.log" 2>/dev/null | grep -iE 'etcd|storage|compact|grpc|watch|cacher|reflector' | tail -n 30
    echo "---- kube-apiserver warnings about etcd/storage, other than reconnects ----"
    grep -E '^W[0-9]{4} ' "$W/apiserver.log" 2>/dev/null | grep -iE 'etcd|storage|compact|grpc|watch|cacher|reflector' |
      grep -v 'createTransport failed to connect' | tail -n 20
  fi
  if [[ "${KUBE_SMOKE_KEEP:-0}" == 1 || $FAILED -gt 0 || $rc -ne 0 ]]; then
    echo "work dir kept: $W"
  else
    rm -rf "$W"
  fi
  exit "$rc"
}
trap cleanup EXIT
on_signal() {
  exec 1>&8 2>&9
  log "FAIL interrupted or overall timeout (${TOTAL_TIMEOUT}s)"
  FAILED=$((FAILED + 1))
  echo "kube smoke ($KIND): $PASSED passed, $FAILED failed"
  exit 124
}
trap on_signal INT TERM

# Overall bound: SIGTERM this script (its trap cleans up), then SIGKILL it and every
# process it recorded.
(
  trap - EXIT INT
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$TOTAL_TIMEOUT" &
  sleeper=$!
  wait "$sleeper"
  echo "overall timeout ${TOTAL_TIMEOUT}s reached" >&2
  kill -TERM $$ 2>/dev/null
  sleep 60
  while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$PIDS_FILE"
  kill -KILL $$ 2>/dev/null
) </dev/null >/dev/null 2>&1 &
WATCHDOG_PID=$!

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
json() { # json EXPR < document: prints a python expression over the parsed JSON as d
  python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print(r if isinstance(r,str) else json.dumps(r))' "$1"
}

# KUBE_SMOKE_CLUSTER=1: three members (the flags of scripts/cluster), the apiserver
# pointed at all of them, and the restart below hits the leader.
MEMBERS=1
[[ "${KUBE_SMOKE_CLUSTER:-0}" == 1 ]] && MEMBERS=3
USED=()
fresh_port() {
  local p
  while :; do
    p=$(free_port)
    [[ " ${USED[*]} " == *" $p "* ]] || break
  done
  USED+=("$p")
  echo "$p"
}
CLIENT_PORTS=()
PEER_PORTS=()
URLS=()
INITIAL=""
for ((m = 0; m < MEMBERS; m++)); do
  CLIENT_PORTS+=("$(fresh_port)")
  USED+=("${CLIENT_PORTS[$m]}")
  PEER_PORTS+=("$(fresh_port)")
  USED+=("${PEER_PORTS[$m]}")
  URLS+=("http://127.0.0.1:${CLIENT_PORTS[$m]}")
  name=default
  ((MEMBERS > 1)) && name="m$m"
  INITIAL+="${INITIAL:+,}$name=http://127.0.0.1:${PEER_PORTS[$m]}"
done
SECURE_PORT=$(fresh_port)
CLIENT_PORT="${CLIENT_PORTS[0]}"
ETCD_URL="$(IFS=,; echo "${URLS[*]}")"

# start_member M: member M on its data dir and ports.
start_member() {
  local m="$1" name=default
  ((MEMBERS > 1)) && name="m$m"
  local args=(--name "$name" --data-dir "$W/data$m"
    --listen-client-urls "${URLS[$m]}" --advertise-client-urls "${URLS[$m]}"
    --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[$m]}"
    --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[$m]}"
    --initial-cluster "$INITIAL" --initial-cluster-token kube-smoke)
  echo "==== start $(date -u +%FT%TZ): $SERVER_BIN ${args[*]}" >>"$W/server.log"
  "$SERVER_BIN" "${args[@]}" >>"$W/server.log" 2>&1 </dev/null &
  MEMBER_PIDS[$m]=$!
  track "${MEMBER_PIDS[$m]}"
}

# start_server: starts every member that is not running and waits until all listen;
# SERVER_PID is the last one started.
start_server() {
  local m i
  for ((m = 0; m < MEMBERS; m++)); do
    if [[ -z "${MEMBER_PIDS[$m]:-}" ]] || ! kill -0 "${MEMBER_PIDS[$m]}" 2>/dev/null; then
      start_member "$m"
      SERVER_PID="${MEMBER_PIDS[$m]}"
    fi
  done
  for ((m = 0; m < MEMBERS; m++)); do
    for ((i = 0; i < 300; i++)); do
      port_open "${CLIENT_PORTS[$m]}" && break
      kill -0 "${MEMBER_PIDS[$m]}" 2>/dev/null || { SERVER_PID=""; return 1; }
      sleep 0.1
    done
    port_open "${CLIENT_PORTS[$m]}" || return 1
  done
  return 0
}

# leader_member: the index of the member that leads (0 when alone or unknown).
leader_member() {
  local m metrics
  for ((m = 0; m < MEMBERS; m++)); do
    metrics="$(curl -s -m 2 "${URLS[$m]}/metrics" || true)"
    grep -q '^etcd_server_is_leader 1' <<<"$metrics" && { echo "$m"; return; }
  done
  echo 0
}

log "server: $KIND ($SERVER_BIN), client port $CLIENT_PORT; work dir $W"
"$SERVER_BIN" --version 2>&1 | head -n 2 | sed 's/^/        /'
if start_server; then
  pass "$KIND serves $ETCD_URL (pid $SERVER_PID)"
else
  fail "$KIND did not start listening on $ETCD_URL within 30s"
  exit 1
fi

# ---- kube-apiserver inputs ------------------------------------------------------------
mkdir -p "$W/certs"
openssl genrsa -out "$W/sa.key" 2048 >/dev/null 2>&1 || { fail "openssl genrsa"; exit 1; }
TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
echo "$TOKEN,smoke-admin,smoke-admin-uid,system:masters" >"$W/tokens.csv"

KUBECTL=("$KUBE_BIN/kubectl" --kubeconfig "$W/kubeconfig" --request-timeout=20s)
export KUBECONFIG="$W/kubeconfig"
"$KUBE_BIN/kubectl" config set-cluster smoke --server "https://127.0.0.1:$SECURE_PORT" \
  --insecure-skip-tls-verify=true >/dev/null
"$KUBE_BIN/kubectl" config set-credentials smoke-admin --token "$TOKEN" >/dev/null
"$KUBE_BIN/kubectl" config set-context smoke --cluster smoke --user smoke-admin >/dev/null
"$KUBE_BIN/kubectl" config use-context smoke >/dev/null
k() { "${KUBECTL[@]}" "$@"; }

# No kubelets, controllers or outside network: the apiserver is only a storage client.
# --endpoint-reconciler-type=none: the "kubernetes" Endpoints would carry 127.0.0.1.
# --vmodule=compact=4 logs every compaction the apiserver makes.
"$KUBE_BIN/kube-apiserver" \
  --etcd-servers="$ETCD_URL" \
  --etcd-compaction-interval=1m \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$SECURE_PORT" \
  --cert-dir="$W/certs" \
  --token-auth-file="$W/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$W/sa.key" \
  --service-account-signing-key-file="$W/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --endpoint-reconciler-type=none \
  --profiling=false \
  --v=2 --vmodule=compact=4 \
  >"$W/apiserver.log" 2>&1 </dev/null &
APISERVER_PID=$!
track "$APISERVER_PID"
APISERVER_START=$(date +%s)
log "kube-apiserver pid $APISERVER_PID on https://127.0.0.1:$SECURE_PORT"

# wait_ready SECONDS: until /readyz answers "ok"
wait_ready() {
  local deadline=$(($(date +%s) + $1))
  while (($(date +%s) < deadline)); do
    kill -0 "$APISERVER_PID" 2>/dev/null || return 2
    [[ "$(k get --raw /readyz --request-timeout=5s 2>/dev/null)" == ok ]] && return 0
    sleep 1
  done
  return 1
}
check_readyz_verbose() {
  local out
  out="$(k get --raw '/readyz?verbose' 2>&1)"
  echo "$out" >"$W/readyz.txt"
  grep -qx '\[+\]etcd ok' <<<"$out" || { echo "no '[+]etcd ok' in: $out"; return 1; }
  if grep -q 'etcd-readiness' <<<"$out"; then
    grep -qx '\[+\]etcd-readiness ok' <<<"$out" || { echo "etcd-readiness not ok: $out"; return 1; }
  fi
  grep -q '^readyz check passed' <<<"$out" || { echo "$out"; return 1; }
}

wait_ready 120
case $? in
  0) pass "kube-apiserver /readyz ok after $(($(date +%s) - APISERVER_START))s" ;;
  2) fail "kube-apiserver exited during start-up"; tail -n 30 "$W/apiserver.log"; exit 1 ;;
  *) fail "kube-apiserver /readyz not ok within 120s: $(k get --raw '/readyz?verbose' 2>&1 | grep -v '^\[+\]' | tr '\n' ' ')"; exit 1 ;;
esac
check "/readyz?verbose has [+]etcd ok (and [+]etcd-readiness ok)" check_readyz_verbose
check "/livez?verbose has [+]etcd ok" bash -c '"$@" get --raw "/livez?verbose" | grep -qx "\[+\]etcd ok"' _ "${KUBECTL[@]}"
check "/version reports v1.37.2" bash -c '"$@" get --raw /version | grep -q "\"gitVersion\": \"v1.37.2\""' _ "${KUBECTL[@]}"

# ---- CRUD -----------------------------------------------------------------------------
expect_eq() { # expect_eq WANT CMD...: CMD's stdout equals WANT
  local want="$1" got; shift
  got="$("$@" 2>&1)" || { echo "command failed: $got"; return 1; }
  [[ "$got" == "$want" ]] || { echo "want '$want', got '$got'"; return 1; }
}
expect_fail_with() { # expect_fail_with PATTERN CMD...: CMD fails and says PATTERN
  local pat="$1" out; shift
  if out="$("$@" 2>&1)"; then echo "unexpected success: $out"; return 1; fi
  grep -qiE "$pat" <<<"$out" || { echo "wrong error (want /$pat/): $out"; return 1; }
}

NS=smoke
check "create namespace" k create namespace "$NS"
check "get namespace" expect_eq Active k get namespace "$NS" -o 'jsonpath={.status.phase}'
check "patch namespace (label)" k label namespace "$NS" smoke=yes
check "namespace label stored" expect_eq yes k get namespace "$NS" -o 'jsonpath={.metadata.labels.smoke}'
check "list namespaces by label" expect_eq "namespace/$NS" k get namespaces -l smoke=yes -o name

# A background watch of the namespace's configmaps, from before they exist.
"${KUBECTL[@]}" get configmaps -n "$NS" --watch-only --output-watch-events --request-timeout=0 \
  >"$W/watch1.out" 2>"$W/watch1.err" </dev/null &
WATCH1_PID=$!
track "$WATCH1_PID"
sleep 2

check "create configmap" k create configmap cm1 -n "$NS" --from-literal=a=1
check "create existing configmap -> AlreadyExists" expect_fail_with 'AlreadyExists|already exists' \
  k create configmap cm1 -n "$NS" --from-literal=a=1
check "get configmap" expect_eq 1 k get configmap cm1 -n "$NS" -o 'jsonpath={.data.a}'
k get configmap cm1 -n "$NS" -o yaml >"$W/cm1-stale.yaml" 2>&1
RV1="$(k get configmap cm1 -n "$NS" -o 'jsonpath={.metadata.resourceVersion}' 2>/dev/null)"
check "patch configmap (merge)" k patch configmap cm1 -n "$NS" --type merge -p '{"data":{"a":"2"}}'
check "configmap updated" expect_eq 2 k get configmap cm1 -n "$NS" -o 'jsonpath={.data.a}'
check "resourceVersion grows on update" bash -c '[[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ && $2 -gt $1 ]] || { echo "before=$1 after=$2"; false; }' _ \
  "$RV1" "$(k get configmap cm1 -n "$NS" -o 'jsonpath={.metadata.resourceVersion}' 2>/dev/null)"
check "replace with stale resourceVersion -> Conflict" expect_fail_with 'Conflict|has been modified' \
  k replace -f "$W/cm1-stale.yaml"
check "patch configmap (json)" k patch configmap cm1 -n "$NS" --type json -p '[{"op":"add","path":"/data/b","value":"x"}]'
check "server-side apply configmap" bash -c 'printf "%s\n" "apiVersion: v1" "kind: ConfigMap" "metadata: {name: cm2, namespace: $1}" "data: {k: v}" | "${@:2}" apply --server-side -f -' _ "$NS" "${KUBECTL[@]}"
check "get applied configmap" expect_eq v k get configmap cm2 -n "$NS" -o 'jsonpath={.data.k}'
check "delete configmap" k delete configmap cm1 -n "$NS" --wait=false
check "deleted configmap is NotFound" expect_fail_with 'NotFound|not found' k get configmap cm1 -n "$NS"

check "create secret" k create secret generic s1 -n "$NS" --from-literal=password=hunter2
check "get secret" expect_eq hunter2 bash -c '"$@" get secret s1 -o "jsonpath={.data.password}" | base64 -d' _ "${KUBECTL[@]}" -n "$NS"
check "patch secret" k patch secret s1 -n "$NS" --type merge -p '{"stringData":{"password":"swordfish"}}'
check "secret updated" expect_eq swordfish bash -c '"$@" get secret s1 -o "jsonpath={.data.password}" | base64 -d' _ "${KUBECTL[@]}" -n "$NS"
check "delete secret" k delete secret s1 -n "$NS" --wait=false
check "deleted secret is NotFound" expect_fail_with 'NotFound|not found' k get secret s1 -n "$NS"

# No controllers run: the Deployment is only stored, which is what is being tested.
check "create deployment" k create deployment web -n "$NS" --image=registry.k8s.io/pause:3.10 --replicas=2
check "get deployment" expect_eq 2 k get deployment web -n "$NS" -o 'jsonpath={.spec.replicas}'
check "scale deployment (scale subresource)" k scale deployment web -n "$NS" --replicas=3
check "patch deployment (strategic)" k patch deployment web -n "$NS" -p '{"spec":{"template":{"metadata":{"labels":{"rev":"2"}}}}}'
check "deployment updated" expect_eq "3 2" k get deployment web -n "$NS" -o 'jsonpath={.spec.replicas} {.spec.template.metadata.labels.rev}'
check "delete deployment" k delete deployment web -n "$NS" --wait=false
check "deleted deployment is NotFound" expect_fail_with 'NotFound|not found' k get deployment web -n "$NS"

# Namespace deletion: without the namespace controller the namespace stays Terminating
# until its "kubernetes" finalizer is removed through the finalize subresource.
check "create namespace smoke-gone" k create namespace smoke-gone
check "delete namespace (-> Terminating)" k delete namespace smoke-gone --wait=false
check "namespace is Terminating" expect_eq Terminating k get namespace smoke-gone -o 'jsonpath={.status.phase}'
finalize_ns() {
  k get namespace "$1" -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); d["spec"]["finalizers"]=[]; print(json.dumps(d))' >"$W/finalize.json" &&
    k replace --raw "/api/v1/namespaces/$1/finalize" -f "$W/finalize.json" >/dev/null
}
check "finalize namespace" finalize_ns smoke-gone
wait_gone() { local i; for ((i = 0; i < 20; i++)); do k get "$@" >/dev/null 2>&1 || return 0; sleep 0.5; done; echo "still there"; return 1; }
check "finalized namespace is gone" wait_gone namespace smoke-gone

# ---- watch ----------------------------------------------------------------------------
# watch_saw FILE EVENT NAME [SECONDS]: the kubectl --output-watch-events table has the row
wait_watch() {
  local file="$1" ev="$2" name="$3" secs="${4:-15}" i
  for ((i = 0; i < secs * 5; i++)); do
    grep -qE "^${ev}[[:space:]]+${name}[[:space:]]" "$file" && return 0
    sleep 0.2
  done
  echo "no '$ev $name' in $file: $(tr '\n' '|' <"$file")"
  return 1
}
check "watch saw ADDED cm1" wait_watch "$W/watch1.out" ADDED cm1
check "watch saw MODIFIED cm1" wait_watch "$W/watch1.out" MODIFIED cm1
check "watch saw ADDED cm2 (server-side apply)" wait_watch "$W/watch1.out" ADDED cm2
check "watch saw DELETED cm1" wait_watch "$W/watch1.out" DELETED cm1
check "watch events in order (ADDED, MODIFIED..., DELETED)" bash -c \
  'grep -E "[[:space:]]cm1[[:space:]]" "$1" | awk "{print \$1}" | tr "\n" " " | grep -qE "^ADDED (MODIFIED )+DELETED $" || { cat "$1"; false; }' _ "$W/watch1.out"

# ---- pagination -----------------------------------------------------------------------
PNS=smoke-paging
check "create namespace $PNS" k create namespace "$PNS"
create_many() {
  local i
  for i in $(seq -w 0 11); do k create configmap "page-$i" -n "$PNS" --from-literal=i="$i" >/dev/null || return 1; done
}
check "create 12 configmaps" create_many
check "kubectl get --chunk-size=3 lists all 12" expect_eq 12 bash -c \
  '"$@" get configmaps --chunk-size=3 -o name | grep -c "^configmap/page-"' _ "${KUBECTL[@]}" -n "$PNS"
check "kubectl get --chunk-size=3 (table) lists all 12" expect_eq 12 bash -c \
  '"$@" get configmaps --chunk-size=3 --no-headers | grep -c "^page-"' _ "${KUBECTL[@]}" -n "$PNS"
# raw_pages NS LIMIT FIRST_PAGE_QUERY: follows metadata.continue (later pages carry only
# limit and continue, as the API requires); prints one line per page:
#   <n items> <resourceVersion> <remainingItemCount or -> <names...>
raw_pages() {
  local ns="$1" limit="$2" extra="$3" cont="" page n=0
  while :; do
    local url="/api/v1/namespaces/$ns/configmaps?limit=$limit"
    if [[ -n "$cont" ]]; then url+="&continue=$cont"; else url+="$extra"; fi
    page="$(k get --raw "$url")" || return 1
    python3 -c '
import json,sys
d=json.load(sys.stdin); m=d["metadata"]
print(len(d["items"]), m.get("resourceVersion","-"), m.get("remainingItemCount","-"), " ".join(i["metadata"]["name"] for i in d["items"]))
' <<<"$page" || return 1
    cont="$(json 'd["metadata"].get("continue","")' <<<"$page")" || return 1
    cont="$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$cont")"
    [[ -z "$cont" ]] && return 0
    n=$((n + 1))
    ((n < 50)) || { echo "more than 50 pages"; return 1; }
  done
}
# check_raw_paging FIRST_PAGE_QUERY [MISSING_INDEX] [any]: pages of 3 over page-00..11
# ("any": the page sizes are the server's choice, as for resourceVersion=0, which the
# watch cache answers whole).
check_raw_paging() {
  raw_pages "$PNS" 3 "$1" >"$W/pages.txt" || { cat "$W/pages.txt"; return 1; }
  python3 - "$W/pages.txt" "${2:--1}" "${3:-exact}" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = [n for r in rows for n in r[3:]]
want = ["page-%02d" % i for i in range(12) if i != int(sys.argv[2])]
sizes = [min(3, len(want) - i) for i in range(0, len(want), 3)]
remaining = [str(len(want) - 3 * (i + 1)) for i in range(len(sizes) - 1)]
if sys.argv[3] == "any":
    sizes = [int(r[0]) for r in rows]
    remaining = [r[2] for r in rows][:-1]
errs = []
if names != want: errs.append("names %s" % names)
if [int(r[0]) for r in rows] != sizes: errs.append("page sizes %s, want %s" % ([r[0] for r in rows], sizes))
if len({r[1] for r in rows}) != 1: errs.append("resourceVersion differs between pages %s" % [r[1] for r in rows])
if [r[2] for r in rows][:-1] != remaining: errs.append("remainingItemCount %s, want %s" % ([r[2] for r in rows][:-1], remaining))
if errs: print("; ".join(errs)); print(open(sys.argv[1]).read()); sys.exit(1)
PY
}
check "raw list limit=3 + continue: 4 pages, 12 names in order, one resourceVersion" check_raw_paging ""
# The same from a given revision: resourceVersion=0 (any), and the exact revision of a
# previous list (served from the watch cache's snapshots or from etcd at that revision).
check "raw list limit=3 (resourceVersion=0, from the watch cache)" check_raw_paging "&resourceVersion=0" -1 any
RV_NOW="$(k get --raw "/api/v1/namespaces/$PNS/configmaps?limit=1" | json 'd["metadata"]["resourceVersion"]')"
check "raw list limit=3 + continue (resourceVersion=$RV_NOW, match=Exact)" check_raw_paging "&resourceVersion=$RV_NOW&resourceVersionMatch=Exact"
check "delete one configmap of the paged set" k delete configmap page-05 -n "$PNS" --wait=false
check "raw list limit=3 + continue after a delete" check_raw_paging "" 5
check "raw list limit=3 + continue at the revision before the delete (Exact)" check_raw_paging "&resourceVersion=$RV_NOW&resourceVersionMatch=Exact"
check "chunked list after a delete has 11" expect_eq 11 bash -c \
  '"$@" get configmaps --chunk-size=3 -o name | grep -c "^configmap/page-"' _ "${KUBECTL[@]}" -n "$PNS"
check "label-selected chunked list" expect_eq "configmap/page-07" bash -c \
  '"$@" label configmap page-07 pick=me >/dev/null && "$@" get configmaps --chunk-size=2 -l pick=me -o name' _ "${KUBECTL[@]}" -n "$PNS"

# ---- compaction -----------------------------------------------------------------------
# The apiserver's compactor runs every --etcd-compaction-interval: the first round only
# records the revision (Txn on compact_rev_key), the second compacts to it, so the first
# Compact is sent about two intervals after start.
"${KUBECTL[@]}" get configmaps -n "$NS" --watch-only --output-watch-events --request-timeout=0 \
  >"$W/watch2.out" 2>"$W/watch2.err" </dev/null &
WATCH2_PID=$!
track "$WATCH2_PID"
wait_compaction() {
  local deadline=$((APISERVER_START + 200))
  while (($(date +%s) < deadline)); do
    grep -q 'etcd: compacted rev' "$W/apiserver.log" && { grep 'etcd: compacted rev' "$W/apiserver.log" | head -n 1; return 0; }
    grep -q 'compact failed' "$W/apiserver.log" && { grep 'compact failed' "$W/apiserver.log"; return 1; }
    sleep 2
  done
  echo "no 'etcd: compacted rev' in the apiserver log within 200s of its start"
  return 1
}
log "waiting for the apiserver's compaction (about 2 minutes after its start)"
check "apiserver compacted etcd" wait_compaction && log "     $(cat "$W/last.out")"
check "no 'compact failed' in the apiserver log" bash -c '! grep "compact failed" "$1"' _ "$W/apiserver.log"
if command -v etcdctl >/dev/null; then
  # Independent of the apiserver: the key it coordinates through, and revision 2 is gone.
  check "etcdctl get compact_rev_key" bash -c 'v="$(ETCDCTL_API=3 etcdctl --endpoints "$1" get compact_rev_key --print-value-only)" && [[ "$v" =~ ^[0-9]+$ ]] || { echo "value: $v"; false; }' _ "$ETCD_URL"
  check "etcdctl get --rev=2 -> compacted" expect_fail_with 'required revision has been compacted' \
    env ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" get /registry --prefix --keys-only --rev=2
fi
# Maintenance.Status, as the apiserver uses it: its version decides whether the watch
# cache may use RequestWatchProgress (>= 3.5.13), and its dbSize feeds a metric.
check "apiserver accepted the server's version for RequestWatchProgress (Status)" bash -c \
  '! grep -E "RequestWatchProgress feature is not supported|Failed to check if RequestWatchProgress|Failed to parse etcd version" "$1"' _ "$W/apiserver.log"
check "apiserver_storage_size_bytes > 0 (Status dbSize)" bash -c \
  '"$@" get --raw /metrics | awk "/^apiserver_storage_size_bytes[{ ]/ { found = 1; if (\$NF + 0 > 0) ok = 1; print } END { exit !(found && ok) }"' _ "${KUBECTL[@]}"
check "configmap reads after compaction" expect_eq v k get configmap cm2 -n "$NS" -o 'jsonpath={.data.k}'
check "chunked list after compaction has 11" expect_eq 11 bash -c \
  '"$@" get configmaps --chunk-size=3 -o name | grep -c "^configmap/page-"' _ "${KUBECTL[@]}" -n "$PNS"
check "create after compaction" k create configmap before-restart -n "$NS" --from-literal=x=1
check "watch (started before compaction) saw ADDED before-restart" wait_watch "$W/watch2.out" ADDED before-restart

# Errors about storage before the restart: none expected.
PRE_RESTART_LINES=$(wc -l <"$W/apiserver.log")
etcd_errors() { # etcd_errors FROM_LINE [TO_LINE]: klog E lines about the storage layer
  sed -n "${1},${2:-\$}p" "$W/apiserver.log" | grep -E '^E[0-9]{4} ' |
    grep -iE 'etcd|storage|compact|grpc|rpc error|cacher|watch chan|reflector' || true
}
no_etcd_errors() {
  local e; e="$(etcd_errors "$@")"
  [[ -z "$e" ]] || { echo "$e" | head -n 20; return 1; }
}
check "apiserver log has no storage errors before the restart" no_etcd_errors 1 "$PRE_RESTART_LINES"

# ---- restart of the storage server under a running apiserver and watch ---------------
RESTARTED=$(leader_member)
SERVER_PID="${MEMBER_PIDS[$RESTARTED]}"
if ((MEMBERS > 1)); then
  log "restarting the leader, member m$RESTARTED of 3 (SIGTERM pid $SERVER_PID)"
else
  log "restarting $KIND (SIGTERM pid $SERVER_PID)"
fi
OLD_PID="$SERVER_PID"
STOP_TIMEOUT="${KUBE_SMOKE_STOP_TIMEOUT:-30}"
if stop_pid "$SERVER_PID" "$STOP_TIMEOUT"; then
  pass "$KIND stopped on SIGTERM within ${STOP_TIMEOUT}s (with the apiserver's watches open)"
else
  fail "$KIND did not stop within ${STOP_TIMEOUT}s of SIGTERM while the apiserver held watch streams open (SIGKILLed)"
fi
SERVER_PID=""
DOWN_TS=$(date +%s)
sleep 3
# While it is down, the etcd readiness check must notice (informational).
log "     /readyz while $KIND is down: $(k get --raw '/readyz?verbose' --request-timeout=8s 2>&1 | grep -oE '\[[-+]\]etcd[a-z-]* [a-z]+' | tr '\n' ' ')"
if start_server; then
  pass "$KIND restarted on the same data dir and port (pid $SERVER_PID, was $OLD_PID)"
else
  fail "$KIND did not restart"
  exit 1
fi
RESTART_TS=$(date +%s)
if wait_ready 60; then
  pass "apiserver /readyz ok again $(($(date +%s) - RESTART_TS))s after the restart"
else
  fail "apiserver /readyz not ok within 60s of the restart: $(k get --raw '/readyz?verbose' 2>&1 | grep -v '^\[+\]' | tr '\n' ' ')"
fi
check "/readyz?verbose has [+]etcd ok after the restart" check_readyz_verbose
check "configmap survived the restart" expect_eq v k get configmap cm2 -n "$NS" -o 'jsonpath={.data.k}'
retry() { local i; for ((i = 0; i < 15; i++)); do "$@" && return 0; sleep 1; done; return 1; }
check "create after restart" retry k create configmap after-restart -n "$NS" --from-literal=y=1
check "patch after restart" retry k patch configmap after-restart -n "$NS" --type merge -p '{"data":{"y":"2"}}'
check "delete after restart" retry k delete configmap before-restart -n "$NS" --wait=false
check "watch started before the restart saw ADDED after-restart" wait_watch "$W/watch2.out" ADDED after-restart 30
check "watch started before the restart saw MODIFIED after-restart" wait_watch "$W/watch2.out" MODIFIED after-restart 30
check "watch started before the restart saw DELETED before-restart" wait_watch "$W/watch2.out" DELETED before-restart 30
check "watch started before the restart is still running" kill -0 "$WATCH2_PID"
check "chunked list after restart has 11" expect_eq 11 bash -c \
  '"$@" get configmaps --chunk-size=3 -o name | grep -c "^configmap/page-"' _ "${KUBECTL[@]}" -n "$PNS"
check "raw list limit=3 + continue after restart" check_raw_paging "" 5
# A new watch after the restart.
"${KUBECTL[@]}" get configmaps -n "$NS" --watch-only --output-watch-events --request-timeout=0 \
  >"$W/watch3.out" 2>"$W/watch3.err" </dev/null &
WATCH3_PID=$!
track "$WATCH3_PID"
sleep 2
check "create after restart (2)" k create configmap after-restart-2 -n "$NS" --from-literal=z=1
check "new watch after the restart saw ADDED after-restart-2" wait_watch "$W/watch3.out" ADDED after-restart-2 20

# Storage errors from 20s after the restart on: none expected (errors while the server
# was down and while the apiserver reconnected are expected, and only counted).
while (($(date +%s) < RESTART_TS + 20)); do sleep 1; done
RECOVERED_LINE=$(($(wc -l <"$W/apiserver.log") + 1))
log "     apiserver storage errors while $KIND was down / reconnecting: $(etcd_errors "$((PRE_RESTART_LINES + 1))" "$((RECOVERED_LINE - 1))" | wc -l) lines"
check "create/patch/delete 20s after the restart" bash -c '"$@" create configmap late -n smoke --from-literal=l=1 && "$@" patch configmap late -n smoke --type merge -p "{\"data\":{\"l\":\"2\"}}" && "$@" delete configmap late -n smoke --wait=false' _ "${KUBECTL[@]}"
check "watch started before the restart saw DELETED late" wait_watch "$W/watch2.out" DELETED late 20
sleep 10
check "apiserver log has no storage errors from 20s after the restart on" no_etcd_errors "$RECOVERED_LINE"
check "kube-apiserver still running" kill -0 "$APISERVER_PID"
for pid in "${MEMBER_PIDS[@]}"; do
  check "$KIND still running (pid $pid)" kill -0 "$pid"
done

# ---- summary --------------------------------------------------------------------------
echo
if ((FAILED > 0)); then
  echo "failed checks:"
  printf '  - %s\n' "${FAILURES[@]}"
fi
echo "kube smoke ($KIND): $PASSED passed, $FAILED failed"
((FAILED == 0))
