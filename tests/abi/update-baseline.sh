#!/bin/bash
# Write the ABI baseline that tests/abi/check-abi.sh compares against:
#
#   tests/abi/update-baseline.sh RELEASE_BUILD_DIR RELEASE_SOURCE_DIR [OUT]
#
# RELEASE_BUILD_DIR is a build (with debug info: meson's default
# debugoptimized) of RELEASE_SOURCE_DIR, the tree of the release whose ABI
# later builds must keep; only the types of its public headers
# (RELEASE_SOURCE_DIR/include/fastvm) count. OUT defaults to
# abi/libfastvm.so.0.abi beside this script's tree. See tests/abi/README.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
	echo "usage: update-baseline.sh RELEASE_BUILD_DIR RELEASE_SOURCE_DIR [OUT]" >&2
	exit 2
fi
lib=$1/lib/libfastvm.so.0
out=$(realpath -m "${3:-$here/../../abi/libfastvm.so.0.abi}")
command -v abidw >/dev/null || { echo "abidw not found (apt-get install abigail-tools)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
abidw --headers-dir "$2/include/fastvm" --drop-private-types --drop-undefined-syms \
	--no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
	--out-file "$out" "$lib"
echo "$out: ABI of $(basename "$lib"): $(grep -c '<elf-symbol ' "$out") symbols," \
	"SONAME $(sed -n "s/^<abi-corpus [^>]*soname='\([^']*\)'.*/\1/p" "$out")"
