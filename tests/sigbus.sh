#!/bin/bash
# An input image that stops being readable under its mapping (issue 10):
# fvmsnap pack maps its input images, and a page the kernel cannot give
# (the file cut short meanwhile, or an I/O error of its device) raises
# SIGBUS, which an LD_PRELOAD shim cannot inject as an errno. The fault shim
# (FVM_FAULT_CUT) cuts the image right after pack maps it, as another
# process truncating it would, so the reads past the cut raise a real
# SIGBUS. pack must then say which file and which offset, exit 3, leave the
# previous file at the output path as it was, and leave no temporary with
# O_TMPFILE; with named temporaries (no O_TMPFILE) it says where
# `fvmsnap clean` finds the one it leaves, and clean removes it.
# Usage: sigbus.sh FVMSNAP SHIM
set -u
FVMSNAP=$(realpath "$1")
SHIM=$(realpath "$2")
die() { echo "FAIL: $*"; exit 1; }
# Under ASan the shim cannot come after the runtime in the library list, and
# our SIGBUS handler must be let in.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:allow_user_segv_handler=1
W=$(mktemp -d "${TMPDIR:-/tmp}/fvm-sigbus.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir "$W/in" "$W/out"
head -c 1M /dev/urandom >"$W/old.img"
"$FVMSNAP" pack -q --block pc.ram="$W/old.img" -o "$W/out/s.fvm" || die "pack of the old image"
cp "$W/out/s.fvm" "$W/before.fvm"
for mode in tmpfile named; do
	head -c 8M /dev/urandom >"$W/in/ram.img"
	env=(LD_PRELOAD="$SHIM" FVM_FAULT_DIR="$W/in" FVM_FAULT=count FVM_FAULT_CUT=$((0x201000)))
	# named temporaries: the shim covers the output's directory too and
	# refuses O_TMPFILE there
	[ $mode = named ] && env=(LD_PRELOAD="$SHIM" FVM_FAULT_DIR="$W" FVM_FAULT=count
		FVM_FAULT_CUT=$((0x201000)) FVM_FAULT_NO_TMPFILE=1)
	rc=0
	env "${env[@]}" "$FVMSNAP" pack --block pc.ram="$W/in/ram.img" -o "$W/out/s.fvm" 2>"$W/err" || rc=$?
	cat "$W/err"
	[ $rc = 3 ] || die "$mode: pack exit $rc, expected 3"
	grep -q "ram.img: cannot read the page at offset 0x201000: an I/O error of its device, or the file was cut short" "$W/err" ||
		die "$mode: no message naming the image and the offset"
	[ "$(stat -c %s "$W/in/ram.img")" = $((0x201000)) ] || die "$mode: the shim did not cut the image"
	cmp -s "$W/out/s.fvm" "$W/before.fvm" || die "$mode: the previous output changed"
	left=$(cd "$W/out" && ls -A | grep -vx s.fvm)
	if [ $mode = tmpfile ]; then
		[ -z "$left" ] || die "$mode: left behind: $left"
	else
		# a named temporary cannot be removed from the signal: the message
		# says so, and fvmsnap clean finds and removes it
		grep -q "fvmsnap clean" "$W/err" || die "named: the message does not point to fvmsnap clean"
		case $left in .s.fvm.??????) ;; *) die "named: expected one .s.fvm.XXXXXX, found: $left" ;; esac
		"$FVMSNAP" clean -q --min-age 0 "$W/out/s.fvm" || die "named: fvmsnap clean failed"
		left=$(cd "$W/out" && ls -A | grep -vx s.fvm)
		[ -z "$left" ] || die "named: fvmsnap clean left $left"
	fi
	"$FVMSNAP" verify -q "$W/out/s.fvm" || die "$mode: the previous output no longer verifies"
done
echo "PASS: SIGBUS of a mapped input reported with file and offset, old output intact, nothing left"
