#!/bin/bash
# Writers on a really full filesystem (issue 10): a tmpfs of 8 MiB, mounted
# here (root only), receives outputs larger than it. pack, convert, unpack
# (from a file and from a pipe), export -o and save must each fail with
# "No space left on device" naming the output (never the input), exit
# non-zero, leave nothing under the output name nor any temporary, and keep
# an older file at the output path byte for byte.
#
# convert, export and save need QEMU (a stopped VM whose RAM is a file of
# known data makes the migration stream and serves save); without
# qemu-system-x86_64 only pack and unpack run.
# Usage: fullfs.sh FVMSNAP. Exit 77 when not root or tmpfs cannot be mounted.
set -u

FVMSNAP=$(realpath "$1")
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: mounting a small tmpfs needs root"
	exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/fullfs.XXXXXX")
M=$W/mnt
QPID=
cleanup() {
	[ -n "$QPID" ] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
	mountpoint -q "$M" && umount "$M"
	rm -rf "$W"
}
trap cleanup EXIT
mkdir "$M"
if ! mount -t tmpfs -o size=8m fvmsnap-fullfs "$M" 2>"$W/err"; then
	echo "SKIP: cannot mount a tmpfs: $(cat "$W/err")"
	exit 77
fi
cd "$W" || exit 1
export FVM_TEST=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Inputs (outside the tmpfs): 32 MiB of which half is non-zero, so that
# every output is about 16 MiB; a small old snapshot to be kept.
"$FVMSNAP" sample -q -o big.img --size 32M --seed 3 --nonzero-share 0.5 || exit 1
"$FVMSNAP" pack -q --block pc.ram=big.img -o big.fvm || exit 1
"$FVMSNAP" sample -q -o small.img --size 1M --seed 5 || exit 1
"$FVMSNAP" pack -q --block pc.ram=small.img -o old.fvm || exit 1

# full NAME OUT CMD...: CMD (writing OUT on the tmpfs, where the old file
# lies) must fail with ENOSPC naming OUT, and leave only the old file.
full() {
	local name=$1 out=$2 rc
	shift 2
	rm -rf "${M:?}"/*
	rm -rf "$M"/.[!.]* 2>/dev/null
	cp old.fvm "$out"
	"$@" >out.log 2>err.log
	rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$name on a full filesystem: exit 0"
	fi
	grep -q "^fvmsnap [a-z]*: ${out#"$W"/}: .*No space left on device$" err.log ||
		grep -q "^fvmsnap [a-z]*: $out: .*No space left on device$" err.log ||
		fail "$name: message does not name $out with ENOSPC: $(cat err.log)"
	[ "$(wc -l <err.log)" -eq 1 ] || fail "$name: not one message: $(cat err.log)"
	cmp -s old.fvm "$out" || fail "$name: the older file at $out was changed"
	[ "$(ls -A "$(dirname "$out")")" = "$(basename "$out")" ] ||
		fail "$name: left behind: $(ls -A "$(dirname "$out")")"
	echo "ok: $name: exit $rc, $(cat err.log)"
}

full pack mnt/x.fvm "$FVMSNAP" pack -q --block pc.ram=big.img -o mnt/x.fvm

# unpack into a directory holding an older pc.ram.raw
unpack_full() {
	local name=$1 want=$2 rc
	shift 2
	rm -rf "${M:?}"/*
	mkdir -p "$M/out"
	cp small.img "$M/out/pc.ram.raw"
	"$@" >out.log 2>err.log
	rc=$?
	[ "$rc" -ne 0 ] || fail "$name: exit 0"
	grep -q "^fvmsnap unpack: $want: No space left on device$" err.log ||
		fail "$name: message does not name $want with ENOSPC: $(cat err.log)"
	[ "$(wc -l <err.log)" -eq 1 ] || fail "$name: not one message: $(cat err.log)"
	cmp -s small.img "$M/out/pc.ram.raw" || fail "$name: the older pc.ram.raw was changed"
	[ "$(ls -A "$M/out")" = pc.ram.raw ] || fail "$name: left behind: $(ls -A "$M/out")"
	echo "ok: $name: exit $rc, $(cat err.log)"
}
unpack_full "unpack from a file" mnt/out/pc.ram.raw "$FVMSNAP" unpack -q big.fvm -o mnt/out
# from a pipe the runs are known only while loading: the directory is named
unpack_full "unpack from a pipe" mnt/out \
	bash -c "cat big.fvm | '$FVMSNAP' unpack -q - -o mnt/out"
# a directory unpack created itself is removed again
rm -rf "${M:?}"/*
"$FVMSNAP" unpack -q big.fvm -o mnt/new 2>/dev/null && fail "unpack into a new directory: exit 0"
[ -z "$(ls -A "$M")" ] || fail "unpack into a new directory left: $(ls -A "$M")"

if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	echo "note: qemu-system-x86_64 not installed: convert, export and save not checked"
	[ "$fails" -eq 0 ] || exit 1
	exit 0
fi
# A stopped VM whose RAM is big.img (private copy): its migration stream.
cp big.img ram.img
printf 'migrate "exec:cat > big.mig"\nquit\n' |
	timeout 60 qemu-system-x86_64 -nodefaults -M pc -m 32M -S -display none -monitor stdio \
		-object memory-backend-file,id=pc.ram,mem-path=ram.img,share=off,size=32M \
		-machine memory-backend=pc.ram >qemu.log 2>&1
"$FVMSNAP" convert -q big.mig -o bigc.fvm || { echo "FAIL: no stream from QEMU: $(cat qemu.log)"; exit 1; }

full convert mnt/x.fvm "$FVMSNAP" convert -q big.mig -o mnt/x.fvm
full export mnt/x.mig "$FVMSNAP" export -q bigc.fvm -o mnt/x.mig

# save: a VM with shared RAM (as fvmsnap restore starts it), paused
qemu-system-x86_64 -nodefaults -M pc -m 32M -S -display none \
	-object memory-backend-file,id=pc.ram,mem-path=ram.img,share=on,size=32M \
	-machine memory-backend=pc.ram -qmp unix:"$W/qmp.sock",server=on,wait=off \
	>qemu.log 2>&1 &
QPID=$!
for _ in $(seq 50); do [ -S qmp.sock ] && break; sleep 0.1; done
full save mnt/x.fvm "$FVMSNAP" save -q --qmp qmp.sock -o mnt/x.fvm
# and the VM is still there
kill -0 "$QPID" 2>/dev/null || fail "save on a full filesystem: QEMU is gone: $(cat qemu.log)"

[ "$fails" -eq 0 ] || exit 1
echo "all full-filesystem checks passed"
