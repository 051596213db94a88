#!/usr/bin/env bash
# Builds the ferry container image (FROM scratch: the static binary, CA
# certificates, a non-root user) with podman or buildah, from the Containerfile,
# without pulling any base image, and prints its reference and size.
#
# Usage: bash scripts/image.sh [--binary PATH] [--tag REF]
#   --binary PATH  a static ferry binary to use (default: scripts/static-build.sh
#                  builds one, once: cargo rebuilds nothing when it is current)
#   --tag REF      image reference (default localhost/ferry:<crate version>)
# The last line of stdout is the image reference.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${FERRY_STATIC_BIN:-}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
tag="localhost/ferry:$version"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) bin=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) echo "image.sh: unknown argument $1 (use --binary PATH, --tag REF)" >&2; exit 2 ;;
    esac
done

if command -v podman >/dev/null 2>&1; then
    builder=(podman build)
elif command -v buildah >/dev/null 2>&1; then
    builder=(buildah bud)
else
    echo "image.sh: neither podman nor buildah is installed: apt-get install podman (or buildah)" >&2
    exit 1
fi

if [[ -z "$bin" ]]; then
    bin=$(bash scripts/static-build.sh | tail -n1)
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
bash scripts/image-dist.sh "$bin" "$context/dist"
cp Containerfile "$context/Containerfile"
"${builder[@]}" -q -f "$context/Containerfile" --build-arg DIST=local -t "$tag" "$context" >&2

if command -v podman >/dev/null 2>&1; then
    size=$(podman image inspect "$tag" --format '{{.Size}}')
else
    size=$(buildah inspect --type image --format '{{.Size}}' "$tag" 2>/dev/null || echo 0)
fi
echo "image.sh: built $tag ($(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }'), binary $(du -h "$context/dist/usr/local/bin/ferry" | cut -f1))" >&2
echo "$tag"
