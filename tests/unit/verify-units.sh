#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks the generated systemd units and the sysusers.d file.
#
#   verify-units.sh verify   BROKER WORKER SYSUSERS UNIT...
#       systemd-analyze verify on copies of the units whose ExecStart= points
#       at the given (build-dir) binaries, since verify insists that they
#       exist and are executable; any warning fails the test. Then
#       systemd-sysusers --dry-run on the sysusers.d file in an empty root.
#   verify-units.sh verify-one BINARY UNIT [OTHER-UNIT...]
#       the same for one unit whose ExecStart= names BINARY (sbx-netd,
#       sbx-cache), verified together with its other units (a .socket).
#   verify-units.sh security THRESHOLD UNIT...
#       systemd-analyze security --offline=yes; fails when a unit's overall
#       exposure (0-100, i.e. ten times the printed score) exceeds THRESHOLD.
set -euo pipefail

mode=${1:?mode}
shift

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbx-verify-units.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

case "$mode" in
verify)
        broker=${1:?broker binary}
        worker=${2:?worker binary}
        sysusers=${3:?sysusers file}
        shift 3
        [[ -x $broker ]] || fail "$broker is not an executable (build sbx-broker first)"
        [[ -x $worker ]] || fail "$worker is not an executable (build sbx-vmworker first)"
        # meson passes build targets relative to the build directory.
        broker=$(realpath "$broker")
        worker=$(realpath "$worker")

        units=()
        for u in "$@"; do
                name=$(basename "$u")
                sed -E -e "s#^(ExecStart=[-@:+!]*)[^ ]*/sbx-broker( |\$)#\\1${broker}\\2#" \
                       -e "s#^(ExecStart=[-@:+!]*)[^ ]*/sbx-vmworker( |\$)#\\1${worker}\\2#" \
                       "$u" > "$tmp/$name"
                if grep -q '^ExecStart=' "$tmp/$name" &&
                   ! grep '^ExecStart=' "$tmp/$name" | grep -Fq -e "=$broker" -e "=$worker"; then
                        fail "$name: ExecStart= names neither sbx-broker nor sbx-vmworker"
                fi
                units+=("$tmp/$name")
        done

        echo "systemd-analyze verify ${units[*]##*/}"
        rc=0
        systemd-analyze verify --man=no --generators=no "${units[@]}" 2> "$tmp/verify.err" || rc=$?
        cat "$tmp/verify.err" >&2
        [[ $rc -eq 0 ]] || fail "systemd-analyze verify exited with $rc"
        [[ ! -s $tmp/verify.err ]] || fail "systemd-analyze verify printed warnings"

        echo "systemd-sysusers --dry-run $(basename "$sysusers")"
        mkdir -p "$tmp/root/etc"
        systemd-sysusers --root="$tmp/root" --dry-run "$sysusers" ||
                fail "systemd-sysusers rejected $sysusers"
        ;;
verify-one)
        # verify-one BINARY UNIT: the same check for a unit of another
        # component (sbx-netd), whose ExecStart= is pointed at BINARY.
        bin=$(realpath "${1:?binary}")
        unit=${2:?unit}
        [[ -x $bin ]] || fail "$bin is not an executable"
        name=$(basename "$unit")
        sed -E "s#^(ExecStart=[-@:+!]*)[^ ]*/$(basename "$bin")( |\$)#\\1${bin}\\2#" "$unit" > "$tmp/$name"
        grep '^ExecStart=' "$tmp/$name" | grep -Fq "=$bin" || fail "$name: ExecStart= does not name $(basename "$bin")"
        others=()
        for o in "${@:3}"; do
                cp "$o" "$tmp/"
                others+=("$tmp/$(basename "$o")")
        done
        echo "systemd-analyze verify $name ${others[*]##*/}"
        rc=0
        systemd-analyze verify --man=no --generators=no "$tmp/$name" "${others[@]}" 2> "$tmp/verify.err" || rc=$?
        cat "$tmp/verify.err" >&2
        [[ $rc -eq 0 ]] || fail "systemd-analyze verify exited with $rc"
        [[ ! -s $tmp/verify.err ]] || fail "systemd-analyze verify printed warnings"
        ;;
security)
        threshold=${1:?threshold}
        shift
        rc=0
        for u in "$@"; do
                systemd-analyze security --offline=yes --no-pager --threshold="$threshold" "$u" 2>&1 |
                        grep -E 'Overall exposure' || true
                systemd-analyze security --offline=yes --no-pager --threshold="$threshold" "$u" >/dev/null 2>&1 || {
                        echo "FAIL: $(basename "$u") is more exposed than $threshold/100" >&2
                        rc=1
                }
        done
        exit $rc
        ;;
*)
        fail "unknown mode $mode"
        ;;
esac
