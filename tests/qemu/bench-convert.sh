#!/bin/bash
# Benchmark (not a test): conversion and loading speed on the 512 MiB test
# guest's qcow2 internal snapshot, each figure beside a reference measured in
# the same run, medians of N runs (default 5), page cache warm unless said.
#
#  1. convert: `fvmsnap convert disk.qcow2 --snapshot s1 -o s.fvm` against a
#     raw sequential read (dd bs=1M) of the qcow2 file, which holds the
#     vmstate bytes and little else (blank disk). Also `fvmsnap inspect` of
#     the snapshot (same parse, no output file). MB/s are vmstate bytes/s.
#  2. load: `fvmsnap bench s.fvm` (io_uring and pread, warm and cold) against
#     stock_load_ref, a QEMU-like loader (32 KiB buffer, one memcpy per page)
#     of the exported stock stream, warm and cold (POSIX_FADV_DONTNEED).
#  3. context: stock QEMU's `-S -loadvm s1` until the monitor answers,
#     against the same QEMU start without -loadvm.
#
# Usage: bench-convert.sh FVMSNAP [RUNS]   (env as lib.sh; FVM_KEEP=1 keeps files)
. "$(dirname "$0")/lib.sh"
fvm_init bench-convert "${1:-}"
[ -n "$FVMSNAP" ] || die "usage: bench-convert.sh FVMSNAP [RUNS]"
RUNS=${2:-5}
REF=${FVM_STOCK_LOAD_REF:-$FVM_BUILD_DIR/tests/qemu/stock_load_ref}
[ -x "$REF" ] || die "stock_load_ref not built ($REF)"
W=$WORK

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
# timeit CMD...: seconds of one run, command output discarded.
timeit() {
	local t0 t1
	t0=$(now)
	"$@" >/dev/null 2>&1 || { log "command failed: $*"; return 1; }
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
# med_of N CMD...: median seconds of N runs.
med_of() {
	local n=$1 i; shift
	for i in $(seq 1 "$n"); do timeit "$@" || exit 1; done | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a"}'; }
mbs() { awk -v n="$1" -v t="$2" 'BEGIN {if (t + 0 > 0) printf "%.0f", n / 1e6 / t; else print "n/a"}'; }

# ---- the snapshot -------------------------------------------------------------
blank_disk "$W/disk.qcow2" 256M
boot_guest "$W/src" -drive file="$W/disk.qcow2",if=virtio
vm_stop "$W/src"
savevm "$W/src" s1
vm_quit "$W/src"
vmsize=$("$FVMSNAP" list "$W/disk.qcow2" 2>/dev/null | awk '$0 ~ / s1 / {print}' | head -n 1)
qsize=$(stat -c %s "$W/disk.qcow2")
sync

# ---- 1. convert vs raw read ---------------------------------------------------------
cat "$W/disk.qcow2" >/dev/null	# warm
raw=$(med_of "$RUNS" dd if="$W/disk.qcow2" of=/dev/null bs=1M)
conv=$(med_of "$RUNS" "$FVMSNAP" convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm")
insp=$(med_of "$RUNS" "$FVMSNAP" inspect "$W/disk.qcow2" --snapshot s1)
# What writing costs: the same bytes copied with fsync beside the input (as
# convert writes its output: temp file, fsync, rename), and convert into a
# tmpfs where fsync is free.
copy=$(med_of "$RUNS" dd if="$W/disk.qcow2" of="$W/copy.bin" bs=1M conv=fsync)
rm -f "$W/copy.bin"
shm=/dev/shm/fvm-bench-$$.fvm
convshm=n/a cpshm=n/a
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	convshm=$(med_of "$RUNS" "$FVMSNAP" convert "$W/disk.qcow2" --snapshot s1 -o "$shm")
	cpshm=$(med_of "$RUNS" cp "$W/disk.qcow2" "$shm")
	rm -f "$shm"
fi
"$FVMSNAP" export "$W/s.fvm" -o "$W/s.mig" || die "export failed"
vmbytes=$(stat -c %s "$W/s.mig")
fsize=$(stat -c %s "$W/s.fvm")

# ---- 2. load: fast file vs QEMU-like stream reader ----------------------------------
# FVM_BENCH_THP=1: guest memory MADV_HUGEPAGE on both sides, as QEMU allocates it
thp=
[ "${FVM_BENCH_THP:-0}" = 1 ] && thp=--thp
"$FVMSNAP" bench "$W/s.fvm" -n "$RUNS" $thp --json >"$W/bench.json" 2>"$W/bench.err" || { cat "$W/bench.err" >&2; die "fvmsnap bench failed"; }
sw=$("$REF" --repeat "$RUNS" $thp "$W/s.mig" | sed -n 's/^stream .* median \([0-9.]*\) s.*/\1/p')
sc=$("$REF" --repeat "$RUNS" $thp --cold "$W/s.mig" | sed -n 's/^stream .* median \([0-9.]*\) s.*/\1/p')
# the medians (s) of fvmsnap bench, as shell variables: w_CONFIG and c_CONFIG
eval "$(python3 - "$W/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
prim = d['verdict']['config']
keys = ['reference', 'uring', 'uring_inline', 'mmap', 'mmap_write', 'lazy', 'lazy_write']
r = {(x['cache'], x['config']): x['median_ms'] / 1000 for x in d['results']}
for c in ('warm', 'cold'):
    for k in keys:
        print('%s_%s=%s' % (c[0], k, r.get((c, k), 0)))
    print('%s_primary=%s' % (c[0], r.get((c, prim), 0)))
PY
)"
fw=$w_primary fc=$c_primary bw=$w_reference bc_=$c_reference

# ---- 3. stock -loadvm ------------------------------------------------------------------
# qemu_ready ARGS...: seconds from exec until the monitor answers "info status".
qemu_ready() {
	local vm=$W/lv t0 t1
	t0=$(now)
	vm_start "$vm" -S "$@" -drive file="$W/disk.qcow2",if=virtio
	hmp "$vm" "info status" 60 >/dev/null
	t1=$(now)
	vm_quit "$vm"
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.6f\n", b - a}'
}
lv=$(for i in $(seq 1 "$RUNS"); do qemu_ready -loadvm s1; done | median)
l0=$(for i in $(seq 1 "$RUNS"); do qemu_ready; done | median)

cat <<EOF

== bench-convert: 512 MiB guest, qcow2 internal snapshot s1, median of $RUNS, warm cache unless noted${thp:+, destinations MADV_HUGEPAGE}
snapshot: ${vmsize:-(fvmsnap list failed)}
qcow2 file $qsize bytes; vmstate (exported stream) $vmbytes bytes; converted .fvm $fsize bytes

1. convert vs raw sequential read (MB/s of vmstate bytes)
   raw read of the qcow2 file (dd bs=1M)   $(printf '%8.4f' "$raw") s  $(mbs "$vmbytes" "$raw") MB/s
   fvmsnap convert --snapshot s1           $(printf '%8.4f' "$conv") s  $(mbs "$vmbytes" "$conv") MB/s   speed ratio convert/raw = $(ratio "$raw" "$conv") (target >= 0.5)
   fvmsnap inspect --snapshot s1           $(printf '%8.4f' "$insp") s  $(mbs "$vmbytes" "$insp") MB/s   speed ratio inspect/raw = $(ratio "$raw" "$insp")
   context: copy with fsync (dd conv=fsync) $(printf '%8.4f' "$copy") s  $(mbs "$vmbytes" "$copy") MB/s   speed ratio convert/copy = $(ratio "$copy" "$conv")
   context: convert -o /dev/shm (tmpfs)    $(printf '%8.8s' "$convshm") s  $(mbs "$vmbytes" "$convshm") MB/s   speed ratio convert-tmpfs/raw = $(ratio "$raw" "$convshm")
   context: cp of the qcow2 to /dev/shm    $(printf '%8.8s' "$cpshm") s  $(mbs "$vmbytes" "$cpshm") MB/s   speed ratio cp-tmpfs/raw = $(ratio "$raw" "$cpshm")

2. load: fast file (fvmsnap bench) vs QEMU-like stream reader
                         warm          cold
   stock_load_ref    $(printf '%8.4f s  %8.4f s' "$sw" "$sc")   (32 KiB buffer, memcpy per page, exported stream)
   read() reference  $(printf '%8.4f s  %8.4f s' "$bw" "$bc_")   (fvmsnap bench's own reference: read of the .fvm)
   bound for a load that reads every byte in one thread: stock/read() = $(ratio "$sw" "$bw")x warm, $(ratio "$sc" "$bc_")x cold
   fvmsnap load      $(printf '%8.4f s  %8.4f s' "$fw" "$fc")   (io_uring, copies on all CPUs)
   speedup stock/fast   $(ratio "$sw" "$fw")x      $(ratio "$sc" "$fc")x   (target >= 5)
   load, inline      $(printf '%8.4f s  %8.4f s' "$w_uring_inline" "$c_uring_inline")   (io_uring, copies in the calling thread)
   speedup stock/inline $(ratio "$sw" "$w_uring_inline")x      $(ratio "$sc" "$c_uring_inline")x
   fvmsnap load mmap $(printf '%8.4f s  %8.4f s' "$w_mmap" "$c_mmap")   (runs mapped copy-on-write, all pages present)
   speedup stock/mmap   $(ratio "$sw" "$w_mmap")x      $(ratio "$sc" "$c_mmap")x
   mmap + write every data page $(printf '%8.4f s  %8.4f s' "$w_mmap_write" "$c_mmap_write")   (the copies mapping defers, paid at once)
   speedup stock/mmap+write $(ratio "$sw" "$w_mmap_write")x  $(ratio "$sc" "$c_mmap_write")x
   lazy load (resume) $(printf '%8.4f s  %8.4f s' "$w_lazy" "$c_lazy")   (runs mapped, nothing read yet)
   speedup stock/lazy   $(ratio "$sw" "$w_lazy")x      $(ratio "$sc" "$c_lazy")x
   lazy + write every data page $(printf '%8.4f s  %8.4f s' "$w_lazy_write" "$c_lazy_write")   (each page read when touched, and copied)
   speedup stock/lazy+write $(ratio "$sw" "$w_lazy_write")x  $(ratio "$sc" "$c_lazy_write")x

3. context: stock QEMU 7.2 start until the monitor answers
   -S -loadvm s1     $(printf '%8.4f' "$lv") s
   -S (no loadvm)    $(printf '%8.4f' "$l0") s
   loadvm alone (difference) $(awk -v a="$lv" -v b="$l0" 'BEGIN {printf "%.4f", a - b}') s = $(ratio "$(awk -v a="$lv" -v b="$l0" 'BEGIN {print a - b}')" "$fw")x the fast warm load
EOF
