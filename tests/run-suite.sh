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
# The patched QEMUs of scenario 8 (contrib/qemu), built once into the cache
# (2-3 minutes each): FVM_PATCHED_QEMU=0 leaves them out, and the scenario
# then skips. A machine that cannot build them (no root for apt, no source)
# says why here, and the scenario skips.
if [ "${FVM_PATCHED_QEMU:-1}" != 0 ]; then
	for v in 7.2 10.0; do
		rc=0
		FVM_BUILD_DIR=$build contrib/qemu/build-and-test.sh "$v" --build-only || rc=$?
		[ $rc -eq 0 ] || [ $rc -eq 77 ] || exit $rc
	done
fi
exec meson test -C "$build" --print-errorlogs "$@"
