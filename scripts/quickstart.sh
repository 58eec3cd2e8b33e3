#!/usr/bin/env bash
# The main job on a fresh machine: install, build, build the guest images,
# start the suite (embedded mode) and run a first piece of code in a microVM.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
bash "$root/scripts/setup.sh" "$build"
bash "$root/scripts/sbx-up.sh" "$build" >/dev/null
source "$build/sbx-bus.env"
echo "quickstart: suite is up (source $build/sbx-bus.env to use it from your shell)"
"$build/sbx/sbx" run 'print("hello")'
