#!/bin/bash
# The main job of the README on a bundled default: generate a synthetic
# 512 MiB guest RAM image, pack it, inspect it, verify it, unpack it and
# compare with the original, then benchmark loading against a plain read.
# Usage: tools/demo.sh BUILD_DIR   (work files go to BUILD_DIR/demo)
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 1
fi
BUILD=$(cd "$1" && pwd)
FVMSNAP="$BUILD/tools/fvmsnap"
[ -x "$FVMSNAP" ] || { echo "$FVMSNAP not found: build first (ninja -C $1)" >&2; exit 1; }
WORK="$BUILD/demo"
mkdir -p "$WORK"
cd "$WORK"
rm -rf unpacked

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1/6 generate a synthetic 512 MiB guest RAM image (run structure of a real guest)"
run "$FVMSNAP" sample -o ram.img --size 512M --seed 1

step "2/6 pack it into a snapshot"
run "$FVMSNAP" pack --block pc.ram=ram.img --meta machine=demo -o ram.fvm

step "3/6 inspect the snapshot"
run "$FVMSNAP" inspect ram.fvm

step "4/6 verify every checksum and structural rule"
run "$FVMSNAP" verify ram.fvm

step "5/6 unpack it and compare with the original"
run "$FVMSNAP" unpack ram.fvm -o unpacked
run cmp ram.img unpacked/pc.ram.raw
echo "identical: unpacked/pc.ram.raw == ram.img"

step "6/6 benchmark loading (warm and cold page cache, io_uring and pread) against a plain read"
run "$FVMSNAP" bench -n 3 ram.fvm

printf '\ndemo done; files in %s\n' "$WORK"
