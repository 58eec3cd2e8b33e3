#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one libFuzzer target for a bounded time, for `meson test --suite fuzz`
# in -Dfuzz=true builds:
#
#   run-libfuzzer.sh TARGET SEED-CORPUS WORKDIR SECONDS [DICT]
#
# -max_len admits one maximal worker frame (128 KiB + header).
# The seed corpus in the source tree is never written to: it is copied to
# WORKDIR/corpus (fresh each run) and new inputs go there. Crashes, leaks
# and timeouts are saved as WORKDIR/crash-*, leak-*, timeout-* and fail the
# test.
set -euo pipefail

target=${1:?target}
seeds=${2:?seed corpus}
work=${3:?work dir}
seconds=${4:?seconds}
dict=${5:-}

rm -rf "$work/corpus"
mkdir -p "$work/corpus"
if [[ -d $seeds ]]; then
        cp -R "$seeds/." "$work/corpus/"
fi

args=(
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -error_exitcode=1
        -max_len=140000
        -print_final_stats=1
        -artifact_prefix="$work/"
)
if [[ -n $dict ]]; then
        args+=(-dict="$dict")
fi

echo "$target ${args[*]} $work/corpus"
exec "$target" "${args[@]}" "$work/corpus"
