#!/bin/bash
# The library's ABI against the previous release's, with libabigail.
#
#   tests/abi/check-abi.sh [--baseline FILE] [--headers DIR] BUILD_DIR|LIBRARY [SOURCE_DIR]
#
# abidw reads the library (BUILD_DIR/lib/libfastvm.so.0, or LIBRARY), with
# only the types of the public headers (SOURCE_DIR/include/fastvm, or --headers)
# counting, and abidiff compares that with the committed baseline
# (SOURCE_DIR/abi/libfastvm.so.0.abi, or --baseline). It fails when
#  - abidiff reports an incompatible change (exit status bit 8,
#    ABIDIFF_ABI_INCOMPATIBLE_CHANGE: a function or variable removed), or
#  - a symbol version of the baseline is gone (fvm_load@LIBFASTVM_0 must stay
#    even when fvm_load@@LIBFASTVM_0.2 is the new default), or
#  - a function or variable of the baseline changed type (abidiff's
#    "Changed" count: a struct it takes grew in place, say), or
#  - a function declared FVM_API in the headers has no default version
#    (programs built against these headers could not link to it),
# unless the SONAME differs from the baseline's: then an incompatible ABI is
# what the new SONAME announces, and the check passes. Additions (new
# functions, new version nodes, new default versions) pass. The abidiff
# report is printed in every case. Exit 77 (skip) without abidw/abidiff.
#
# A change abidiff reports that is known to be compatible can be suppressed
# in tests/abi/abidiff.suppr (libabigail suppression syntax), used when present.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
baseline= headers=
while [ $# -gt 0 ]; do
	case $1 in
	--baseline) baseline=$2; shift 2 ;;
	--headers) headers=$2; shift 2 ;;
	--) shift; break ;;
	-*) echo "check-abi.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: check-abi.sh [--baseline FILE] [--headers DIR] BUILD_DIR|LIBRARY [SOURCE_DIR]" >&2
	exit 2
fi
src=${2:-$here/../..}
lib=$1
[ -d "$lib" ] && lib=$lib/lib/libfastvm.so.0
baseline=${baseline:-$src/abi/libfastvm.so.0.abi}
headers=${headers:-$src/include/fastvm}

for t in abidw abidiff; do
	if ! command -v "$t" >/dev/null; then
		echo "SKIP: $t not found (Debian: apt-get install abigail-tools)"
		exit 77
	fi
done
for f in "$lib" "$baseline"; do
	[ -e "$f" ] || { echo "check-abi.sh: $f: no such file" >&2; exit 1; }
done
[ -d "$headers" ] || { echo "check-abi.sh: $headers: no such directory" >&2; exit 1; }

tmp=$(mktemp -d /tmp/fvm-check-abi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The same options as the baseline (tests/abi/update-baseline.sh).
abidw --headers-dir "$headers" --drop-private-types --drop-undefined-syms \
	--no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
	--out-file "$tmp/new.abi" "$lib"

suppr=()
[ -f "$here/abidiff.suppr" ] && suppr=(--suppr "$here/abidiff.suppr")
rc=0
abidiff --no-show-locs "${suppr[@]}" "$baseline" "$tmp/new.abi" >"$tmp/report" 2>&1 || rc=$?
echo "==== abidiff $(basename "$baseline") $lib (exit status $rc)"
cat "$tmp/report"
echo "===="
if [ $((rc & 3)) -ne 0 ]; then
	echo "FAIL: abidiff could not compare (exit status $rc)"
	exit 1
fi

soname() { sed -n "s/^<abi-corpus [^>]*soname='\([^']*\)'.*/\1/p" "$1" | head -n 1; }
# name@version of every defined function and variable symbol, and "@@" for defaults
symbols() {
	sed -n "s/.*<elf-symbol name='\([^']*\)' version='\([^']*\)' is-default-version='\(yes\|no\)'.* is-defined='yes'.*/\1 \2 \3/p" "$1" |
		sort -u
}
old_so=$(soname "$baseline")
new_so=$(soname "$tmp/new.abi")
if [ "$old_so" != "$new_so" ]; then
	echo "PASS: SONAME changed from '$old_so' to '$new_so': an incompatible ABI is allowed"
	exit 0
fi

fail=0
if [ $((rc & 8)) -ne 0 ]; then
	echo "FAIL: abidiff reports an ABI-incompatible change (exit bit 8) under the same SONAME $new_so"
	fail=1
fi

symbols "$baseline" | awk '{ print $1 "@" $2 }' | sort -u >"$tmp/old.syms"
symbols "$tmp/new.abi" | awk '{ print $1 "@" $2 }' | sort -u >"$tmp/new.syms"
missing=$(comm -23 "$tmp/old.syms" "$tmp/new.syms")
if [ -n "$missing" ]; then
	echo "FAIL: symbol versions of the baseline are gone (binaries linked against it need them):"
	echo "$missing" | sed 's/^/  /'
	fail=1
fi

changed=$(sed -n 's/^\(Functions\|Variables\) changes summary: [0-9]* Removed, \([0-9]*\) Changed.*/\2/p' \
	"$tmp/report" | awk '{ n += $1 } END { print n + 0 }')
if [ "$changed" -gt 0 ]; then
	echo "FAIL: $changed function(s) or variable(s) of the baseline changed type under the same" \
		"SONAME (see [C] above); give the change a new symbol version, or suppress it in" \
		"tests/abi/abidiff.suppr if it is compatible"
	fail=1
fi

# Each FVM_API function of the headers must have a default version (@@).
if command -v python3 >/dev/null; then
	symbols "$tmp/new.abi" | awk '$3 == "yes" { print $1 }' | sort -u >"$tmp/defaults"
	for h in "$headers"/*.h; do
		python3 "$here/gen-stub.py" "$h" --list 2>/dev/null || true
	done | sort -u >"$tmp/declared"
	nodefault=$(comm -23 "$tmp/declared" "$tmp/defaults")
	if [ -n "$nodefault" ]; then
		echo "FAIL: declared FVM_API in $headers but exported without a default version:"
		echo "$nodefault" | sed 's/^/  /'
		fail=1
	fi
fi

[ "$fail" = 0 ] || exit 1
added=$(comm -13 "$tmp/old.syms" "$tmp/new.syms" | wc -l)
if [ $((rc & 4)) -ne 0 ]; then
	echo "PASS: compatible with the baseline ($new_so); $added symbol version(s) added"
else
	echo "PASS: no ABI change against the baseline ($new_so)"
fi
