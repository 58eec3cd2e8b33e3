#!/usr/bin/env bash
# Installs every host dependency of sbx: Debian packages (with bookworm-backports
# for QEMU 10, meson, libbpf, bpftool and linux-source-6.12) and the npm tools
# the tests use. Idempotent: a stamp keyed by the package list skips the work
# when nothing changed. bookworm-backports comes from the mirror the machine's
# own apt sources use for bookworm, so hosts behind an internal mirror work as is.
# Sourcing this file only defines the functions (tests/unit/test-install-deps.sh).

# apt_entries ROOT: every enabled binary ("deb") source under ROOT/etc/apt, one-line
# (.list) and deb822 (.sources) alike, in apt's order, one line per URI and suite:
#   URI <TAB> SUITE <TAB> COMPONENTS (space-separated) <TAB> SIGNED-BY (a path, or empty)
apt_entries() {
    local root=${1:-} f
    local files=()
    [[ -f "$root/etc/apt/sources.list" ]] && files+=("$root/etc/apt/sources.list")
    for f in "$root"/etc/apt/sources.list.d/*; do
        [[ -f "$f" && ( "$f" == *.list || "$f" == *.sources ) ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 0
    awk '
        function emit(types, uris, suites, comps, key,    nt, t, nu, u, ns, s, i, j, k, isdeb) {
            nt = split(types, t, /[ \t]+/); isdeb = 0
            for (i = 1; i <= nt; i++) if (t[i] == "deb") isdeb = 1
            if (!isdeb) return
            if (key !~ /^\//) key = ""   # an inline key block cannot be passed on as a path
            nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
            for (j = 1; j <= nu; j++) for (k = 1; k <= ns; k++)
                if (u[j] != "" && s[k] != "") printf "%s\t%s\t%s\t%s\n", u[j], s[k], comps, key
        }
        function flush() {
            if (enabled !~ /^[Nn][Oo]$/ && f["uris"] != "")
                emit(f["types"], f["uris"], f["suites"], f["components"], f["signed-by"])
            delete f; enabled = ""; field = ""
        }
        FNR == 1 { if (deb822) flush(); deb822 = (FILENAME ~ /\.sources$/) }
        !deb822 {
            sub(/#.*/, ""); if ($1 != "deb") next
            key = ""; n = 2
            if ($2 ~ /^\[/) {   # [opt=value ...] between the type and the URI
                for (; n <= NF; n++) {
                    o = $n; gsub(/[][]/, "", o)
                    if (tolower(o) ~ /^signed-by=/) key = substr(o, 11)
                    if ($n ~ /\]$/) { n++; break }
                }
            }
            comps = ""
            for (i = n + 2; i <= NF; i++) comps = comps (comps == "" ? "" : " ") $i
            emit("deb", $n, $(n + 1), comps, key)
            next
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ { next }   # a continuation line (an inline key)
        {
            field = tolower(substr($0, 1, index($0, ":") - 1)); v = substr($0, index($0, ":") + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", v)
            if (field == "enabled") enabled = v; else f[field] = v
        }
        END { if (deb822) flush() }
    ' "${files[@]}"
}

# apt_list_file ROOT URI SUITE: where apt keeps SUITE's Release file of URI
# (scheme and credentials dropped, slashes turned into underscores).
apt_list_file() {
    local root=$1 uri=$2 suite=$3 name
    name=${uri#*://}; name=${name#*@}; name=${name%/}
    name=${name//\//_}
    printf '%s/var/lib/apt/lists/%s_dists_%s_' "$root" "$name" "$suite"
}

# debian_mirror ROOT: "URI <TAB> SIGNED-BY" of the Debian archive that ROOT's apt sources
# use for bookworm (main): the first one whose Release file says Origin: Debian, else the
# first whose Release file apt has not fetched yet. Prints nothing when there is none.
debian_mirror() {
    local root=${1:-} uri suite comps key rel unknown=""
    while IFS=$'\t' read -r uri suite comps key; do
        [[ "$suite" == bookworm && " $comps " == *" main "* && "$uri" != cdrom:* ]] || continue
        rel=$(apt_list_file "$root" "$uri" "$suite")
        if [[ -f "${rel}InRelease" || -f "${rel}Release" ]]; then
            if grep -qsx 'Origin: Debian' "${rel}InRelease" "${rel}Release"; then
                printf '%s\t%s\n' "${uri%/}" "$key"
                return 0
            fi
        elif [[ -z "$unknown" ]]; then
            unknown=$(printf '%s\t%s' "${uri%/}" "$key")
        fi
    done < <(apt_entries "$root")
    [[ -z "$unknown" ]] || printf '%s\n' "$unknown"
}

# backports_source ROOT: the sources.list line to add for bookworm-backports, or nothing
# when ROOT's apt sources already have one.
backports_source() {
    local root=${1:-} uri key
    if apt_entries "$root" | cut -f2 | grep -x bookworm-backports >/dev/null; then
        return 0
    fi
    IFS=$'\t' read -r uri key < <(debian_mirror "$root") || true
    if [[ -z "${uri:-}" ]]; then
        uri=http://deb.debian.org/debian key=""
    fi
    printf 'deb %s%s bookworm-backports main\n' "${key:+[signed-by=$key] }" "$uri"
}

[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0
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

bpo_line=$(backports_source "")
if [[ -n "$bpo_line" ]]; then
    echo "install-deps: adding $bpo_line"
    echo "$bpo_line" | as_root tee /etc/apt/sources.list.d/sbx-bookworm-backports.list >/dev/null
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
