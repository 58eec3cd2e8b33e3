#!/usr/bin/env bash
# Builds the guest kernel (bzImage) from Debian's linux-source-6.12 and the
# committed config fragment. Output is cached under $SBX_CACHE_DIR, keyed by
# the fragment, this script and the source tarball, so a rerun is instant.
# Usage: build-kernel.sh OUT_BZIMAGE
set -euo pipefail

out=${1:?usage: build-kernel.sh OUT_BZIMAGE}
here=$(cd "$(dirname "$0")" && pwd)
cache=${SBX_CACHE_DIR:-$HOME/.cache/sbx}
tarball=$(ls /usr/src/linux-source-6.12.tar.* 2>/dev/null | head -n1)
[[ -n "$tarball" ]] || { echo "build-kernel: linux-source-6.12 is not installed (run scripts/install-deps.sh)" >&2; exit 1; }

key=$( { cat "$here/kernel/sbx.config" "$0"; stat -c '%n %s %Y' "$tarball"; } | sha256sum | cut -c1-16)
cached="$cache/kernel/bzImage-$key"
if [[ ! -f "$cached" ]]; then
    work="$cache/kernel/src"
    mkdir -p "$work"
    srcdir="$work/$(basename "$tarball" | sed 's/\.tar\..*//')"
    if [[ ! -f "$srcdir/Makefile" ]]; then
        echo "build-kernel: unpacking $tarball"
        tar -C "$work" -xf "$tarball"
    fi
    build="$cache/kernel/build-$key"
    rm -rf "$build"; mkdir -p "$build"
    trap 'rm -rf "$build"' EXIT
    make -s -C "$srcdir" O="$build" tinyconfig
    "$srcdir/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "$here/kernel/sbx.config" >/dev/null
    make -s -C "$srcdir" O="$build" olddefconfig
    # Every symbol the fragment asks for must have survived olddefconfig.
    missing=0
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*) grep -qx "$line" "$build/.config" || { echo "build-kernel: $line did not stick" >&2; missing=1; } ;;
            "# CONFIG_"*" is not set") sym=${line#\# }; sym=${sym%% *}
                ! grep -q "^$sym=" "$build/.config" || { echo "build-kernel: $sym should be off" >&2; missing=1; } ;;
        esac
    done < "$here/kernel/sbx.config"
    [[ $missing -eq 0 ]] || exit 1
    echo "build-kernel: compiling (about 5 minutes on 2 cores)"
    make -s -C "$srcdir" O="$build" -j"$(nproc)" bzImage
    cp "$build/arch/x86/boot/bzImage" "$cached.tmp" && mv "$cached.tmp" "$cached"
    cp "$build/.config" "$cache/kernel/config-$key"
    rm -rf "$build"
fi
mkdir -p "$(dirname "$out")"
cp "$cached" "$out"
