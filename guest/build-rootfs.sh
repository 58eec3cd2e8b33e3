#!/usr/bin/env bash
# Builds the read-only guest root filesystem (EROFS) from Debian packages
# (debootstrap minbase + guest/rootfs/packages.txt) plus Bun from npm.
# The image is cached under $SBX_CACHE_DIR keyed by its inputs.
# Usage: build-rootfs.sh OUT_IMAGE
set -euo pipefail

out=${1:?usage: build-rootfs.sh OUT_IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
cache=${SBX_CACHE_DIR:-$HOME/.cache/sbx}
mirror=${SBX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
bun_version=1.4.5

pkgs=$(grep -v '^#' "$here/rootfs/packages.txt" | grep . | paste -sd, -)
key=$( { cat "$here/rootfs/packages.txt" "$0"; echo "$bun_version $mirror"; } | sha256sum | cut -c1-16)
cached="$cache/rootfs/rootfs-$key.erofs"

if [[ ! -f "$cached" ]]; then
    mkdir -p "$cache/rootfs"
    tree="$cache/rootfs/tree-$key"
    if [[ ! -f "$tree/.debootstrap-done" ]]; then
        rm -rf "$tree"
        echo "build-rootfs: debootstrap bookworm ($pkgs)"
        debootstrap --variant=minbase --include="$pkgs" bookworm "$tree" "$mirror" >"$cache/rootfs/debootstrap-$key.log" 2>&1 \
            || { tail -20 "$cache/rootfs/debootstrap-$key.log" >&2; exit 1; }
        touch "$tree/.debootstrap-done"
    fi

    # Bun: the npm package ships one glibc binary.
    bundir="$cache/npm/bun-$bun_version"
    if [[ ! -x "$bundir/package/bin/bun" ]]; then
        mkdir -p "$bundir"
        (cd "$bundir" && npm pack --silent "@oven/bun-linux-x64@$bun_version" >/dev/null && tar -xzf oven-bun-linux-x64-*.tgz)
    fi
    install -m 0755 "$bundir/package/bin/bun" "$tree/usr/local/bin/bun"
    ln -sf bun "$tree/usr/local/bin/bunx"

    # Python without .pyc starts 5x slower under TCG: precompile everything.
    chroot "$tree" /usr/bin/python3 -m compileall -q -j0 /usr/lib/python3.11 /usr/lib/python3/dist-packages >/dev/null || true

    # The unprivileged user that runs sandboxed code.
    if ! grep -q '^user:' "$tree/etc/passwd"; then
        echo 'user:x:1000:1000:sandbox user:/home/user:/bin/bash' >>"$tree/etc/passwd"
        echo 'user:x:1000:' >>"$tree/etc/group"
        echo 'user:!:19000:0:99999:7:::' >>"$tree/etc/shadow"
    fi
    mkdir -p "$tree/home/user" "$tree/sbx" "$tree/run" "$tree/tmp"
    rm -f "$tree/etc/hostname"; echo sandbox >"$tree/etc/hostname"
    printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 sandbox\n' >"$tree/etc/hosts"

    # Trim what a sandbox never reads.
    rm -rf "$tree"/usr/share/doc/* "$tree"/usr/share/man/* "$tree"/usr/share/info/* \
           "$tree"/var/cache/apt/* "$tree"/var/lib/apt/lists/* "$tree"/var/log/*
    find "$tree/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

    # No setuid or setgid programs (su, mount, passwd, ...): nothing in the sandbox may become
    # root or another group through exec, independent of no_new_privs in the agent.
    find "$tree" -xdev -type f -perm /6000 -exec chmod ug-s {} +

    mkfs.erofs --quiet -zlz4hc "$cached.tmp" "$tree" --exclude-path=.debootstrap-done
    mv "$cached.tmp" "$cached"
fi
mkdir -p "$(dirname "$out")"
ln -f "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
