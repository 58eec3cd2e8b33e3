#!/usr/bin/env bash
# Sets everything up from a fresh Debian 12 machine: host packages (with
# bookworm-backports), the build, and the guest images (kernel, initramfs,
# root filesystem). Every step is idempotent and cached, so reruns are fast.
# Usage: scripts/setup.sh [BUILDDIR]   (default: build)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cd "$root"

bash scripts/install-deps.sh

if [[ ! -f "$build/build.ninja" ]]; then
    meson setup "$build" >/dev/null
fi
ninja -C "$build" >/dev/null

mkdir -p "$build/images"
bash guest/build-kernel.sh "$build/images/bzImage"
bash guest/build-rootfs.sh "$build/images/rootfs.erofs"
echo "setup: build and guest images ready in $build"
