#!/bin/bash
# Scenario 1: savevm into a qcow2 image; fvmsnap convert --snapshot, export to
# a file and to stdout (-incoming "exec:fvmsnap export ..."); each restore in a
# fresh QEMU has RAM equal (pmemsave) to the original at savevm and keeps
# ticking after cont. Stock control first: -loadvm of the same snapshot gives
# the same RAM (proves the oracle before fvmsnap is judged).
# Usage: s1-qcow2-savevm.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s1-qcow2 "${1:-}"

W=$WORK
blank_disk "$W/disk.qcow2" 256M
blank_disk "$W/dst.qcow2" 256M
savevm_guest "$W/src" "$W/disk.qcow2" s1 "$W/orig.bin"
hb=$SAVED_HB

# Stock control: QEMU's own -loadvm restores the same RAM.
vm_start "$W/ctl" -S -loadvm s1 -drive file="$W/disk.qcow2",if=virtio
check_ram "$W/ctl" "$W/orig.bin"
vm_quit "$W/ctl"
log "stock control: -loadvm s1 RAM equal"

need_fvmsnap
need_sub convert
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm"
fvm verify "$W/s.fvm"
need_sub export
fvm export "$W/s.fvm" -o "$W/s.mig"
roundtrip_check "$W/r1" "$W/orig.bin" "$hb" "exec:cat \"$W/s.mig\"" \
	-drive file="$W/dst.qcow2",if=virtio
roundtrip_check "$W/r2" "$W/orig.bin" "$hb" "exec:\"$FVMSNAP\" export \"$W/s.fvm\"" \
	-drive file="$W/dst.qcow2",if=virtio
log "PASS"
