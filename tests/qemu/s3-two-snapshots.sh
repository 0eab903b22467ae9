#!/bin/bash
# Scenario 3: two internal snapshots in one qcow2 (v3) image with different
# guest RAM between them: each converts to its own state (RAM equal to the
# pmemsave taken at its savevm). Then a qcow2 v2 (compat=0.10) image: the
# guest restored from the second snapshot runs on a v2 disk, saves a third
# snapshot there, and that one converts and restores too.
# Stock controls: -loadvm of each snapshot gives the RAM of its pmemsave.
# Usage: s3-two-snapshots.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s3-two-snap "${1:-}"

W=$WORK
blank_disk "$W/disk.qcow2" 256M
blank_disk "$W/dst.qcow2" 256M
blank_disk -o compat=0.10 "$W/v2.qcow2" 256M
qemu-img info "$W/v2.qcow2" | grep -q 'compat: 0.10' || die "v2.qcow2 is not compat=0.10"

boot_guest "$W/src" -drive file="$W/disk.qcow2",if=virtio
vm_stop "$W/src"
hb1=$(last_hb "$W/src")
pmemsave "$W/src" "$W/s1.bin"
savevm "$W/src" s1
hmp "$W/src" cont 10 >/dev/null
wait_serial "$W/src" "HB $((hb1 + 3))" 60
vm_stop "$W/src"
hb2=$(last_hb "$W/src")
pmemsave "$W/src" "$W/s2.bin"
savevm "$W/src" s2
vm_quit "$W/src"
cmp -s "$W/s1.bin" "$W/s2.bin" && die "guest RAM identical at s1 and s2"
log "snapshots s1 (heartbeat $hb1) and s2 (heartbeat $hb2) saved"

for s in s1 s2; do
	vm_start "$W/ctl-$s" -S -loadvm $s -drive file="$W/disk.qcow2",if=virtio
	check_ram "$W/ctl-$s" "$W/$s.bin"
	vm_quit "$W/ctl-$s"
done
log "stock controls: -loadvm s1 and s2 restore their own RAM"

need_fvmsnap
need_sub convert
need_sub export
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s1.fvm"
# By id: savevm numbers snapshots 1, 2, ... in a fresh image.
fvm convert "$W/disk.qcow2" --snapshot 2 -o "$W/s2.fvm"
fvm export "$W/s1.fvm" -o "$W/s1.mig"
fvm export "$W/s2.fvm" -o "$W/s2.mig"
cmp -s "$W/s1.mig" "$W/s2.mig" && die "s1 and s2 exported to the same stream"
roundtrip_check "$W/r1" "$W/s1.bin" "$hb1" "exec:cat $W/s1.mig" \
	-drive file="$W/dst.qcow2",if=virtio

# s2 restored onto the v2 disk; it keeps running and saves s3 there.
restore "$W/r2" "exec:cat $W/s2.mig" -drive file="$W/v2.qcow2",if=virtio
check_ram "$W/r2" "$W/s2.bin"
check_alive "$W/r2" "$hb2"
vm_stop "$W/r2"
hb3=$(last_hb "$W/r2")
pmemsave "$W/r2" "$W/s3.bin"
savevm "$W/r2" s3
vm_quit "$W/r2"
qemu-img info "$W/v2.qcow2" | grep -q 'compat: 0.10' || die "v2.qcow2 changed version"
log "snapshot s3 saved in the v2 image at heartbeat $hb3"

fvm convert "$W/v2.qcow2" --snapshot s3 -o "$W/s3.fvm"
fvm verify "$W/s3.fvm"
fvm export "$W/s3.fvm" -o "$W/s3.mig"
roundtrip_check "$W/r3" "$W/s3.bin" "$hb3" "exec:cat $W/s3.mig" \
	-drive file="$W/dst.qcow2",if=virtio
log "PASS"
