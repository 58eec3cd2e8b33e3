#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Which bookworm-backports source scripts/install-deps.sh would add, for fake apt roots
# (sources.list, one-line .list and deb822 .sources files, apt's Release files).
#   test-install-deps.sh INSTALL_DEPS_SH
set -euo pipefail

source "${1:?usage: test-install-deps.sh INSTALL_DEPS_SH}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbx-test-install-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0

# new_root NAME: an empty apt configuration.
new_root() {
        root="$tmp/$1"
        mkdir -p "$root/etc/apt/sources.list.d" "$root/var/lib/apt/lists"
}
# release URI_AS_FILE SUITE ORIGIN: a Release file apt fetched.
release() { printf 'Origin: %s\nCodename: %s\n' "$3" "$2" >"$root/var/lib/apt/lists/$1_dists_$2_InRelease"; }
expect() {
        local what=$1 want=$2 got
        got=$(backports_source "$root")
        if [[ "$got" == "$want" ]]; then
                echo "ok - $what"
        else
                echo "not ok - $what: got '$got', want '$want'"
                failed=1
        fi
}

new_root none
expect "no apt sources: deb.debian.org" "deb http://deb.debian.org/debian bookworm-backports main"

new_root deb822
cat >"$root/etc/apt/sources.list.d/debian.sources" <<'X'
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

# the internal mirror
Types: deb deb-src
URIs: http://mirror.corp.example:8080/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/corp-archive.gpg
X
release mirror.corp.example:8080_debian bookworm Debian
expect "deb822 mirror with its keyring" \
        "deb [signed-by=/usr/share/keyrings/corp-archive.gpg] http://mirror.corp.example:8080/debian bookworm-backports main"

new_root oneline
cat >"$root/etc/apt/sources.list" <<'X'
# deb http://old.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/vendor.gpg] https://repo.vendor.example/apt bookworm main
deb [ arch=amd64 ] http://user:secret@apt.corp.example/debian bookworm main non-free-firmware  # comment
X
release repo.vendor.example_apt bookworm Vendor
release apt.corp.example_debian bookworm Debian
expect "one-line: skips comments, deb-src, a vendor's bookworm repository; no keyring" \
        "deb http://user:secret@apt.corp.example/debian bookworm-backports main"

new_root unfetched
printf 'deb http://first.example/debian bookworm main\ndeb http://second.example/debian bookworm main\n' \
        >"$root/etc/apt/sources.list"
expect "no Release files yet: the first bookworm source" "deb http://first.example/debian bookworm-backports main"

new_root disabled
cat >"$root/etc/apt/sources.list.d/a.sources" <<'X'
Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://inline.example/debian
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 xyz
 -----END PGP PUBLIC KEY BLOCK-----
X
echo "deb http://deb.debian.org/debian bookworm-backports-sloppy main" >"$root/etc/apt/sources.list.d/b.list"
expect "a disabled entry is skipped; an inline key is not a path" \
        "deb http://inline.example/debian bookworm-backports main"

new_root present
echo "deb http://deb.debian.org/debian bookworm main" >"$root/etc/apt/sources.list"
echo "deb http://mirror.example/debian bookworm-backports main" >"$root/etc/apt/sources.list.d/bpo.list"
expect "bookworm-backports already configured: nothing to add" ""

new_root commented
printf 'deb http://deb.debian.org/debian bookworm main\n# deb http://deb.debian.org/debian bookworm-backports main\n' \
        >"$root/etc/apt/sources.list"
expect "a commented-out bookworm-backports does not count" "deb http://deb.debian.org/debian bookworm-backports main"

new_root trixie
echo "deb http://deb.debian.org/debian trixie main" >"$root/etc/apt/sources.list"
expect "no bookworm source: deb.debian.org" "deb http://deb.debian.org/debian bookworm-backports main"

exit $failed
