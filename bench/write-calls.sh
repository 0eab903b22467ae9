#!/bin/bash
# Buffered writes of one file in calls of different sizes: why lib/writer.c
# writes at most 256 KiB per call (WRITE_CALL_MAX). Copies FILE (read into
# the page cache first) with dd bs=SIZE for every SIZE, N alternating
# rounds, each after sync and drained writeback, without fsync (the page
# cache side only; add FSYNC=1 for conv=fsync); prints per size the times
# sorted and the median.
# Usage: bench/write-calls.sh [-n N] FILE [DIR] [SIZES]
#   DIR    where the copies go (default: FILE's directory; a disk, not tmpfs)
#   SIZES  dd block sizes (default "16M 2M 1M 256K")
set -u
N=5
if [ "${1:-}" = -n ]; then N=$2; shift 2; fi
F=${1:?usage: bench/write-calls.sh [-n N] FILE [DIR] [SIZES]}
D=${2:-$(dirname "$F")}
SIZES=${3:-16M 2M 1M 256K}
OUT=$D/write-calls.$$
trap 'rm -f "$OUT"' EXIT
conv=
[ "${FSYNC:-0}" = 1 ] && conv=conv=fsync
settle() {
	local k=0
	sync
	while [ "$(awk '/^(Dirty|Writeback):/ { s += $2 } END { print s + 0 }' /proc/meminfo)" -ge 16384 ] &&
		[ $k -lt 120 ]; do
		k=$((k + 1))
		sleep 0.5
	done
}
declare -A T
for ((i = 1; i <= N; i++)); do
	cat "$F" >/dev/null
	for bs in $SIZES; do
		rm -f "$OUT"
		settle
		t0=$(date +%s%N)
		dd if="$F" of="$OUT" bs="$bs" $conv status=none || exit 1
		t1=$(date +%s%N)
		T[$bs]="${T[$bs]:-} $(((t1 - t0) / 1000000))"
	done
done
for bs in $SIZES; do
	echo "${T[$bs]}" | tr ' ' '\n' | sed '/^$/d' | sort -n |
		awk -v bs="$bs" '{ a[NR] = $1 } END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
			s = ""; for (i = 1; i <= NR; i++) s = s " " a[i]; printf "bs=%-5s median %6.0f ms:%s\n", bs, m, s }'
done
