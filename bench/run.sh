#!/bin/bash
# The benchmark suite of issue 9, in one command: every loader on the same
# bytes, on an emulated eMMC-class device at 137 MB/s (the seed's tablet)
# and at 250 MB/s, and on this machine's disk cold and warm; the save and
# convert references; the scale checks; QEMU's time to the first heartbeat.
# Writes run.md (tables and the targets' verdicts), run.json, and SVG plots
# (gnuplot) into OUTDIR.
#
# Machine: bench/machine.sh show at the start and at the end (run.json
# "machine"); run `bench/machine.sh quiet` first on a virtual machine whose
# kernel reports free pages to its host, or on one with other sessions'
# jobs (doc/BENCHMARKS.md 9), and `bench/machine.sh restore` after.
#
# Devices: bench/emmc-lib.sh (every file of a device on one ext4 image,
# exported by qemu-storage-daemon through FUSE behind one throttle group and
# read O_DIRECT, on a loop device, mounted), started and stopped here; cold
# means POSIX_FADV_DONTNEED before each run, warm a read of the file before
# each run.
#
# Inputs: the real-content guest (CACHE/real/real.fvm, bench/real-guest.sh
# CACHE builds it), the tests' guest (CACHE/testguest/test.fvm, as
# bench/codecs.sh caches it), and fvmsnap sample images: fragmented (the
# run structure of a real guest, 24% non-zero) at 128 MiB and 512 MiB,
# mostly zero (2%), all non-zero (256 MiB), 2 MiB pages. Each is packed
# plain, zstd:3 and lz4:1 (the levels bench/codecs.sh keeps for saves),
# padded to 512 bytes for the export; the QEMU guests also as a migration
# stream (fvmsnap export) for the QEMU-like stock reader.
#
# Contenders, interleaved in every round (N rounds): the physical
# reference (one sequential read() of the file, which fvmsnap bench runs
# before each load), fvmsnap bench's uring load, lazy map, lazy+prefetch
# (until the load returns, and until every run is read), uring load of the
# zstd and lz4 files, tests/qemu/stock_load_ref on the stream. QEMU (when
# installed): bench/restore.sh -n N (the tests' guest, warm: stock -loadvm,
# the patched QEMU's fvm: and fvm-lazy: to a paused VM and to the first
# heartbeat after cont), and with the patched QEMU 7.2 and the devices,
# bench/hot.sh -n N: the tests' guest restored from the 137 MB/s device,
# fvm-lazy: with the prefetch in file order and with the working set
# first, which the seed's lazy target is judged on.
#
# Usage: bench/run.sh [-n N] [-b BUILD] [-c CACHE] [-o OUTDIR] [-w WORKDIR]
#                     [--no-qemu] [--no-emmc] [--only STEPS] [--inputs NAMES]
#                     [--smoke]
#   -n N      rounds (default 3)
#   -b BUILD  meson build dir (default: BUILD beside this checkout)
#   -c CACHE  inputs cache (default BUILD/bench-cache); missing guests are
#             left out with a note
#   -o OUTDIR reports (default doc/bench of this checkout)
#   -w DIR    work dir on a disk (kept); default a new dir under /var/tmp
#   --only STEPS  a comma-separated subset of loads,save,scale,qemu (default
#             all; without loads only the first input is prepared), to
#             iterate on one part; the report then has only those parts
#   --inputs NAMES  a comma-separated subset of the inputs (real-guest,
#             test-guest, frag-128M, frag-512M, zero-512M, dense-256M,
#             2M-pages-512M): the others are not even packed
#   --thp     destinations (and the references' memory) MADV_HUGEPAGE, as
#             QEMU's guest RAM is (ram_block_add); default: the system's
#             policy for anonymous memory, 4 KiB pages under Debian's madvise
#   --smoke   the machinery on one tiny input (16 MiB), one device at
#             400 MB/s, no save, scale or QEMU steps; OUTDIR then defaults
#             to WORKDIR/out (tests/bench-smoke.sh)
# Exit 0; 1 on a failure; 77 when a needed tool is missing (--smoke).
set -u
set -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
RUNS=3 BUILD='' CACHE='' OUT='' W='' QEMU=1 EMMC=1 SMOKE=0 THP=0 ONLY=loads,save,scale,qemu INPUTS=''
die() { echo "bench/run.sh: $*" >&2; exit 1; }
skip() { echo "bench/run.sh: $*" >&2; exit 77; }
usage() { sed -n '/^# Usage:/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	-n) RUNS=${2:-}; shift 2 ;;
	-b) BUILD=${2:-}; shift 2 ;;
	-c) CACHE=${2:-}; shift 2 ;;
	-o) OUT=${2:-}; shift 2 ;;
	-w) W=${2:-}; shift 2 ;;
	--no-qemu) QEMU=0; shift ;;
	--no-emmc) EMMC=0; shift ;;
	--only) ONLY=${2:-}; shift 2 ;;
	--inputs) INPUTS=${2:-}; shift 2 ;;
	--smoke) SMOKE=1; shift ;;
	--thp) THP=1; shift ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done
case $RUNS in '' | *[!0-9]* | 0) die "-n wants a positive number, not '$RUNS'" ;; esac
for s in ${ONLY//,/ }; do
	case $s in loads | save | scale | qemu) ;; *) die "--only: unknown step '$s'" ;; esac
done
want() { case ,$ONLY, in *,"$1",*) return 0 ;; esac; return 1; }
# HOT: bench/hot.sh in the QEMU step (a device of its own, unless --no-emmc)
HOT=$EMMC
want loads || EMMC=0
want qemu || QEMU=0
[ $QEMU = 1 ] || HOT=0
BUILD=$(cd "${BUILD:-$TOP/build}" 2>/dev/null && pwd) || die "no build dir ${BUILD:-$TOP/build}"
FVMSNAP=$BUILD/tools/fvmsnap
STOCKREF=$BUILD/tests/qemu/stock_load_ref
[ -x "$FVMSNAP" ] || die "$FVMSNAP not built (ninja -C $BUILD)"
CACHE=${CACHE:-$BUILD/bench-cache}
# shellcheck source=emmc-lib.sh
. "$HERE/emmc-lib.sh"
NEED=skip
[ $SMOKE = 1 ] || NEED=die
command -v python3 >/dev/null || $NEED "no python3"
command -v gnuplot >/dev/null || $NEED "no gnuplot (apt-get install gnuplot-nox)"
if [ $EMMC = 1 ] && ! msg=$(emmc_check 2>&1); then
	$NEED "$msg (--no-emmc leaves the devices out)"
fi
[ $HOT = 1 ] && ! emmc_check 2>/dev/null && HOT=0

OWN_W=0
if [ -z "$W" ]; then
	W=$(mktemp -d /var/tmp/fvm-bench.XXXXXX) || die "mktemp under /var/tmp failed"
	OWN_W=1
else
	mkdir -p "$W" && W=$(cd "$W" && pwd) || die "cannot use work dir $W"
fi
case $(df --output=fstype "$W" | tail -n 1 | tr -d ' ') in
tmpfs | ramfs) die "$W is in memory; -w DIR on a disk" ;;
esac
if [ -z "$OUT" ]; then
	OUT=$TOP/doc/bench
	[ $SMOKE = 1 ] && OUT=$W/out
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || die "cannot create $OUT"
cleanup() {
	emmc_stop
	if [ $OWN_W = 1 ]; then
		if [ "${FVM_KEEP:-0}" = 1 ]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

STEP=0
progress() { STEP=$((STEP + 1)); printf '[%s] %3d %s\n' "$(date +%T)" "$STEP" "$*" >&2; }
# ms CMD...: runs CMD, prints its wall time in ms (CMD's output discarded).
ms() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >/dev/null 2>"$W/ms.err" || { cat "$W/ms.err" >&2; return 1; }
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000)) | awk '{ printf "%.3f\n", $1 / 1000 }'
}

# settle: sync, then wait (at most 60 s) for Dirty + Writeback in
# /proc/meminfo to drop under 16 MiB (other writers on the machine may
# keep it above); prints the kB left. Before timed writes (their device
# free of earlier writeback) and before cold loads of files just written
# with --no-fsync: POSIX_FADV_DONTNEED leaves dirty pages and pages under
# writeback cached (a 1 GiB pack --no-fsync dropped at once kept 265 MB,
# fincore), so a cold load of them was partly warm
settle() {
	local k=0 d
	sync
	while :; do
		d=$(awk '/^(Dirty|Writeback):/ { s += $2 } END { print s + 0 }' /proc/meminfo)
		[ "$d" -lt 16384 ] && break
		k=$((k + 1))
		[ $k -ge 120 ] && break
		sleep 0.5
	done
	echo "$d"
}
# the machine's state at the start and at the end (bench/machine.sh: the
# settings that make loads noisy, and what a fresh page costs); the report
# notes a noisy one
machine() { "$HERE/machine.sh" show "$BUILD/bench/first_touch" >"$W/machine-$1.txt"; }
machine start || die "bench/machine.sh show failed"

# ---- 1. inputs: $W/in/NAME/{plain,zstd,lz4}.fvm [stream.mig], inputs.txt
IN=$W/in
mkdir -p "$IN" "$W/raw"
: >"$W/inputs.txt"
CODECS="zstd:3 lz4:1"
# prepare NAME KIND BLOCK_ARGS...: pack the variants; KIND real/test/sample
prepare() {
	local name=$1 kind=$2 c
	shift 2
	if [ -n "$INPUTS" ]; then case ,$INPUTS, in *,"$name",*) ;; *) return 0 ;; esac; fi
	mkdir -p "$IN/$name"
	progress "input $name: pack plain, $CODECS"
	emmc_pack_padded "$FVMSNAP" "$IN/$name/plain.fvm" --no-fsync "$@" || die "pack of $name failed"
	for c in $CODECS; do
		emmc_pack_padded "$FVMSNAP" "$IN/$name/${c%%:*}.fvm" --no-fsync --compress "$c" \
			--frame-size 1M "$@" || die "pack --compress $c of $name failed"
	done
	echo "$name $kind" >>"$W/inputs.txt"
}
# from_fvm NAME KIND SNAP: the RAM blocks of a QEMU snapshot, and its stream
from_fvm() {
	local name=$1 kind=$2 snap=$3 d=$W/unpack-$1 args=() f bn pg
	if [ -n "$INPUTS" ]; then case ,$INPUTS, in *,"$name",*) ;; *) return 0 ;; esac; fi
	rm -rf "$d"
	"$FVMSNAP" unpack -q "$snap" -o "$d" || die "unpack of $snap failed"
	while read -r f bn _ pg; do
		args+=(--block "$bn=$d/$f,pagesize=$pg")
	done <"$d/blocks.txt"
	prepare "$name" "$kind" "${args[@]}"
	rm -rf "$d"
	# stream.mig as QEMU writes it (convert's input); the stock reader stops
	# at the first device-state section, so zeros after a copy of it pad
	# it for the export (stream-pad.mig) and are never read
	"$FVMSNAP" export -q "$snap" -o "$IN/$name/stream.mig" || die "export of $snap failed"
	cp "$IN/$name/stream.mig" "$IN/$name/stream-pad.mig"
	f=$(stat -c %s "$IN/$name/stream.mig")
	truncate -s $(((f + 511) / 512 * 512)) "$IN/$name/stream-pad.mig"
}
sample() { # sample NAME SIZE SHARE [PAGESIZE]
	"$FVMSNAP" sample -q -o "$W/sample.img" --size "$2" --nonzero-share "$3" || die "sample $1 failed"
	prepare "$1" sample --block "pc.ram=$W/sample.img,pagesize=${4:-4K}"
	rm -f "$W/sample.img"
}
if [ $SMOKE = 1 ]; then
	sample smoke-16M 16M 0.5
elif ! want loads && ! want save; then
	:
else
	if [ -s "$CACHE/real/real.fvm" ]; then
		from_fvm real-guest real "$CACHE/real/real.fvm"
	else
		echo "note: no real-content guest ($CACHE/real/real.fvm: bench/real-guest.sh $CACHE)" |
			tee -a "$W/notes.txt" >&2
	fi
	if ! want loads && [ -s "$W/inputs.txt" ]; then
		:
	elif [ -s "$CACHE/testguest/test.fvm" ]; then
		from_fvm test-guest test "$CACHE/testguest/test.fvm"
	else
		echo "note: no test guest ($CACHE/testguest/test.fvm: bench/codecs.sh $CACHE ...)" |
			tee -a "$W/notes.txt" >&2
	fi
	if want loads || ! [ -s "$W/inputs.txt" ]; then
		sample frag-128M 128M 0.24
	fi
	if want loads; then
		sample frag-512M 512M 0.24
		sample zero-512M 512M 0.02
		sample dense-256M 256M 1
		sample 2M-pages-512M 512M 0.24 2M
	fi
fi

# ---- 2. loads: per device, N rounds of every input and contender
# the inputs were packed --no-fsync: clean before any cold load
[ $SMOKE = 1 ] || settle >/dev/null
BENCH_PLAIN=(--no-memory --backend 'uring,lazy-map' --prefetch --json)
BENCH_CODEC=(--no-memory --backend uring --json)
STOCK_THP=
if [ $THP = 1 ]; then
	BENCH_PLAIN+=(--thp) BENCH_CODEC+=(--thp) STOCK_THP=--thp
	echo "note: every destination and reference buffer MADV_HUGEPAGE (--thp), as QEMU's guest RAM" >>"$W/notes.txt"
fi
# bench_round DEV CACHEFLAG ROUND FILEFN: FILEFN NAME VARIANT gives the path
# On an emulated device every run starts with the throttle's burst used up:
# the first read after a pause (the reference, as each run begins with it)
# would get BPS/10 bytes at full speed, the contenders after it none.
before_run() { [[ $1 != emmc-* ]] || emmc_prime "$bps" "${EMMC_VIEWS[0]}"; }
bench_round() {
	local dev=$1 flag=$2 i=$3 fn=$4 name v f o
	while read -r name _; do
		o=$W/raw/$dev/$name
		mkdir -p "$o"
		progress "$dev round $i/$RUNS: $name"
		for v in plain ${CODECS//:[0-9]/}; do
			f=$($fn "$name" "$v")
			before_run "$dev"
			if [ $v = plain ]; then
				"$FVMSNAP" bench -n 1 "$flag" "${BENCH_PLAIN[@]}" "$f" >"$o/$v.$i.json" ||
					die "bench of $dev $name $v failed"
			else
				"$FVMSNAP" bench -n 1 "$flag" "${BENCH_CODEC[@]}" "$f" >"$o/$v.$i.json" ||
					die "bench of $dev $name $v failed"
			fi
		done
		f=$($fn "$name" stream)
		if [ -e "$f" ] && [ -x "$STOCKREF" ]; then
			cflag=
			[ "$flag" = --cold ] && cflag=--cold
			before_run "$dev"
			# shellcheck disable=SC2086
			"$STOCKREF" $cflag $STOCK_THP "$f" >"$o/stock.$i.txt" 2>&1 || die "stock_load_ref of $dev $name failed"
		fi
	done <"$W/inputs.txt"
}
disk_file() { [ "$2" = stream ] && echo "$IN/$1/stream.mig" || echo "$IN/$1/$2.fvm"; }
# the files a device exports: the padded stream
export_file() { [ "$2" = stream ] && echo "$IN/$1/stream-pad.mig" || echo "$IN/$1/$2.fvm"; }
declare -A VIEW_OF
view_file() { echo "${VIEW_OF[$1/$2]:-/nonexistent}"; }

DEVICES=()
if [ $EMMC = 1 ]; then
	if [ $SMOKE = 1 ]; then DEVICES+=("emmc-400:400000000"); else
		DEVICES+=("emmc-137:137000000" "emmc-250:250000000"); fi
fi
for d in "${DEVICES[@]}"; do
	dev=${d%%:*} bps=${d#*:}
	files=() keys=()
	while read -r name _; do
		for v in plain ${CODECS//:[0-9]/} stream; do
			f=$(export_file "$name" $v)
			[ -e "$f" ] || continue
			files+=("$f") keys+=("$name/$v")
		done
	done <"$W/inputs.txt"
	mkdir -p "$W/dev-$dev"
	progress "$dev: export ${#files[@]} files at $bps B/s, 4000 read IOPS"
	emmc_start "$W/dev-$dev" "$bps" 4000 "${files[@]}" || die "the $dev export failed"
	for ((k = 0; k < ${#files[@]}; k++)); do VIEW_OF[${keys[$k]}]=${EMMC_VIEWS[$k]}; done
	cmp -s "${EMMC_VIEWS[0]}" "${files[0]}" || die "$dev: ${EMMC_VIEWS[0]} differs from ${files[0]}"
	emmc_prime "$bps" "${EMMC_VIEWS[0]}"
	echo "$dev $bps" >>"$W/devices.txt"
	for ((i = 1; i <= RUNS; i++)); do bench_round "$dev" --cold "$i" view_file; done
	emmc_stop
done
if want loads; then
	for i in $(seq 1 "$RUNS"); do bench_round disk-cold --cold "$i" disk_file; done
	for i in $(seq 1 "$RUNS"); do bench_round disk-warm --warm "$i" disk_file; done
fi

# ---- 3. save and convert against writes of the same bytes with fsync
# Every timed write starts from the same state: its input read into the
# page cache just before, the previous outputs deleted, and the dirty
# pages of everything before it (the unpack's 1 GiB, earlier rounds)
# written back (settle). pack's reference writes exactly the bytes pack
# stores as payload: the image's non-zero pages, cut into a file of their
# own (payload.raw), read from the page cache as pack reads its image.
# The order of contender and reference alternates from round to round.
# nonzero_pages IMAGE PAGE OUT: the non-zero pages of IMAGE, in order
nonzero_pages() {
	python3 - "$@" <<'PY'
import sys
src, page, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
z = bytes(page)
with open(src, "rb") as f, open(dst, "wb") as o:
    while True:
        b = f.read(256 * page)
        if not b:
            break
        for i in range(0, len(b), page):
            p = b[i:i + page]
            if p != z[:len(p)]:
                o.write(p)
PY
}
# timed_write TAG BYTES CMD...: settle, time CMD, append "TAG MS BYTES DIRTY_KB"
timed_write() {
	local tag=$1 bytes=$2 dirty t
	shift 2
	dirty=$(settle)
	t=$(ms "$@") || die "$tag failed"
	echo "$tag $t $bytes $dirty" >>"$W/save.txt"
}
first=$(head -n 1 "$W/inputs.txt" | cut -d' ' -f1)
if [ $SMOKE = 0 ] && [ -n "$first" ] && want save; then
	src=$CACHE/real/real.fvm
	[ -s "$src" ] || src=$IN/$first/plain.fvm
	d=$W/save
	rm -rf "$d"
	"$FVMSNAP" unpack -q "$src" -o "$d" || die "unpack of $src failed"
	raw=$d/pc.ram.raw
	[ -s "$raw" ] || raw=$d/$(head -n 1 "$d/blocks.txt" | cut -f1)
	nonzero_pages "$raw" 4096 "$d/payload.raw" || die "cutting the non-zero pages of $raw failed"
	payload=$(stat -c %s "$d/payload.raw")
	stream=$IN/$first/stream.mig
	: >"$W/save.txt"
	echo "source $src raw $raw payload $payload" >>"$W/save.txt"
	rm -f "$W/w.raw" "$W/w.fvm" "$W/w.copy"
	for ((i = 1; i <= RUNS; i++)); do
		progress "save round $i/$RUNS"
		cat "$raw" "$d/payload.raw" >/dev/null
		if [ $((i % 2)) = 1 ]; then order="ref pack"; else order="pack ref"; fi
		for c in $order; do
			if [ "$c" = ref ]; then
				timed_write raw_write "$payload" dd if="$d/payload.raw" of="$W/w.raw" bs=1M conv=fsync
				rm -f "$W/w.raw"
			else
				timed_write pack "$payload" "$FVMSNAP" pack -q --block "pc.ram=$raw" -o "$W/w.fvm"
				# the reference wrote the bytes pack stored as payload
				got=$("$FVMSNAP" inspect --json "$W/w.fvm" |
					python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["payload_bytes"])')
				[ "$got" = "$payload" ] || die "pack stored $got payload bytes, the reference writes $payload"
				rm -f "$W/w.fvm"
			fi
		done
		for c in $CODECS; do
			cat "$raw" >/dev/null
			timed_write "pack_${c/:/_}" "$payload" "$FVMSNAP" pack -q --compress "$c" --frame-size 1M \
				--block "pc.ram=$raw" -o "$W/w.fvm"
			rm -f "$W/w.fvm"
		done
		if [ -s "$stream" ]; then
			sb=$(stat -c %s "$stream")
			if [ $((i % 2)) = 1 ]; then order="copy convert"; else order="convert copy"; fi
			for c in $order; do
				cat "$stream" >/dev/null
				if [ "$c" = copy ]; then
					timed_write copy "$sb" dd if="$stream" of="$W/w.copy" bs=1M conv=fsync
					rm -f "$W/w.copy"
				else
					timed_write convert "$sb" "$FVMSNAP" convert -q "$stream" -o "$W/w.fvm"
					rm -f "$W/w.fvm"
				fi
			done
		fi
	done
	rm -rf "$d"
fi

# ---- 4. scale: sparse synthetic guests
# 3N rounds (each a few seconds): the cold loads on this machine's disk
# spread up to 2x from run to run (0.29-0.58 s for the 16 GiB guest in one
# run of 3), and the verdict compares medians of two inputs. The order
# rotates from round to round; the files, packed --no-fsync, are written
# back first (settle) so that the cold drop leaves nothing cached.
if [ $SMOKE = 0 ] && want scale; then
	mkdir -p "$W/scale"
	SCALE=(dense-1G 4G-1G 16G-512M)
	for s in "dense-1G 1G 1" "4G-1G 4G 0.25" "16G-512M 16G 0.03125"; do
		set -- $s
		progress "scale input $1"
		"$FVMSNAP" sample -q -o "$W/scale.img" --size "$2" --nonzero-share "$3" || die "sample $1 failed"
		"$FVMSNAP" pack -q --no-fsync --block "pc.ram=$W/scale.img" -o "$W/scale/$1.fvm" || die "pack $1 failed"
		rm -f "$W/scale.img"
	done
	for ((i = 1; i <= 3 * RUNS; i++)); do
		for ((k = 0; k < 3; k++)); do
			s=${SCALE[$(((i + k) % 3))]}
			progress "scale round $i/$((3 * RUNS)): $s"
			settle >/dev/null
			"$FVMSNAP" bench -n 1 --no-memory --backend uring --json ${STOCK_THP:+--thp} "$W/scale/$s.fvm" \
				>"$W/raw/scale-$s.$i.json" || die "bench of $s failed"
		done
	done
	rm -rf "$W/scale"
fi

# ---- 5. QEMU: time to a paused VM and to the first heartbeat
if [ $SMOKE = 0 ] && [ $QEMU = 1 ]; then
	if command -v qemu-system-x86_64 >/dev/null; then
		progress "QEMU: bench/restore.sh -n $RUNS (boots the tests' guest)"
		if "$HERE/restore.sh" -n "$RUNS" -b "$BUILD" >"$W/restore.txt" 2>&1; then
			cp "$BUILD/restore-512M.json" "$W/restore.json"
		else
			echo "note: bench/restore.sh failed: $(tail -n 3 "$W/restore.txt")" | tee -a "$W/notes.txt" >&2
		fi
		# the seed's target on the device itself: fvm-lazy: (+ prefetch,
		# the working set first) to a paused VM and the first heartbeat
		if [ $HOT = 1 ]; then
			progress "QEMU on the eMMC at 137 MB/s: bench/hot.sh -n $RUNS"
			"$HERE/hot.sh" -n "$RUNS" -b "$BUILD" -j "$W/hot.json" >"$W/hot.txt" 2>&1
			case $? in
			0) ;;
			77) echo "note: bench/hot.sh skipped: $(tail -n 1 "$W/hot.txt")" | tee -a "$W/notes.txt" >&2 ;;
			*) echo "note: bench/hot.sh failed: $(tail -n 3 "$W/hot.txt")" | tee -a "$W/notes.txt" >&2 ;;
			esac
		fi
	else
		echo "note: no qemu-system-x86_64: the QEMU rows are left out" | tee -a "$W/notes.txt" >&2
	fi
fi

# ---- 6. report
progress "report into $OUT"
machine end || die "bench/machine.sh show failed"
python3 "$HERE/report.py" "$W" "$OUT" "$RUNS" || die "report failed"
echo "bench/run.sh: $OUT/run.md, $OUT/run.json, $OUT/*.svg"
