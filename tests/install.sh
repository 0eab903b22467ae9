#!/bin/sh
# The installed library as a consumer sees it: `meson install` into a
# scratch DESTDIR, then pkg-config finds libfastvm, a program built only
# from pkg-config's flags links and runs, the SONAME is libfastvm.so.0,
# only fvm_* symbols are exported, and the library needs no libqcow.
# Usage: install.sh BUILD_ROOT SOURCE_ROOT
set -eu
build=$(readlink -f "$1")
src=$(readlink -f "$2")
for p in pkg-config readelf nm cc; do
	command -v "$p" >/dev/null 2>&1 || { echo "SKIP: $p not installed"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fvm-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/root" >/dev/null ||
	fail "meson install"
pc=$(find "$tmp/root" -name libfastvm.pc | head -n 1)
[ -n "$pc" ] || fail "no libfastvm.pc installed"
export PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_SYSROOT_DIR=$tmp/root
pkg-config --exists libfastvm || fail "pkg-config does not find libfastvm"
lib=$(find "$tmp/root" -name 'libfastvm.so.0.*' -type f | head -n 1)
[ -n "$lib" ] || fail "no libfastvm.so.0.* installed"
[ -f "$(find "$tmp/root" -path '*include/fastvm/fastvm.h' | head -n 1)" ] || fail "header not installed"
[ -f "$(find "$tmp/root" -name fvmsnap -type f | head -n 1)" ] || fail "fvmsnap not installed"
[ -f "$(find "$tmp/root" -name fvmsnap.1 | head -n 1)" ] || fail "man page not installed"

soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libfastvm.so.0 ] || fail "SONAME is '$soname', expected libfastvm.so.0"
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ && $3 !~ /^fvm_/ {print $3}')
[ -z "$bad" ] || fail "symbols exported beyond the API: $bad"
nm -D --defined-only "$lib" | grep -Eq ' T fvm_load(@@.*)?$' || fail "fvm_load not exported"
if readelf -d "$lib" | grep -q 'libqcow'; then
	fail "libfastvm links libqcow (LGPL-3.0 must stay on the tool side)"
fi

# a sanitized build's library needs the consumer linked with the same runtime
san=
if readelf -d "$lib" | grep -q 'libasan'; then
	san="-fsanitize=address,undefined"
fi
# shellcheck disable=SC2046,SC2086
cc -std=c99 -pedantic -Werror $san -o "$tmp/consumer" "$src/tests/header_c99.c" \
	$(pkg-config --cflags --libs libfastvm) || fail "building against pkg-config flags"
LD_LIBRARY_PATH=$(dirname "$lib") "$tmp/consumer" || fail "consumer program"
echo "ok: installed library, pkg-config, SONAME $soname, $(nm -D --defined-only "$lib" | grep -c ' T fvm_') exported functions"
