#!/bin/bash
# Benchmark (not a test): snapshot loading from an eMMC-class device, i.e.
# slow flash at ~200-250 MB/s, emulated as in real-qemu.md ("A slow device
# for benchmarks"): qemu-storage-daemon exports the snapshot file through
# FUSE behind a throttle group (200 MiB/s, 4000 read IOPS), reading the
# backing file with O_DIRECT (cache.direct=on) so the host page cache of
# the backing file never serves it.
#
# What it does, in a work dir on a real disk (not tmpfs):
#  1. `fvmsnap sample --size 512M` (synthetic 512 MiB guest RAM) and
#     `fvmsnap pack` into snap.fvm. A FUSE export has the size of a block
#     device, i.e. the file's size rounded up to 512 bytes, and a snapshot's
#     footer must be its last 32 bytes; so the snapshot is padded to a
#     multiple of 512 bytes with a few tiny metadata records
#     (fvm.bench.padN=1, 8 index bytes each), not by appending bytes.
#     (The export and the padding are bench/emmc-lib.sh's, shared with
#     bench/run.sh.)
#  2. Puts it on the emulated device (bench/emmc-lib.sh: an ext4 image
#     exported throttled through FUSE, on a loop device, mounted), where it
#     is VIEW; checks VIEW's content, and takes the device down on any exit.
#  3. `fvmsnap bench VIEW --cold` (load vs a plain read() of VIEW, 1 MiB at
#     a time, through the same throttle), then the same with
#     --backend pread and with --direct (if the export takes O_DIRECT).
#     Cold means POSIX_FADV_DONTNEED before each run. The script checks
#     that the cold reference read is not faster than the throttle allows
#     (plus its burst); if it is, the page cache was not dropped and it
#     falls back to a fresh export before every run (also forced by -r).
#  4. A summary: device MB/s seen by the plain read, load MB/s, ratio,
#     and the time to load 574 MB (the talk's snapshot) at those rates,
#     computed, not measured.
#
# Usage: emmc.sh [-n N] [-b BUILD] [-r] [WORKDIR]
#   -n N      runs per configuration (default 5)
#   -b BUILD  meson build dir with tools/fvmsnap (default: first ../build*)
#   -r        fresh export before every run instead of trusting DONTNEED
#   WORKDIR   existing dir for the files (kept); default a new dir under
#             /var/tmp (removed unless FVM_KEEP=1)
# Needs: qemu-storage-daemon with FUSE export (Debian: qemu-system-x86 or
# qemu-utils), /dev/fuse, loop devices, mkfs.ext4, and root.
# Env: FVM_EMMC_BPS (default 209715200), FVM_EMMC_IOPS (default 4000).
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=5
BUILD=
RESTART=0
BPS=${FVM_EMMC_BPS:-209715200}
IOPS=${FVM_EMMC_IOPS:-4000}
TALK_MB=574
usage() { echo "usage: emmc.sh [-n N] [-b BUILD] [-r] [WORKDIR]" >&2; exit 2; }
die() { echo "emmc: $*" >&2; exit 1; }
while getopts "n:b:r" o; do
	case $o in
	n) RUNS=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	r) RESTART=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
case $RUNS in '' | *[!0-9]* | 0) die "-n wants a positive number" ;; esac
if [ -z "$BUILD" ]; then
	for d in "$HERE"/../build*; do
		[ -x "$d/tools/fvmsnap" ] && { BUILD=$d; break; }
	done
fi
BUILD=$(cd "${BUILD:-.}" && pwd)
FVMSNAP=$BUILD/tools/fvmsnap
[ -x "$FVMSNAP" ] || die "$FVMSNAP not built (ninja -C BUILD)"
# shellcheck source=emmc-lib.sh
. "$HERE/emmc-lib.sh"
emmc_check || die "cannot emulate the device"

# Work dir: on a real disk, since qemu reads the backing file with O_DIRECT
# and the point is reading from a device; tmpfs would refuse O_DIRECT or
# measure memory.
OWN_W=0
if [ $# = 1 ]; then
	W=$(cd "$1" && pwd) || die "no work dir $1"
else
	W=$(mktemp -d /var/tmp/fvm-emmc.XXXXXX) || die "mktemp under /var/tmp failed"
	OWN_W=1
fi
fstype=$(df --output=fstype "$W" | tail -n 1 | tr -d ' ')
case $fstype in
tmpfs | ramfs | devtmpfs) die "$W is on $fstype; give a WORKDIR on a disk" ;;
esac

SNAP=$W/snap.fvm
VIEW=
stop_export() { emmc_stop; }
cleanup() {
	stop_export
	if [ $OWN_W = 1 ]; then
		[ "${FVM_KEEP:-0}" = 1 ] && echo "work dir kept: $W" >&2 || rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The snapshot, padded to a multiple of 512 bytes (see above).
"$FVMSNAP" sample -q -o "$W/ram.img" --size 512M || die "sample failed"
emmc_pack_padded "$FVMSNAP" "$SNAP" --block pc.ram="$W/ram.img" || die "pack failed"
size=$(stat -c %s "$SNAP")
rm -f "$W/ram.img"
sync "$SNAP"

# 2. The throttled export.
start_export() {
	emmc_start "$W/dev" "$BPS" "$IOPS" "$SNAP" || die "the throttled export failed"
	VIEW=${EMMC_VIEWS[0]}
}
start_export
cmp -s "$VIEW" "$SNAP" || die "VIEW differs from $SNAP"
"$FVMSNAP" verify "$VIEW" >/dev/null || die "fvmsnap verify of VIEW failed"

# O_DIRECT through the export: FUSE refuses it unless the daemon allows it.
DIRECT=1
dd if="$VIEW" of=/dev/null bs=1M count=1 iflag=direct status=none 2>"$W/dd.err" || {
	DIRECT=0
	echo "emmc: O_DIRECT on the FUSE view fails: $(cat "$W/dd.err"); --direct skipped"
}

# 3. Benchmarks. bench TAG ARGS...: the table into $W/TAG.txt and stdout.
bench() {
	local tag=$1
	shift
	if [ $RESTART = 0 ]; then
		"$FVMSNAP" bench "$VIEW" --cold -n "$RUNS" --no-memory "$@" >"$W/$tag.txt" ||
			die "bench $* failed"
	else
		bench_restart "$@" >"$W/$tag.txt" || die "bench $* failed"
	fi
	cat "$W/$tag.txt"
}

# A fresh throttle group lets its first BPS/10 bytes through at full
# speed; that credit would go to whichever run comes first (the reference),
# so use it up with a read that leaves no page cache behind.
prime() { emmc_prime "$BPS" "$VIEW"; }

# Fresh export before each single run; rows "cold CONFIG MEDIAN_MS ... MB/s
# RATIO" rebuilt from the per-run tables (medians over the runs).
bench_restart() {
	local i
	# No pipeline around the loop: EMMC_QSD_PID must stay in this shell.
	: >"$W/runs.txt"
	for ((i = 0; i < RUNS; i++)); do
		stop_export
		start_export
		prime
		"$FVMSNAP" bench "$VIEW" --cold -n 1 --no-memory "$@" >>"$W/runs.txt" || return 1
	done
	grep '^cold ' "$W/runs.txt" | awk -v sz="$size" '
		{ name = ($2 == "read()") ? "read() 1 MiB" : $2 " " $3
		  ms = ($2 == "read()") ? $5 : $4
		  if (!(name in n)) order[++k] = name
		  v[name, ++n[name]] = ms }
		function med(name,   i, j, t, c) {
			c = n[name]
			for (i = 1; i <= c; i++) a[i] = v[name, i]
			for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++)
				if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2 }
		END { printf "fresh export before each run; %d runs per configuration\n", n[order[1]]
		      printf "%-5s %-13s %10s %10s %10s %7s\n", "cache", "config", "median ms", "payload", "file", "ratio"
		      printf "%-5s %-13s %10s %10s %10s %7s\n", "", "", "", "MB/s", "MB/s", ""
		      ref = med("read() 1 MiB")
		      for (i = 1; i <= k; i++) { m = med(order[i])
			printf "%-5s %-13s %10.1f %10s %10.1f %6.3fx\n", "cold", order[i], m, "-",
			       sz / (m / 1e3) / 1e6, m / ref } }'
}

# col TAG CONFIG FIELD: FIELD (ms, mbps, ratio) of a "cold" row of a table.
col() {
	awk -v cfg="$2" -v f="$3" '
		$1 != "cold" { next }
		{ name = ($2 == "read()") ? "read() 1 MiB" : $2 " " $3
		  o = ($2 == "read()") ? 5 : 4 }
		name == cfg { if (f == "ms") print $o
			      else if (f == "mbps") print $(o + 2)
			      else { r = $(o + 3); sub(/x$/, "", r); print r } }' "$W/$1.txt" | head -n 1
}

echo "== eMMC-class device: FUSE view of $SNAP ($size bytes), throttled to" \
	"$BPS B/s, $IOPS read IOPS; backing file O_DIRECT; $RUNS cold runs each"
echo
echo "-- fvmsnap bench VIEW --cold -n $RUNS (default backend)"
bench default
# Is cold really cold? The throttle bucket lets a burst of BPS/10 bytes
# through at full speed; anything much faster than BPS means page cache.
refms=$(col default "read() 1 MiB" ms)
limit_ms=$(awk -v s="$size" -v b="$BPS" 'BEGIN { print 0.8 * (s - b / 10) / b * 1e3 }')
if [ $RESTART = 0 ] && awk -v a="$refms" -v l="$limit_ms" 'BEGIN { exit !(a < l) }'; then
	echo "emmc: cold read() took $refms ms, the throttle needs >= $limit_ms ms:" \
		"DONTNEED did not drop the FUSE page cache; fresh export per run instead"
	RESTART=1
	bench default
fi
echo
echo "-- fvmsnap bench VIEW --cold -n $RUNS --backend pread"
bench pread --backend pread
if [ $DIRECT = 1 ]; then
	echo
	echo "-- fvmsnap bench VIEW --cold -n $RUNS --direct (load O_DIRECT; read() reference buffered)"
	bench direct --direct
fi

# 4. Summary. MB = 10^6 bytes; file MB/s = snapshot bytes / median time.
echo
echo "== summary (cold, medians of $RUNS; MB = 10^6 bytes)"
summary() {
	local tag=$1 cfg=$2 dev ld ratio
	dev=$(col "$tag" "read() 1 MiB" mbps)
	ld=$(col "$tag" "$cfg" mbps)
	ratio=$(col "$tag" "$cfg" ratio)
	[ -n "$dev" ] && [ -n "$ld" ] || { echo "  $tag: no $cfg row"; return; }
	awk -v t="$tag" -v c="$cfg" -v d="$dev" -v l="$ld" -v r="$ratio" -v mb="$TALK_MB" 'BEGIN {
		printf "  %-8s device (plain read) %6.1f MB/s  %-13s %6.1f MB/s  time ratio %sx\n",
		       t, d, c, l, r
		printf "  %-8s %d MB at those rates (computed, not measured): read %.2f s, load %.2f s\n",
		       "", mb, mb / d, mb / l }'
}
summary default "load uring"
summary pread "load pread"
[ $DIRECT = 1 ] && summary direct "load uring"
exit 0
