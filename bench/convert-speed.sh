#!/bin/bash
# Benchmark (not a test): the speed goal of issue 3, "convert of the 512 MiB
# guest's qcow2 snapshot runs at no less than half the speed of a raw
# sequential read of its vmstate bytes, measured in the same run".
#
# Raw read = build/bench/vmstate_read: the snapshot's vmstate bytes read
# through its own L1/L2 mapping (the code convert reads through) into a
# 1 MiB buffer, nothing else. convert = `fvmsnap convert QCOW2 --snapshot S
# -o OUT` as a whole process (open, parse, CRC, write, fsync, rename), its
# output removed before each run (outside the timing). Both are timed the
# same way (exec to exit), interleaved round by round so that other load on
# the machine hits both alike; figures are medians of N rounds. Speed ratio
# = raw time / convert time (the goal: >= 0.5).
#
# Warm: page cache holds the qcow2 file. Cold: the file's cached pages are
# dropped before each timed run (sync, then POSIX_FADV_DONTNEED through
# `dd iflag=nocache count=0`; no root needed, other files' caches untouched).
# Outputs: a file beside the work files on disk (the real case: written,
# fsynced, renamed) and a file in /dev/shm (tmpfs, no device I/O).
# Context lines: dd of the whole qcow2 file, and copying the qcow2 file to
# the same output places (dd bs=1M, conv=fsync on disk), i.e. what reading
# plus writing the same number of bytes costs without any convert work.
#
# Usage: convert-speed.sh [-n N] [-b BUILD] [QCOW2 SNAPSHOT]
#   Without QCOW2, a 512 MiB test guest (tests/qemu, needs QEMU and socat)
#   is booted and snapshotted into a new qcow2 image first.
# Env: FVM_KEEP=1 keeps the work dir; FVM_BENCH_DIR: where the work dir goes
# (default BUILD/bench-work; must be on the disk you want to measure).
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=5
BUILD=
while getopts "n:b:" o; do
	case $o in
	n) RUNS=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	*) echo "usage: convert-speed.sh [-n N] [-b BUILD] [QCOW2 SNAPSHOT]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
if [ -z "$BUILD" ]; then
	for d in "$HERE"/../build*; do
		[ -x "$d/tools/fvmsnap" ] && [ -x "$d/bench/vmstate_read" ] && { BUILD=$d; break; }
	done
fi
BUILD=$(cd "${BUILD:-.}" && pwd)
FVMSNAP=$BUILD/tools/fvmsnap
VMREAD=$BUILD/bench/vmstate_read
for x in "$FVMSNAP" "$VMREAD"; do
	[ -x "$x" ] || { echo "convert-speed: $x not built (ninja -C BUILD)" >&2; exit 1; }
done
mkdir -p "${FVM_BENCH_DIR:-$BUILD/bench-work}"
W=$(mktemp -d "${FVM_BENCH_DIR:-$BUILD/bench-work}/convert-speed.XXXXXX")
SHM=
[ -d /dev/shm ] && [ -w /dev/shm ] && SHM=$(mktemp -d /dev/shm/fvm-convert-speed.XXXXXX)
cleanup() {
	[ -n "$SHM" ] && rm -rf "$SHM"
	[ "${FVM_KEEP:-0}" = 1 ] && echo "work dir kept: $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT

if [ $# -ge 2 ]; then
	Q=$1 SNAP=$2
else
	# A fresh snapshot of the 512 MiB test guest (see tests/qemu/README.md).
	Q=$W/disk.qcow2 SNAP=s1
	(
		. "$HERE/../tests/qemu/lib.sh"
		FVM_BUILD_DIR=$BUILD
		fvm_init convert-speed "$FVMSNAP"
		blank_disk "$Q" 256M
		boot_guest "$WORK/src" -drive file="$Q",if=virtio
		vm_stop "$WORK/src"
		savevm "$WORK/src" "$SNAP"
		vm_quit "$WORK/src"
	) || { echo "convert-speed: could not make the test snapshot" >&2; exit 1; }
fi
[ -r "$Q" ] || { echo "convert-speed: cannot read $Q" >&2; exit 1; }
vmbytes=$("$VMREAD" "$Q" "$SNAP") || exit 1
qbytes=$(stat -c %s "$Q")
sync

# us CMD...: microseconds from exec to exit, output discarded.
us() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || { echo "convert-speed: failed: $*" >&2; exit 1; }
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000))
}
drop() { sync "$Q" 2>/dev/null || sync; dd if="$Q" iflag=nocache count=0 status=none; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# One round of every measurement for one cache state; each line "name us".
round() {
	local cold=$1 out
	[ "$cold" = 1 ] && drop
	echo "raw $(us "$VMREAD" "$Q" "$SNAP")"
	[ "$cold" = 1 ] && drop
	echo "dd $(us dd if="$Q" of=/dev/null bs=1M)"
	for out in disk shm; do
		local dir=$W
		[ $out = shm ] && { [ -n "$SHM" ] || continue; dir=$SHM; }
		rm -f "$dir/s.fvm" "$dir/copy.bin"
		[ "$cold" = 1 ] && drop
		echo "conv-$out $(us "$FVMSNAP" convert "$Q" --snapshot "$SNAP" -o "$dir/s.fvm")"
		[ "$cold" = 1 ] && drop
		if [ $out = disk ]; then
			echo "copy-$out $(us dd if="$Q" of="$dir/copy.bin" bs=1M conv=fsync)"
		else
			echo "copy-$out $(us dd if="$Q" of="$dir/copy.bin" bs=1M)"
		fi
		rm -f "$dir/copy.bin"
	done
}

declare -A med
for cold in 0 1; do
	[ "$cold" = 0 ] && cat "$Q" >/dev/null
	for i in $(seq 1 "$RUNS"); do round $cold || exit 1; done >"$W/times.$cold"
	for k in raw dd conv-disk copy-disk conv-shm copy-shm; do
		med[$cold.$k]=$(awk -v k="$k" '$1 == k {print $2}' "$W/times.$cold" | median)
	done
done
fsize=$(stat -c %s "$W/s.fvm" 2>/dev/null || echo 0)

sec() { [ -n "$1" ] && awk -v u="$1" 'BEGIN {printf "%8.4f s", u / 1e6}' || printf '%10s' n/a; }
mbs() { [ -n "$1" ] && awk -v n="$vmbytes" -v u="$1" 'BEGIN {printf "%6.0f MB/s", n / u}' || printf '%11s' ""; }
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}' || printf n/a; }
line() { # label cold key [reference key for a ratio]
	local v=${med[$2.$3]:-}
	printf '   %-40s %s %s' "$1" "$(sec "$v")" "$(mbs "$v")"
	[ $# -ge 4 ] && printf '   %s/%s = %s' "$4" "$3" "$(ratio "${med[$2.$4]:-}" "$v")"
	echo
}
cat <<EOF

== convert-speed: qcow2 internal snapshot '$SNAP' of $Q
vmstate $vmbytes bytes, qcow2 file $qbytes bytes, converted .fvm $fsize bytes
medians of $RUNS rounds (interleaved); MB/s are vmstate bytes per second
output on disk: $W ($(df -P "$W" | awk 'NR == 2 {print $1}')); tmpfs: ${SHM:-none}
EOF
for cold in 0 1; do
	[ "$cold" = 0 ] && echo "
warm page cache" || echo "
cold page cache (the qcow2 file's pages dropped before each run)"
	line "raw read of the vmstate (vmstate_read)" $cold raw
	line "context: dd of the qcow2 file" $cold dd
	line "convert -o disk (fsync + rename)" $cold conv-disk raw
	line "convert -o tmpfs" $cold conv-shm raw
	line "context: copy qcow2 -> disk (fsync)" $cold copy-disk raw
	line "context: copy qcow2 -> tmpfs" $cold copy-shm raw
	echo "   goal: raw/conv-disk >= 0.5; convert against a plain copy: disk $(ratio "${med[$cold.copy-disk]:-}" "${med[$cold.conv-disk]:-}"), tmpfs $(ratio "${med[$cold.copy-shm]:-}" "${med[$cold.conv-shm]:-}")"
done
