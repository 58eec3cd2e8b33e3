#!/usr/bin/env bash
# Installs every host dependency of sbx: Debian packages (with bookworm-backports
# for QEMU 10, meson, libbpf, bpftool and linux-source-6.12) and the npm tools
# the tests use. Idempotent: a stamp keyed by the package list skips the work
# when nothing changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SBX_CACHE_DIR:-$HOME/.cache/sbx}
mkdir -p "$cache"

BOOKWORM_PKGS=(
    build-essential pkg-config ninja-build git
    libsystemd-dev libcurl4-openssl-dev libzstd-dev libseccomp-dev
    dbus dbus-daemon dbus-bin systemd
    clang llvm
    cpio erofs-utils debootstrap zstd lz4 xz-utils
    bc bison flex libelf-dev libssl-dev kmod
    jq socat tmux procps iproute2 util-linux bsdutils python3
    curl openssl
)
BACKPORTS_PKGS=(
    qemu-system-x86 qemu-utils meson libbpf-dev bpftool linux-source-6.12
)

stamp_key=$(printf '%s\n' "${BOOKWORM_PKGS[@]}" "--" "${BACKPORTS_PKGS[@]}" "v2" | sha256sum | cut -c1-16)
stamp="$cache/deps-$stamp_key.stamp"
if [[ -f "$stamp" ]] && command -v qemu-system-x86_64 >/dev/null && command -v meson >/dev/null; then
    exit 0
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

bpo=/etc/apt/sources.list.d/sbx-bookworm-backports.list
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | as_root tee "$bpo" >/dev/null
fi

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q
as_root apt-get install -y -q --no-install-recommends "${BOOKWORM_PKGS[@]}"
as_root apt-get install -y -q --no-install-recommends -t bookworm-backports "${BACKPORTS_PKGS[@]}"

# Bun for the guest comes from npm; use the machine's Node.js if it has one, else Debian's.
if ! command -v npm >/dev/null; then
    as_root apt-get install -y -q --no-install-recommends nodejs npm
fi

touch "$stamp"
echo "install-deps: done"
