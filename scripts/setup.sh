#!/usr/bin/env bash
# Installs what Ferry's build and tests need on a fresh Debian 12 machine (run as root).
# Idempotent: installs only what is missing, runs `apt-get update` at most once,
# and never leaves a system PostgreSQL or etcd service started by the packages.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
# prometheus (which brings promtool): the observability tests scrape real processes with it;
# locales: a French locale for the translated-messages test
APT_PACKAGES=(protobuf-compiler libprotobuf-dev etcd-server postgresql-15 postgresql-client-15 prometheus locales)

log() { printf 'setup: %s\n' "$*" >&2; }

# Rust toolchains cannot be downloaded here, so a missing cargo is fatal.
find_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    local dir
    for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/cargo/bin; do
        if [[ -x "$dir/cargo" ]]; then
            export PATH="$dir:$PATH"
            return 0
        fi
    done
    return 1
}

# Prints the packages from APT_PACKAGES that are missing.
missing_packages() {
    local pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
            echo "$pkg"
        fi
    done
}

# True when every file or command we rely on is present.
tools_present() {
    command -v protoc >/dev/null 2>&1 &&
        [[ -x /usr/bin/etcd ]] &&
        [[ -x "$PG_BIN/initdb" ]] &&
        [[ -x "$PG_BIN/pg_ctl" ]] &&
        command -v psql >/dev/null 2>&1 &&
        command -v prometheus >/dev/null 2>&1 &&
        command -v promtool >/dev/null 2>&1
}

# restore_policy POLICY BACKUP: puts back the saved policy-rc.d, or removes ours.
restore_policy() {
    if [[ -n "$2" ]]; then
        mv -f "$2" "$1"
    else
        rm -f "$1"
    fi
}

install_packages() {
    local -a missing
    mapfile -t missing < <(missing_packages)
    if tools_present && [[ ${#missing[@]} -eq 0 ]]; then
        log "system packages already installed"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages (${missing[*]:-tools}); run this script as root"
        exit 1
    fi
    local -a install_flags=(-y --no-install-recommends)
    if [[ ${#missing[@]} -eq 0 ]]; then
        # Packages are registered but their files are gone: reinstall them all.
        missing=("${APT_PACKAGES[@]}")
        install_flags+=(--reinstall)
    fi
    log "installing: ${missing[*]}"

    # Keep package maintainer scripts from starting system services (we run
    # our own clusters on free ports): a policy-rc.d that denies every start,
    # in place only while apt runs; any existing one is put back afterwards.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [[ -e $policy ]]; then
        backup=$(mktemp /usr/sbin/policy-rc.d.ferry.XXXXXX)
        cp -p "$policy" "$backup"
    fi
    # shellcheck disable=SC2064 # expand now: restore exactly this backup
    trap "restore_policy '$policy' '$backup'" EXIT
    printf '#!/bin/sh\n# ferry setup.sh: no service starts during package installs\nexit 101\n' >"$policy"
    chmod 755 "$policy"

    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install "${install_flags[@]}" "${missing[@]}"

    restore_policy "$policy" "$backup"
    trap - EXIT

    if ! tools_present; then
        log "packages installed but protoc, etcd, initdb, pg_ctl, psql, prometheus or promtool is still missing"
        exit 1
    fi
}

# If a package install started a system service anyway, say so; a default
# cluster that is already running is left alone (we never use port 5432 or the
# default etcd ports).
report_services() {
    if command -v pg_lsclusters >/dev/null 2>&1; then
        if pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online"' | grep -q .; then
            log "note: a system PostgreSQL cluster is running; leaving it alone"
        fi
    fi
    if pgrep -x etcd >/dev/null 2>&1; then
        log "note: an etcd process is running; leaving it alone (tests use their own ports)"
    fi
    if pgrep -x prometheus >/dev/null 2>&1; then
        log "note: a prometheus process is running; leaving it alone (tests use their own ports)"
    fi
}

# A French locale, so tests can run PostgreSQL with translated messages
# (lc_messages) and prove that no decision depends on English text.
ensure_locale() {
    if locale -a 2>/dev/null | grep -qi '^fr_FR\.utf-\?8$'; then
        return 0
    fi
    log "generating the fr_FR.UTF-8 locale"
    localedef -i fr_FR -c -f UTF-8 fr_FR.UTF-8
}

main() {
    install_packages
    ensure_locale
    report_services
    if ! find_cargo; then
        log "cargo is not on PATH and no Rust toolchain was found in ~/.cargo/bin"
        log "install a stable Rust toolchain (rustup) first; it cannot be downloaded here"
        exit 1
    fi
    log "ok: $(cargo --version), $(protoc --version), etcd $(/usr/bin/etcd --version | head -n1 | awk '{print $3}'), $("$PG_BIN/postgres" --version)"
}

main "$@"
