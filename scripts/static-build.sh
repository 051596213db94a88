#!/usr/bin/env bash
# Builds the statically linked release `ferry` (glibc, crt-static, the host's
# gnu target) that the container image and the pod tests use, and prints its
# path on the last line. Cargo rebuilds only what changed, so calling it twice
# costs one build. Its own target directory (target/<triple>/release) keeps it
# apart from the ordinary release build.
#
# Usage: bash scripts/static-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
    *-linux-gnu) ;;
    *) echo "static-build: host target $triple is not a linux gnu target" >&2; exit 1 ;;
esac
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple" -p ferry >&2
bin="$PWD/target/$triple/release/ferry"
if readelf -d "$bin" | grep -q '(NEEDED)'; then
    echo "static-build: $bin still needs shared libraries" >&2
    exit 1
fi
echo "$bin"
