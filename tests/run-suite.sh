#!/bin/bash
# The whole test suite in one command (the README's "run the tests"):
# configure BUILD (default: build) when needed, build it, run every meson
# test and print meson's summary. Extra arguments go to `meson test`, e.g.
#   tests/run-suite.sh build --suite fuzz
# Tests that cannot run here (no QEMU, no io_uring) skip with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
	build=$1
	shift
fi
[ -f "$build/build.ninja" ] || meson setup "$build"
ninja -C "$build"
exec meson test -C "$build" --print-errorlogs "$@"
