#!/bin/bash
# Benchmark (not a test): time to a restored, paused VM, for one snapshot of
# the real test guest (512 MiB, QEMU 7.2, TCG), in one run, warm cache:
# QEMU started with no state (the floor), stock -loadvm from qcow2, stock
# -incoming of the migration stream file, -incoming "exec:fvmsnap export",
# and fvmsnap restore (RAM mapped from a tmpfs file, doc/QEMU.md "Restore").
# Medians of N interleaved runs and ratios to -loadvm and to the bare start
# (bench/restore_time.py); the table goes to stdout, JSON to WORK.
#
# Usage: bench/restore.sh [-n N] [-b BUILD] [-m SIZE]   (N default 7, SIZE the
# guest's RAM, default 512M: the same content, the rest zero)
set -euo pipefail
n=7
build=
while getopts n:b:m: o; do
	case $o in
	n) n=$OPTARG ;;
	b) build=$OPTARG ;;
	m) export FVM_GUEST_MEM=$OPTARG ;;
	*) echo "usage: $0 [-n N] [-b BUILD] [-m SIZE]" >&2; exit 1 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
build=${build:-$root/build}
fvmsnap=$(cd "$build" && pwd)/tools/fvmsnap
[ -x "$fvmsnap" ] || { echo "no $fvmsnap: build first" >&2; exit 1; }
. "$root/tests/qemu/lib.sh"
FVM_BUILD_DIR=$(cd "$build" && pwd)
fvm_init bench-restore "$fvmsnap"

W=$WORK
blank_disk "$W/disk.qcow2" 256M
boot_guest "$W/src" -drive file="$W/disk.qcow2",if=virtio
vm_stop "$W/src"
savevm "$W/src" s1
migrate_out "$W/src" "exec:cat > $W/vm.mig"
vm_quit "$W/src"
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm"
log "snapshot: $(du -h "$W/s.fvm" | cut -f1) .fvm, $(du -h "$W/vm.mig" | cut -f1) stream"

mapfile -t cmd < <(qemu_cmd "$W/bench")
# qemu_cmd's first word is QEMU itself; the serial log and monitor are fine to share
python3 "$root/bench/restore_time.py" "$n" "$W" "${cmd[0]}" "$fvmsnap" -- "${cmd[@]:1}"
cp "$W/restore.json" "$build/restore-${FVM_GUEST_MEM:-512M}.json"
log "JSON in $build/restore-${FVM_GUEST_MEM:-512M}.json"
