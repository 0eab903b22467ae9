#!/bin/bash
# The experiment of doc/BENCHMARKS.md 9, session 6: one cold load of FILE
# (a compressed snapshot, say) on an emulated 137 MB/s device, in
# alternating pairs: first with free page reporting on and the page cache
# dropped 3 s before (the kernel then hands the load pages its host has
# taken back), then after `bench/machine.sh quiet` (reporting off, the free
# memory touched once). Each line: the state, fvmsnap bench's reference
# read and load, and a fresh 1 GiB's first touch right after.
# HOLD GiB are kept in tmpfs meanwhile, so that few free pages are left and
# the load is likelier to get reported ones (default: all but 3 GiB of the
# free memory); whether it does differs from pair to pair. Root only; the machine's settings are put back at the end.
#
# Usage: bench/first-touch-ab.sh [-n PAIRS] [-b BUILD] [--hold GIB] FILE
# Exit 0; 1 on a failure; 2 on a usage error; 77 without the FUSE export.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
N=3 BUILD=$HERE/../build HOLD=
usage() { sed -n '/^# Usage:/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "bench/first-touch-ab.sh: $*" >&2; exit 1; }
while [ $# -gt 1 ]; do
	case $1 in
	-n) N=$2; shift 2 ;;
	-b) BUILD=$2; shift 2 ;;
	--hold) HOLD=$2; shift 2 ;;
	*) usage ;;
	esac
done
[ $# = 1 ] || usage
FILE=$1
case $N in '' | *[!0-9]* | 0) usage ;; esac
[ "$(id -u)" = 0 ] || die "root only (drops caches, changes kernel settings, FUSE)"
[ -r "$FILE" ] || die "$FILE: not readable"
F=$BUILD/tools/fvmsnap FT=$BUILD/bench/first_touch M=$HERE/machine.sh
{ [ -x "$F" ] && [ -x "$FT" ]; } || die "$BUILD: fvmsnap or bench/first_touch not built"
[ -d /sys/module/page_reporting ] || die "no free page reporting here: nothing to compare"
# shellcheck source=bench/emmc-lib.sh
. "$HERE/emmc-lib.sh"
emmc_check || exit 77
W=$(mktemp -d /var/tmp/fvm-ftab.XXXXXX) || die "mktemp failed"
SHM=/dev/shm/fvm-ftab.$$
export FVM_MACHINE_STATE=$W/machine
"$M" show >"$W/before" || die "bench/machine.sh show failed"
grep -q '^page_reporting=on$' "$W/before" ||
	die "page reporting is off already (bench/machine.sh restore first?)"
cleanup() {
	emmc_stop
	rm -f "$SHM"
	[ -e "$FVM_MACHINE_STATE" ] && "$M" restore 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[ -n "$HOLD" ] || HOLD=$(awk '/^MemFree:/ { g = int($2 / 1048576) - 3; print (g > 0 ? g : 0) }' /proc/meminfo)
[ "$HOLD" -gt 0 ] && { fallocate -l "${HOLD}G" "$SHM" || die "cannot hold $HOLD GiB in /dev/shm"; }
emmc_start "$W/dev" 137000000 4000 "$FILE" || die "the device failed"
V=${EMMC_VIEWS[0]}
emmc_prime 137000000 "$V"
one() {
	local out
	out=$("$F" bench -n 1 --cold --no-memory --backend uring --json "$V") || die "bench failed"
	printf '%-34s %s, then %s\n' "$1" "$(echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(", ".join("%s %.3f s" % (r["config"], r["median_ms"] / 1e3) for r in d["results"]))')" \
		"$("$FT" 1024 | awk '{ printf "first touch of 1 GiB %.3f s (%.2f us/page)", $4, $3 }')"
}
echo "holding $HOLD GiB in tmpfs; $FILE at 137 MB/s"
for ((i = 1; i <= N; i++)); do
	[ -e "$FVM_MACHINE_STATE" ] && { "$M" restore 2>/dev/null || die "restore failed"; }
	sync && echo 3 >/proc/sys/vm/drop_caches && sleep 3
	one "reporting on, caches dropped 3 s:"
	"$M" quiet "$FT" 2>/dev/null || die "bench/machine.sh quiet failed"
	sync && echo 3 >/proc/sys/vm/drop_caches && sleep 3
	one "bench/machine.sh quiet:"
done
