#!/bin/bash
# The library alone: `meson setup -Dtools=false -Dtests=false` configures,
# builds and installs libfastvm with liburing (and libc) as its only
# dependencies, no tool or test is built, and in the full build the
# library's sources are compiled once for the shared object and the tests.
# usage: lib-only.sh SOURCE_ROOT BUILD_ROOT
set -euo pipefail
src=$1
build=$2
command -v meson >/dev/null || { echo "meson not found"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }

meson setup "$tmp/b" "$src" -Dtools=false -Dtests=false --prefix=/usr >"$tmp/setup.log" 2>&1 ||
	{ cat "$tmp/setup.log"; fail "setup -Dtools=false -Dtests=false"; }
# the configure step looked up no dependency but liburing, threads and the
# optional frame codecs of compressed snapshots (libzstd, liblz4) and of authenticated ones (libgcrypt, LGPL-2.1+,
# with its libgpg-error)
deps=$(grep -o 'Run-time dependency [^ ]*' "$tmp/setup.log" | awk '{print $3}' | sort -u | tr '\n' ' ')
echo "dependencies looked up: $deps"
for d in $deps; do
	case $d in liburing|threads|libzstd|liblz4|libgcrypt|libgpg-error|gpg-error) ;; *) fail "the library alone looked up $d" ;; esac
done
ninja -C "$tmp/b" >"$tmp/ninja.log" 2>&1 || { cat "$tmp/ninja.log"; fail "build"; }
[ ! -e "$tmp/b/tools/fvmsnap" ] || fail "fvmsnap was built"
[ ! -d "$tmp/b/tests" ] || fail "tests were configured"
DESTDIR="$tmp/dest" meson install -C "$tmp/b" >/dev/null || fail "install"
so=$(find "$tmp/dest" -name 'libfastvm.so.0.*' -type f | head -1)
[ -n "$so" ] || fail "no libfastvm.so.0.* installed"
for h in fastvm.h experimental.h; do
	[ -f "$tmp/dest/usr/include/fastvm/$h" ] || fail "header $h not installed"
done
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "NEEDED: $needed"
for n in $needed; do
	case $n in liburing.so.*|libc.so.*|libpthread.so.*|ld-linux*|libzstd.so.*|liblz4.so.*|libgcrypt.so.*|libgpg-error.so.*) ;;
	*) fail "libfastvm needs $n" ;;
	esac
done
pc=$(find "$tmp/dest" -name libfastvm.pc | head -1)
if grep -E '^Requires' "$pc" | sed 's/^Requires[^:]*://; s/liburing[^,]*//; s/libzstd[^,]*//; s/liblz4[^,]*//; s/libgcrypt[^,]*//; s/gpg-error[^,]*//' | grep -q '[a-z]'; then
	grep -E '^Requires' "$pc"
	fail "pkg-config file requires more than liburing and the codecs"
fi

# symbol versions: the five functions whose structs changed have their 0.1
# version and a 0.2 default, with this compiler and with clang (whose symver
# support differs from gcc's)
check_versions() {
	local so=$1 t
	t=$(objdump -T "$so")
	for f in fvm_load fvm_reader_info fvm_reader_block fvm_reader_run fvm_reader_devstate; do
		grep -qE "\(LIBFASTVM_0\) +$f\$" <<<"$t" || fail "$so: no $f@LIBFASTVM_0"
		grep -qE " LIBFASTVM_0\.2 +$f\$" <<<"$t" || fail "$so: no $f@@LIBFASTVM_0.2"
	done
	grep -qE " LIBFASTVM_0 +fvm_verify\$" <<<"$t" || fail "$so: no fvm_verify@@LIBFASTVM_0"
}
check_versions "$so"
if command -v clang >/dev/null; then
	CC=clang meson setup "$tmp/c" "$src" -Dtools=false -Dtests=false >"$tmp/csetup.log" 2>&1 ||
		{ cat "$tmp/csetup.log"; fail "clang setup"; }
	ninja -C "$tmp/c" >"$tmp/cninja.log" 2>&1 || { cat "$tmp/cninja.log"; fail "clang build"; }
	! grep -q "warning" "$tmp/cninja.log" || { cat "$tmp/cninja.log"; fail "clang warns"; }
	check_versions "$(find "$tmp/c/lib" -name 'libfastvm.so.0.*' -type f | head -1)"
	echo "clang build: symbol versions as with $(cc --version | head -1)"
fi

# compiled once: one compile command per library source in the full build
cc_json=$build/compile_commands.json
[ -f "$cc_json" ] || fail "no $cc_json"
for f in "$src"/lib/*.c; do
	n=$(python3 - "$cc_json" "$(basename "$f")" <<'PY'
import json, os, sys
cmds = json.load(open(sys.argv[1]))
print(sum(1 for c in cmds if os.path.basename(c["file"]) == sys.argv[2]
          and "/lib/" in c["file"] and "fuzz" not in c["output"]))
PY
)
	[ "$n" = 1 ] || fail "lib/$(basename "$f") is compiled $n times in $build"
done
echo "ok: library alone builds and installs with liburing only; lib/*.c compiled once"
