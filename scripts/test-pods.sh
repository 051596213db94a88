#!/usr/bin/env bash
# The chart and image on a real container runtime: renders helm/ferry, turns
# its workloads into pods (helm/tests/pods.py: everything the kubelet resolves,
# resolved; the rest is the chart's) and runs them under podman on a network of
# their own: the bundled etcd StatefulSet as 3 pods, 2 coordinators, 2 workers,
# PostgreSQL on the host behind the network's gateway. Then it submits a
# 1,000,000-row job through the coordinator Service name from a client
# container, `podman kill`s the leader pod mid-job, `podman stop`s a worker pod
# (a graceful drain), starts a third worker pod, and checks: the job SUCCEEDED;
# target count and checksum equal the source's; one ledger row per chunk; the
# stopped worker exited 0 and no chunk of it was taken back by lease expiry;
# each container's image, args, env, mounts, user, read-only root and
# capabilities are the rendered chart's; the chart's probes answer as designed
# (readiness SERVING on the leader alone, liveness on every coordinator).
#
# Usage: bash scripts/test-pods.sh   (FERRY_STATIC_BIN=PATH reuses a static binary)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
# shellcheck source=scripts/k8s-tools.sh
source scripts/k8s-tools.sh

ROWS=1000000
CHUNK=20000
STALL_MS=${FERRY_POD_STALL_MS:-1200}
PGBIN=/usr/lib/postgresql/15/bin
release=pt$(printf '%04x' $((RANDOM % 65536)))
net=ferry-$release
work=$(mktemp -d /tmp/ferry-pods.XXXXXX)
chmod 755 "$work"
export FERRY_POD_PLAN=$work/pods/plan.json
pods=()

say() { printf 'test-pods: %s\n' "$*" >&2; }
fail() {
    say "FAIL: $*"
    for p in "${pods[@]}"; do
        for c in $(podman pod inspect "$p" --format '{{range .Containers}}{{.Name}} {{end}}' 2>/dev/null); do
            [[ "$c" == *-infra ]] && continue
            say "--- $c (last lines) ---"
            podman logs --tail 25 "$c" 2>&1 | sed 's/^/    /' >&2 || true
        done
    done
    # the coordinators' lines about workers and leases, then the failure again
    # (a CI log may show only its last lines)
    for p in "${pods[@]}"; do
        [[ "$p" == *-coordinator-* ]] || continue
        say "--- $p: workers and leases ---"
        podman logs "$p-coordinator" 2>&1 | grep -E "worker|lease|leader" | tail -n 30 | sed 's/^/    /' >&2 || true
    done
    say "FAIL: $*"
    exit 1
}
cleanup() {
    set +e
    if [[ -n "${FERRY_POD_KEEP:-}" ]]; then say "kept: pods ${pods[*]}, network $net, $work"; return; fi
    for p in "${pods[@]}"; do podman pod rm -f "$p" >/dev/null 2>&1; done
    podman network rm -f "$net" >/dev/null 2>&1
    if [[ -f "$work/pg/postmaster.pid" ]]; then
        setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- image: the static binary once, the ferry image, an etcd image ---------
bin=${FERRY_STATIC_BIN:-$(bash scripts/static-build.sh | tail -n1)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image=$(bash scripts/image.sh --binary "$bin" --tag "localhost/ferry:$version" | tail -n1)
say "image $image: $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MiB", $1/1048576}')"
podman run --rm "$image" --version >/dev/null || fail "the image does not run"
# etcd: the host's etcd (Debian etcd-server) with the two shared objects it needs, FROM scratch
etcd_ctx=$work/etcd-image
mkdir -p "$etcd_ctx/root/usr/local/bin" "$etcd_ctx/root/etc"
cp /usr/bin/etcd "$etcd_ctx/root/usr/local/bin/etcd"
for lib in $(ldd /usr/bin/etcd | grep -o '/[^ ]*'); do
    mkdir -p "$etcd_ctx/root$(dirname "$lib")" && cp -L "$lib" "$etcd_ctx/root$lib"
done
printf 'hosts: files dns\n' >"$etcd_ctx/root/etc/nsswitch.conf"
printf 'FROM scratch\nCOPY root/ /\nENTRYPOINT ["/usr/local/bin/etcd"]\n' >"$etcd_ctx/Containerfile"
podman build -q -t localhost/ferry-test-etcd:3.4 "$etcd_ctx" >/dev/null

# --- network and PostgreSQL behind its gateway ----------------------------
podman network create "$net" >/dev/null
subnet=$(podman network inspect "$net" --format '{{range .Subnets}}{{.Subnet}}{{end}}')
gw=$(podman network inspect "$net" --format '{{range .Subnets}}{{.Gateway}}{{end}}')
pgport=$("$K8S_PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
say "network $net ($subnet, gateway $gw); release $release"

cat >"$work/secrets.yaml" <<EOF
apiVersion: v1
kind: Secret
metadata: {name: ferry-test-src}
stringData: {url: "postgres://postgres@$gw:$pgport/src"}
---
apiVersion: v1
kind: Secret
metadata: {name: ferry-test-dst}
stringData: {url: "postgres://postgres@$gw:$pgport/dst"}
EOF
"$HELM3" template "$release" helm/ferry --namespace ferry -f helm/tests/podman/values.yaml \
    ${FERRY_POD_HELM_SET:+--set "$FERRY_POD_HELM_SET"} >"$work/rendered.yaml"
"$K8S_PY" helm/tests/pods.py convert "$work/rendered.yaml" "$work/secrets.yaml" "$work/pods" "$gw" ferry \
    "{\"$release-ferry-worker\": 3}" >"$work/pods.txt"
full=$release-ferry
grace=$("$K8S_PY" -c "
import yaml,sys
for d in yaml.safe_load_all(open('$work/rendered.yaml')):
    if d and d['kind']=='Deployment' and d['metadata']['name']=='$full-worker':
        print(d['spec']['template']['spec']['terminationGracePeriodSeconds'])")

play() { # POD
    podman kube play --network "$net:$("$K8S_PY" helm/tests/pods.py network "$1")" "$work/pods/$1.yaml" >"$work/play.log" 2>&1 ||
        fail "podman kube play $1: $(tail -3 "$work/play.log")"
    pods+=("$1")
}
# (a reader that stops early, grep -q or -m1, must not fail the pipeline)
log_of() { podman logs "$1" 2>&1 || true; }
wait_log() { # CONTAINER TEXT SECONDS
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        log_of "$1" | grep -q -- "$2" && return 0
        sleep 0.2
    done
    fail "$1 did not log '$2' within $3 s"
}
probe() { "$K8S_PY" helm/tests/pods.py probe "$1" "$2"; }
client() { podman run --rm --network "$net" --dns "$gw" "$image" "$@"; }

# etcd first (its pods create the bridge PostgreSQL listens on)
for i in 0 1 2; do play "$full-etcd-$i"; done
mkdir -p "$work/pg" "$work/pgrun" && chown postgres:postgres "$work/pg" "$work/pgrun" && chmod 700 "$work/pg"
setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/initdb" -D "$work/pg" -U postgres --auth=trust \
    --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
cat >>"$work/pg/postgresql.conf" <<EOF
port = $pgport
listen_addresses = '127.0.0.1,$gw'
unix_socket_directories = '$work/pgrun'
fsync = off
max_connections = 100
EOF
echo "host all all $subnet trust" >>"$work/pg/pg_hba.conf"
setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/pg_ctl" -D "$work/pg" -l "$work/pgrun/pg.log" -w -t 30 start >/dev/null ||
    fail "PostgreSQL did not start: $(tail -5 "$work/pgrun/pg.log")"
psql_() { psql -XqAt -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 "$@"; }
psql_ -d postgres -c "create database src" -c "create database dst" >/dev/null
psql_ -d src >/dev/null <<SQL
create table items (id bigint primary key, customer_id int not null, amount numeric(12,2) not null,
  status text not null, note text, created_at timestamptz not null);
insert into items select g, g % 10007, (g % 100000) / 100.0, (array['new','paid','shipped','void'])[g % 4 + 1],
  case when g % 7 = 0 then null else md5(g::text) end, timestamptz '2024-01-01' + g * interval '1 second'
from generate_series(1, $ROWS) g;
SQL
# the target has no key (a chunk landing twice would show) and each chunk's COPY
# stalls a moment before its commit, so the faults land mid-job
psql_ -d dst >/dev/null <<SQL
create table items (id bigint, customer_id int not null, amount numeric(12,2) not null,
  status text not null, note text, created_at timestamptz not null);
create function stall() returns trigger language plpgsql as \$\$ begin perform pg_sleep($STALL_MS / 1000.0); return null; end \$\$;
create trigger stall after insert on items for each statement execute function stall();
SQL

for i in 0 1 2; do
    for _ in $(seq 100); do [[ "$(probe "$full-etcd-$i" readiness)" == *true* ]] && break; sleep 0.3; done
    [[ "$(probe "$full-etcd-$i" readiness)" == *true* ]] || fail "etcd-$i readiness (GET /health) never passed"
    [[ "$(probe "$full-etcd-$i" liveness)" == OPEN ]] || fail "etcd-$i liveness (tcp 2379) failed"
done
say "etcd: 3 members healthy (the chart's readiness and liveness probes)"

c0=$full-coordinator-0-coordinator
c1=$full-coordinator-1-coordinator
play "$full-coordinator-0"
wait_log "$c0" "became the leader coordinator" 30
play "$full-coordinator-1"
wait_log "$c1" "following the leader coordinator" 30
[[ "$(probe "$full-coordinator-0" readiness)" == SERVING ]] || fail "the leader's readiness is $(probe "$full-coordinator-0" readiness)"
[[ "$(probe "$full-coordinator-1" readiness)" == NOT_SERVING ]] || fail "the follower's readiness is $(probe "$full-coordinator-1" readiness)"
for p in "$full-coordinator-0" "$full-coordinator-1"; do
    [[ "$(probe "$p" liveness)" == SERVING ]] || fail "$p liveness (ferry.v1.Liveness) is $(probe "$p" liveness)"
done
say "coordinators: readiness SERVING on the leader alone, liveness SERVING on both"
play "$full-worker-0"
play "$full-worker-1"
wait_log "$full-worker-0-worker" "registered with coordinator" 30
wait_log "$full-worker-1-worker" "registered with coordinator" 30
for p in "$full-etcd-0" "$full-coordinator-0" "$full-coordinator-1" "$full-worker-0"; do
    "$K8S_PY" helm/tests/pods.py check-config "$p" >"$work/check" || fail "$(cat "$work/check")"
    say "$(cat "$work/check")"
done

# --- the job -----------------------------------------------------------------
job=$(client submit --coordinator "http://$full-coordinator:50051" --source src --target dst \
    --query 'SELECT * FROM items' --table public.items --chunk-size "$CHUNK" 2>"$work/submit.err" | tail -n1) ||
    fail "submit through the Service name: $(cat "$work/submit.err")"
say "submitted $job through http://$full-coordinator:50051 (a name that resolves to both coordinators)"
for _ in $(seq 150); do
    [[ $(log_of "$c0" | grep -c "Chunk .* completed") -ge 4 ]] && break
    sleep 0.2
done
killed_at=$(date +%s.%N)
podman pod kill "$full-coordinator-0" >/dev/null
wait_log "$c1" "became the leader coordinator" 30
takeover=$("$K8S_PY" -c "
import sys,datetime
line=[l for l in sys.stdin.read().splitlines() if 'became the leader coordinator' in l][0]
t=datetime.datetime.strptime(line.split()[0][:26].rstrip('Z'),'%Y-%m-%dT%H:%M:%S.%f').replace(tzinfo=datetime.timezone.utc).timestamp()
print(f'{t-$killed_at:.1f}')" <<<"$(log_of "$c1")")
[[ "$(probe "$full-coordinator-1" readiness)" == SERVING ]] || fail "the new leader is not ready"
say "podman kill of the leader pod: the standby leads ${takeover} s later (election lease 5 s)"

# The drain is judged on its own: worker-0 is stopped once the new leader has
# recorded a chunk it committed after the takeover (it has re-attached, its
# lease renewed by the new leader), so a lease that ran out in the takeover
# is not taken for one the drain let run out.
took_line=$(log_of "$c1" | grep -m1 "became the leader coordinator" | awk '{print $1}')
reattached=""
for _ in $(seq 300); do
    for n in $(log_of "$full-worker-0-worker" | awk -v t="$took_line" '$1 > t && /chunk committed/' | grep -o ' chunk=[0-9]*' | cut -d= -f2); do
        if log_of "$c1" | grep -q "Chunk $n completed"; then reattached=$n; break 2; fi
    done
    sleep 0.2
done
[[ -n "$reattached" ]] || fail "worker-0 never completed a chunk with the new leader"
# The worker container is stopped as the kubelet stops it (SIGTERM, SIGKILL
# after the grace period) while the pod's infra container keeps its network,
# as the pod sandbox does: `podman pod stop` would stop both at once and take
# the network from under the draining worker.
w0=$full-worker-0-worker
stop_at=$(date +%s)
podman stop -t "$grace" "$w0" >/dev/null &
stopper=$!
play "$full-worker-2"
wait_log "$full-worker-2-worker" "chunk committed" 60
wait "$stopper" || fail "podman stop $w0"
podman pod stop "$full-worker-0" >/dev/null
code=$(podman inspect "$w0" --format '{{.State.ExitCode}}')
[[ "$code" == 0 ]] || fail "the stopped worker exited $code, not 0"
grep -q "signal received" <<<"$(log_of "$w0")" || fail "the stopped worker never saw SIGTERM"
say "podman stop of a worker pod: it drained and exited 0 after $(($(date +%s) - stop_at)) s (grace ${grace} s); a third worker took chunks"

state=""
for _ in $(seq 150); do
    state=$(client status "$job" --coordinator "http://$full-coordinator:50051" 2>/dev/null | head -n1 | awk '{print $1}') || true
    [[ "$state" == SUCCEEDED || "$state" == FAILED || "$state" == CANCELLED ]] && break
    sleep 1
done
[[ "$state" == SUCCEEDED ]] || fail "job $job ended $state"
src_sig=$(psql_ -d src -c "select count(*) || ':' || sum(hashtext(t::text)::bigint) from items t")
dst_sig=$(psql_ -d dst -c "select count(*) || ':' || sum(hashtext(t::text)::bigint) from items t")
[[ "$src_sig" == "$dst_sig" ]] || fail "target (count:checksum) $dst_sig differs from the source's $src_sig"
ledger=$(psql_ -d dst -c "select count(*) || ' ' || count(distinct chunk_no) || ' ' || sum(rows_written) from ferry.ledger where job_id = '$job'")
read -r lrows ldistinct lwritten <<<"$ledger"
[[ "$lrows" == "$ldistinct" && "$lwritten" == "$ROWS" ]] || fail "ledger: $ledger (rows, distinct chunks, rows written)"
say "job $job SUCCEEDED: $ROWS rows, count and checksum equal ($dst_sig), $lrows ledger rows for $lrows chunks"

# the drained worker's chunks came back by hand-over or finished, never by lease
# expiry. Chunks it held across the leader kill are the takeover's, not the
# drain's: their leases may run out while the worker is still finding the new
# leader (it then logs the refused report), and the new leader may log that
# after SIGTERM. Those are left out by chunk number.
ids=$(log_of "$w0" | grep -o 'registered with coordinator worker=[^ ]*' | sed 's/.*worker=//' | sort -u)
[[ -n "$ids" ]] || fail "no worker id in the stopped worker's log"
term_line=$(log_of "$w0" | grep -m1 "signal received" | awk '{print $1}')
takeover_chunks=" $( (log_of "$w0" | awk -v t="$took_line" '$1 < t && /chunk committed/'
    log_of "$w0" | grep "refused the complete report" || true) | { grep -o ' chunk=[0-9]*' || true; } | cut -d= -f2 | sort -un | tr '\n' ' ')"
for id in $ids; do
    log_of "$c1" | awk -v t="$term_line" '$1 >= t' | { grep -E "worker $id (stopped heartbeating|lease expired in etcd)" || true; } |
        while read -r line; do
            n=$(grep -o 'Chunk [0-9]*' <<<"$line" | cut -d' ' -f2 || true)
            [[ -n "$n" && "$takeover_chunks" == *" $n "* ]] || printf '%s\n' "$line"
        done >"$work/expired"
    if [[ -s "$work/expired" ]]; then
        fail "a chunk of the drained worker came back by lease expiry: $(head -3 "$work/expired") (chunks held across the takeover:$takeover_chunks)"
    fi
done
released=$(log_of "$c1" | grep -c "chunk released by its worker" || true)
finished=$(log_of "$w0" | awk '/signal received/{s=1} s && /chunk committed/' | wc -l)
say "drained worker: $finished chunk(s) finished after SIGTERM, $released handed back, none by lease expiry"

if grep -q -- '--metrics-listen' <<<"$(podman run --rm "$image" coordinator --help)"; then
    pid=$(podman inspect "$c1" --format '{{.State.Pid}}')
    # read whole, then searched: `curl | grep -q` fails under pipefail when
    # grep stops reading a page longer than the pipe's buffer (curl exits 23)
    page=$(nsenter -t "$pid" -n curl -sf -m 3 http://127.0.0.1:9090/metrics) ||
        fail "metrics are enabled but GET /metrics on the leader's :9090 failed"
    grep -q '^ferry_' <<<"$page" || fail "metrics are enabled but /metrics on :9090 has no ferry_ series"
    say "metrics: /metrics answers on the chart's port ($(wc -c <<<"$page") bytes, $(grep -c '^ferry_' <<<"$page") ferry_ samples)"
else
    say "metrics: this ferry has no --metrics-listen yet; the chart's FERRY_METRICS_LISTEN is set and ignored"
fi
say "ok in $(($(date +%s) - started)) s"
