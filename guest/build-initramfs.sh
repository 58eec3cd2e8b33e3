#!/usr/bin/env bash
# Builds the guest initramfs: an uncompressed newc cpio holding the static
# sbx-guest binary as /init, the directories it mounts on, and /dev/console
# (the kernel opens it for init's stdio before devtmpfs exists).
# Written by hand rather than with cpio(1): no root needed for the device
# node, and the output is byte-for-byte reproducible (all mtimes 0).
# Usage: build-initramfs.sh OUT.cpio BINARY
set -euo pipefail

out=${1:?usage: build-initramfs.sh OUT.cpio BINARY}
bin=${2:?usage: build-initramfs.sh OUT.cpio BINARY}
[[ -f "$bin" ]] || { echo "build-initramfs: $bin not found" >&2; exit 1; }

tmp="$out.tmp"
exec 3>"$tmp"
ino=1

pad() { # bytes-written-so-far
    local n=$(( (4 - $1 % 4) % 4 ))
    if (( n > 0 )); then head -c "$n" /dev/zero >&3; fi
}

# entry NAME MODE(octal) SIZE RDEVMAJOR RDEVMINOR [FILE]
entry() {
    local name=$1 mode=$2 size=$3 rmaj=$4 rmin=$5 file=${6:-}
    local namesize=$(( ${#name} + 1 ))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" "$((8#$mode))" 0 0 1 0 "$size" 0 0 "$rmaj" "$rmin" "$namesize" 0 >&3
    printf '%s\0' "$name" >&3
    pad $(( 110 + namesize ))
    if [[ -n "$file" ]]; then
        cat "$file" >&3
        pad "$size"
    fi
    ino=$(( ino + 1 ))
}

for d in dev proc sys mnt mnt/ro mnt/rw newroot; do
    entry "$d" 040755 0 0 0
done
entry dev/console 020600 0 5 1
entry init 0100755 "$(stat -c %s "$bin")" 0 0 "$bin"
ino=0
entry 'TRAILER!!!' 0 0 0 0

exec 3>&-
mv "$tmp" "$out"
