#!/bin/bash
# Benchmark (not a test): time to a restored, paused VM, for one snapshot of
# the real test guest (512 MiB, QEMU 7.2, TCG), in one run, warm cache:
# QEMU started with no state (the floor), stock -loadvm from qcow2, stock
# -incoming of the migration stream file, -incoming "exec:fvmsnap export",
# fvmsnap restore (RAM mapped from a tmpfs file, doc/QEMU.md "Restore"), and,
# when contrib/qemu/build-and-test.sh 7.2 has built it, the QEMU patched
# with the libfastvm hook: -incoming fvm: and fvm-lazy:. Each to a paused VM,
# then cont and the guest's next heartbeat; then the save times (savevm,
# migrate, fvmsnap save, x-fvm-save). Medians of N interleaved runs and
# ratios to -loadvm and to the bare start (bench/restore_time.py); the
# tables go to stdout, JSON to BUILD/restore-SIZE.json.
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
if [ -x "$CACHE/qemu-7.2-fvm/build/qemu-system-x86_64" ]; then
	export FVM_PQEMU=$CACHE/qemu-7.2-fvm/build/qemu-system-x86_64
	# built with prefix /usr/local: Debian's firmware
	export FVM_PQEMU_L="-L /usr/share/qemu -L /usr/share/seabios"
	log "patched QEMU: $FVM_PQEMU"
else
	log "no patched QEMU 7.2 (contrib/qemu/build-and-test.sh 7.2 --build-only): its rows are left out"
fi

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
