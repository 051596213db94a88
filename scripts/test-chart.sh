#!/usr/bin/env bash
# Offline checks of the Helm chart helm/ferry, with helm 3.17 and helm 4:
#   - `helm lint --strict` with the default values and every values file;
#   - `helm template` of the default values and of helm/tests/*.yaml (external
#     etcd, bundled etcd, TLS on, KEDA on) equals the golden rendering in
#     helm/tests/golden/ (UPDATE_GOLDEN=1 rewrites it);
#   - core kinds pass `kubernetes-validate --strict` for Kubernetes 1.28 and
#     1.33 with no warning; ScaledObject, ServiceMonitor and PrometheusRule pass
#     their CRD schemas with unknown fields refused;
#   - every container is hardened (non-root, read-only root, no capabilities);
#   - each values file in helm/tests/bad/ is refused by lint and template.
# Installs its tools (scripts/k8s-tools.sh). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/k8s-tools.sh
source scripts/k8s-tools.sh

chart=helm/ferry
tests=helm/tests
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test-chart: FAIL: $*" >&2; exit 1; }
ok() { echo "test-chart: ok: $*" >&2; }

cases=(default)
for f in "$tests"/*.yaml; do cases+=("$(basename "$f" .yaml)"); done

render() { # HELM CASE OUT
    local -a vals=()
    [[ "$2" != default ]] && vals=(-f "$tests/$2.yaml")
    "$1" template ferry "$chart" --namespace ferry "${vals[@]}" >"$3" 2>"$work/err" ||
        fail "$(basename "$(dirname "$1")") template $2: $(cat "$work/err")"
}

for helm in "$HELM3" "$HELM4"; do
    v=$("$helm" version --template '{{.Version}}')
    for c in "${cases[@]}"; do
        vals=(); [[ "$c" != default ]] && vals=(-f "$tests/$c.yaml")
        "$helm" lint --strict "$chart" "${vals[@]}" >"$work/lint" 2>&1 || fail "helm $v lint --strict ($c): $(grep -E 'ERROR|WARNING' "$work/lint" | head -3)"
        render "$helm" "$c" "$work/$c-$v.yaml"
        golden="$tests/golden/$c.yaml"
        if [[ "${UPDATE_GOLDEN:-}" == 1 && "$helm" == "$HELM3" ]]; then
            cp "$work/$c-$v.yaml" "$golden"
        fi
        [[ -f "$golden" ]] || fail "no golden rendering $golden: run UPDATE_GOLDEN=1 bash scripts/test-chart.sh"
        diff -u "$golden" "$work/$c-$v.yaml" >"$work/diff" || fail "helm $v: rendering of $c differs from $golden (UPDATE_GOLDEN=1 after a deliberate change):
$(head -40 "$work/diff")"
    done
    ok "helm $v: lint --strict and golden rendering of ${cases[*]}"
    for bad in "$tests"/bad/*.yaml; do
        name=$(basename "$bad")
        if "$helm" lint --strict "$chart" -f "$bad" >"$work/lint" 2>&1; then
            fail "helm $v lint accepts $name"
        fi
        if "$helm" template ferry "$chart" -f "$bad" >"$work/out" 2>"$work/err"; then
            fail "helm $v template accepts $name"
        fi
        grep -qiE 'schema|values don.t meet' "$work/err" || fail "helm $v refused $name without naming the schema: $(head -3 "$work/err")"
    done
    ok "helm $v: every values file in $tests/bad is refused"
done

for c in "${cases[@]}"; do
    r="$work/$c-$("$HELM3" version --template '{{.Version}}').yaml"
    "$K8S_PY" "$tests/manifests.py" split "$r" "$work/$c-core.yaml" "$work/$c-crd.yaml" >/dev/null
    for k in 1.28.0 1.33.0; do
        "$K8S_VALIDATE" --strict -k "$k" "$work/$c-core.yaml" >"$work/kv" 2>&1 || fail "kubernetes-validate $k ($c): $(grep -v '^INFO' "$work/kv" | head -5)"
        if grep -v '^INFO' "$work/kv" | grep -q .; then
            fail "kubernetes-validate $k ($c) warns: $(grep -v '^INFO' "$work/kv" | head -5)"
        fi
    done
    if [[ -s "$work/$c-crd.yaml" ]] && grep -q kind "$work/$c-crd.yaml"; then
        "$K8S_PY" "$tests/manifests.py" crds "$work/$c-crd.yaml" >"$work/crd" || fail "CRD schemas ($c): $(cat "$work/crd")"
    fi
    "$K8S_PY" "$tests/manifests.py" hardening "$r" >"$work/hard" || fail "hardening ($c): $(cat "$work/hard")"
done
ok "kubernetes-validate --strict 1.28 and 1.33 (no warning), CRD schemas, hardening: ${cases[*]}"
