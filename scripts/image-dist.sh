#!/usr/bin/env bash
# Lays out the root filesystem of the ferry image in DIR: the static binary
# (debug info stripped), CA certificates, and /etc/passwd and /etc/group with
# the non-root user `ferry` (65532:65532) the image runs as. Used by
# scripts/image.sh and by the Containerfile's build stage, so both images are
# the same.
#
# Usage: bash scripts/image-dist.sh STATIC_BINARY DIR
set -euo pipefail

bin=${1:?usage: image-dist.sh STATIC_BINARY DIR}
dir=${2:?usage: image-dist.sh STATIC_BINARY DIR}
certs=/etc/ssl/certs/ca-certificates.crt

[[ -x "$bin" ]] || { echo "image-dist: $bin is not an executable" >&2; exit 1; }
# A FROM scratch image has no loader and no libc: the binary must need no shared object.
if readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    echo "image-dist: $bin is dynamically linked ($(readelf -d "$bin" | grep '(NEEDED)' | awk '{print $5}' | tr '\n' ' '));" \
         "build it with RUSTFLAGS='-C target-feature=+crt-static' (scripts/static-build.sh)" >&2
    exit 1
fi
[[ -f "$certs" ]] || { echo "image-dist: $certs is missing: apt-get install ca-certificates" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp"
objcopy --strip-debug "$bin" "$dir/usr/local/bin/ferry"
cp "$certs" "$dir/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nferry:x:65532:65532:ferry:/nonexistent:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nferry:x:65532:\n' >"$dir/etc/group"
# glibc's resolver reads these; without nsswitch.conf it would try NIS first.
printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
chmod 1777 "$dir/tmp"
