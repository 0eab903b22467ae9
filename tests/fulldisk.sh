#!/bin/bash
# A real full file system (issue 10, doc/RELIABILITY.md): a 24 MiB tmpfs
# holding an older output and a filler file that leaves FREE bytes (from
# none to most of what the output needs), and pack, convert, export and
# unpack writing a 16 MiB guest's snapshot (stream, RAM images) into it.
# Each either works (the output whole) or fails with exit 1-127 and a
# message that says "No space left on device";
# the old output stays byte
# for byte, nothing else is left in the directory, and the space is given
# back (the tmpfs as full as before).
#
# Needs root for mount (exit 77 otherwise: no tmpfs).
# Usage: fulldisk.sh FVMSNAP   (meson runs it from the build directory)
set -u

FVMSNAP=$(realpath "$1")
CORPUS=$(realpath "$(dirname "$0")/../fuzz/corpus")
STREAM_OF=$(realpath "$(dirname "$0")/stream-of.sh")
W=$(mktemp -d "${TMPDIR:-/tmp}/fvm-fulldisk.XXXXXX")
M=$W/mnt
mkdir "$M"
if ! mount -t tmpfs -o size=24m fvm-fulldisk "$M" 2>/dev/null; then
	rmdir "$M" "$W"
	echo "SKIP: cannot mount a tmpfs (not root?)"
	exit 77
fi
trap 'umount "$M"; rm -rf "$W"' EXIT
cd "$W" || exit 1
export FVM_TEST=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fs() { "$FVMSNAP" "$@"; }

# ---- inputs (outside the tmpfs): 16 MiB of RAM, most of it data
fs sample -q -o ram.img --size 16M --seed 61 --nonzero-share 0.8 || exit 1
fs sample -q -o old.img --size 1M --seed 62 || exit 1
fs pack -q --no-fsync --block pc.ram=old.img -o old.fvm || exit 1
"$STREAM_OF" "$FVMSNAP" ram.img s || exit 1
cp "$CORPUS/stream/synthetic-good.mig" old.mig
fs unpack -q old.fvm -o oldunpack || exit 1

# name | output in the tmpfs | old content | command | check of a good output
OPS=(
	"pack|out.fvm|old.fvm|pack --block pc.ram=ram.img -o M/out.fvm|fs verify -q M/out.fvm"
	"convert|out.fvm|old.fvm|convert s.mig -o M/out.fvm|fs verify -q M/out.fvm"
	"export|out.mig|old.mig|export s.fvm -o M/out.mig|cmp -s M/out.mig s.mig"
	"unpack|outdir|oldunpack|unpack s.fvm -o M/outdir|cmp -s M/outdir/pc.ram.raw ram.img"
)
# free space left by the filler, KiB: none, a little, about half the output, most of it
for op in "${OPS[@]}"; do
	IFS='|' read -r name out old cmd check <<<"$op"
	cmd=${cmd//M\//$M/}
	check=${check//M\//$M/}
	for free in 0 64 4096 12288; do
		rm -rf "${M:?}"/*
		cp -a "$old" "$M/$out"
		# the filler takes all but FREE KiB (tmpfs counts whole pages)
		avail=$(df -Pk "$M" | awk 'NR == 2 { print $4 }')
		if [ "$avail" -gt "$free" ]; then
			head -c $(((avail - free) * 1024)) /dev/zero > "$M/filler" 2>/dev/null
		fi
		before=$(ls -A "$M" | sort)
		used=$(df -Pk "$M" | awk 'NR == 2 { print $3 }')
		what="$name with $free KiB free"
		# shellcheck disable=SC2086
		"$FVMSNAP" $cmd >out.log 2>err.log
		rc=$?
		if [ $rc -eq 0 ]; then
			eval "$check" || fail "$what: exit 0 but the output is not whole"
			echo "$what: fits"
			continue
		fi
		[ $rc -lt 128 ] || fail "$what: killed by signal $((rc - 128))"
		msg=$(head -1 err.log)
		case $msg in
		"fvmsnap $name: "*"No space left on device"*) ;;
		*) fail "$what: exit $rc, message: $msg" ;;
		esac
		if [ -d "$old" ]; then
			diff -r -q "$M/$out" "$old" >/dev/null || fail "$what: $out changed"
		else
			cmp -s "$M/$out" "$old" || fail "$what: $out changed"
		fi
		now=$(ls -A "$M" | sort)
		[ "$now" = "$before" ] || fail "$what: left $(comm -13 <(echo "$before") <(echo "$now") | tr '\n' ' ')"
		[ "$(df -Pk "$M" | awk 'NR == 2 { print $3 }')" = "$used" ] ||
			fail "$what: the space is not given back (a deleted file still open?)"
		echo "$what: exit $rc: $msg"
	done
done

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all full-disk checks passed"
