#!/bin/bash
# SIGKILL during a save (issue 10, doc/RELIABILITY.md): fvmsnap pack (plain
# and compressed), fvmsnap convert (a migration stream) and recompress write a 256 MiB guest's snapshot
# over a path that holds an older valid snapshot, and are killed at
# FVM_KILLS (12) random points each, drawn uniformly over the time a clean
# run takes (the quickest of three), so kills land in the writes, the fsync and
# around the rename. Afterwards the path holds the complete old file (byte
# for byte) or a complete new one (fvmsnap verify accepts it, its size is
# the clean run's), and the directory holds nothing else, but for a named
# temporary .NAME.XXXXXX that a kill between linkat and rename can leave
# (recognisable by name; counted and said). Prints every kill point.
#
# Usage: kill.sh FVMSNAP   (meson runs it from the build directory; needs
# about 700 MiB of free space there)
set -u

FVMSNAP=$(realpath "$1")
CORPUS=$(realpath "$(dirname "$0")/../fuzz/corpus")
STREAM_OF=$(realpath "$(dirname "$0")/stream-of.sh")
KILLS=${FVM_KILLS:-12}
W=$(mktemp -d "$PWD/kill-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export FVM_TEST=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fs() { "$FVMSNAP" "$@"; }
# milliseconds since the epoch, without a fork (bash 5's EPOCHREALTIME)
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

avail=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${avail:-0}" -lt $((700 * 1024)) ]; then
	echo "SKIP: less than 700 MiB free in $PWD"
	exit 77
fi

# ---- inputs: a 256 MiB RAM image (half data) and, for convert, a QEMU
# stream of it: a converted synthetic stream's device state with its RAM
# section declaring 256 MiB, exported by fvmsnap export
fs sample -q -o ram.img --size 256M --seed 31 --nonzero-share 0.5 || exit 1
fs sample -q -o old.img --size 8M --seed 32 || exit 1
fs pack -q --no-fsync --block pc.ram=old.img -o old.fvm || exit 1
"$STREAM_OF" "$FVMSNAP" ram.img big || exit 1

# kills NAME CMD...: run CMD (writing out.fvm) KILLS times, killed at random
kills() {
	local name=$1 t0 t1 clean size d pid i got olds=0 news=0 tmps=0 late=0
	shift
	# the quickest of three runs (the input in the page cache, as in the
	# kills; the machine may be busy): kills drawn up to it mostly land
	# before the end
	clean=
	for i in 1 2 3; do
		cp old.fvm out.fvm
		t0=$(now_ms)
		"$@" >/dev/null 2>&1 || { fail "$name: clean run failed"; return; }
		t1=$(now_ms)
		[ -z "$clean" ] || [ $((t1 - t0)) -lt "$clean" ] && clean=$((t1 - t0))
	done
	size=$(stat -c %s out.fvm)
	fs verify -q out.fvm || fail "$name: clean output does not verify"
	echo "$name: a clean run takes $clean ms, writes $size bytes"
	for ((i = 1; i <= KILLS; i++)); do
		cp old.fvm out.fvm
		d=$((RANDOM % (clean + 1)))
		t0=$(now_ms)
		"$@" >/dev/null 2>&1 &
		pid=$!
		sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
		{
			kill -KILL $pid
			t1=$(now_ms)
			wait $pid
		} 2>/dev/null # no "Killed" from the shell
		# 137: killed; otherwise it had ended (exit status kept)
		[ $? -eq 137 ] || late=$((late + 1))
		d=$((t1 - t0)) # the kill point, as it happened
		if cmp -s out.fvm old.fvm; then
			got=old
			olds=$((olds + 1))
		elif fs verify -q out.fvm >/dev/null 2>&1 && [ "$(stat -c %s out.fvm)" = "$size" ]; then
			got=new
			news=$((news + 1))
		else
			got=BROKEN
			fail "$name: killed at $d ms: out.fvm is neither the old nor a whole new file"
		fi
		left=$(ls -A | grep -v -x -e ram.img -e old.img -e old.fvm -e big.mig -e big.fvm -e out.fvm)
		if [ -n "$left" ]; then
			if echo "$left" | grep -q -v -x '\.out\.fvm\.[a-z0-9]\{6\}'; then
				fail "$name: killed at $d ms: left $left"
			else
				tmps=$((tmps + 1))
				got="$got, left the named temporary $left"
			fi
			rm -f $left
		fi
		echo "  kill $i at $d ms of $clean: $got"
	done
	echo "$name: $KILLS kills: $olds old, $news new, $tmps named temporaries, $late after the end"
}

kills pack fs pack -q --block pc.ram=ram.img -o out.fvm
kills convert fs convert -q big.mig -o out.fvm
# the compressing writer (frames on a thread per CPU) and recompress
kills "pack --compress" fs pack -q --compress zstd:1 --block pc.ram=ram.img -o out.fvm
kills recompress fs recompress -q big.fvm -o out.fvm --compress zstd:1

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all kill checks passed"
