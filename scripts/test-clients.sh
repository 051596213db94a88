#!/usr/bin/env bash
# Stage of the test command for the clients: the Python package (pytest against a
# real PostgreSQL, coordinator and worker; install from a fresh virtualenv, from an
# sdist and from a wheel), the Airflow provider (Airflow 3.3, `airflow dags test`),
# and the Argo and Dagster examples.
#
# Virtualenvs are cached under $FERRY_VENV_DIR (default ~/.cache/ferry/venvs), one
# per tool, rebuilt only when the requirements written in this script change; the
# packages of this checkout are installed again on every run.
#
#   bash scripts/test-clients.sh    (after `cargo build -p ferry`; FERRY_BIN overrides)
#   bash scripts/test-clients.sh --prepare
#                                   (only creates the cached virtualenvs; needs no
#                                   ferry binary: scripts/test.sh runs it in the
#                                   background while Rust compiles)
set -euo pipefail
PREPARE=
[[ "${1:-}" == --prepare ]] && PREPARE=1

cd "$(dirname "$0")/.."
ROOT=$PWD
VENVS=${FERRY_VENV_DIR:-$HOME/.cache/ferry/venvs}
AIRFLOW_VERSION=3.3.2
export FERRY_BIN=${FERRY_BIN:-$ROOT/target/debug/ferry}
STARTED=$(date +%s)

log() { printf '\n==> clients: %s\n' "$*" >&2; }

if [[ -z $PREPARE && ! -x $FERRY_BIN ]]; then
    echo "test-clients.sh: no ferry binary at $FERRY_BIN: run cargo build -p ferry first" >&2
    exit 1
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "test-clients.sh: python3 venv support is missing: apt-get install python3-venv" >&2
        exit 1
    fi
    log "installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null; }
fi

# venv NAME REQUIREMENT...: the cached virtualenv NAME holding REQUIREMENTs
# (created, or re-created when the list changed); prints its directory.
venv() {
    local name=$1
    shift
    local dir=$VENVS/$name
    if [[ ! -x $dir/bin/python || "$(cat "$dir/.ferry-requirements" 2>/dev/null)" != "$*" ]]; then
        log "creating virtualenv $dir ($*)"
        rm -rf "$dir"
        mkdir -p "$VENVS"
        python3 -m venv "$dir" >&2
        "$dir/bin/pip" install -q "$@" >&2
        echo "$*" >"$dir/.ferry-requirements"
    fi
    echo "$dir"
}

PY_REQS=(pytest grpcio-reflection openlineage-python build)
AF_REQS=("apache-airflow==$AIRFLOW_VERSION" pytest)
DG_REQS=(dagster pyyaml pytest)
if [[ -n $PREPARE ]]; then
    venv clients-py "${PY_REQS[@]}" >/dev/null
    venv "airflow-$AIRFLOW_VERSION" "${AF_REQS[@]}" >/dev/null
    venv dagster "${DG_REQS[@]}" >/dev/null
    log "virtualenvs ready in $(($(date +%s) - STARTED)) s"
    exit 0
fi

# 1. the Python package against a real cluster
PY=$(venv clients-py "${PY_REQS[@]}")
log "ferry-client: pip install ./clients/python, pytest"
"$PY/bin/pip" install -q ./clients/python
(cd clients/python && "$PY/bin/python" -m pytest -q tests)

# 2. installable with nothing else set up: fresh virtualenvs from the directory,
#    from the sdist (which must carry the proto file) and from the wheel
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
log "ferry-client: fresh virtualenvs from ./clients/python, its sdist and its wheel"
"$PY/bin/python" -m build -q --outdir "$TMP/dist" clients/python >/dev/null
# fresh WHAT N: installs WHAT into the new virtualenv $TMP/fresh-N and imports it
fresh() {
    local what=$1 dir=$TMP/fresh-$2
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q "$what"
    (cd "$TMP" && "$dir/bin/python" -c 'import ferry_client, ferry_client.aio; from ferry_client._proto import jobs_pb2_grpc; print("installed from '"$(basename "$what")"'")')
}
# the three installs wait mostly on pip's downloads: at once
fresh_pids=()
n=0
for what in ./clients/python "$TMP"/dist/ferry_client-*.tar.gz "$TMP"/dist/ferry_client-*.whl; do
    n=$((n + 1))
    fresh "$what" "$n" &
    fresh_pids+=($!)
done
for pid in "${fresh_pids[@]}"; do
    wait "$pid" || { echo "test-clients.sh: a fresh install failed (above)" >&2; exit 1; }
done

# 3. the Airflow provider: airflow dags test against a real cluster
AF=$(venv "airflow-$AIRFLOW_VERSION" "${AF_REQS[@]}")
log "ferry-airflow: Airflow $AIRFLOW_VERSION, airflow dags test"
"$AF/bin/pip" install -q ./clients/python ./clients/airflow
(cd clients/airflow && "$AF/bin/python" -m pytest -q tests)

# 4. the Argo and Dagster examples
DG=$(venv dagster "${DG_REQS[@]}")
log "examples: Argo workflow steps, Dagster asset"
"$DG/bin/pip" install -q ./clients/python
"$DG/bin/python" -m pytest -q examples/test_examples.py

log "done in $(($(date +%s) - STARTED)) s"
