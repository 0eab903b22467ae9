#!/bin/bash
# Scenario 7: fvmsnap restore into an unmodified QEMU. savevm of the guest
# into qcow2, convert, then restore: the main RAM mapped from a file in
# /dev/shm, the rest as a migration stream without its pages. The restored
# VM's RAM equals pmemsave of the original, the heartbeat goes on after cont
# (and by itself with --run), and every wrong setup is refused with a clear
# message and no QEMU left behind.
# Usage: s7-restore.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s7-restore "${1:-}"
need_fvmsnap
need_sub restore

W=$WORK
blank_disk "$W/disk.qcow2" 256M
boot_guest "$W/src" -drive file="$W/disk.qcow2",if=virtio
vm_stop "$W/src"
hb=$(last_hb "$W/src")
pmemsave "$W/src" "$W/orig.bin"
savevm "$W/src" s1
vm_quit "$W/src"
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm"

# paused, then cont
fvm_restore "$W/r1" "$W/s.fvm" --paused -- -drive file="$W/disk.qcow2",if=virtio
[ "$(vm_status "$W/r1")" = paused ] || die "r1 is not paused after restore"
check_ram "$W/r1" "$W/orig.bin"
check_alive "$W/r1" "$hb"
vm_quit "$W/r1"
# the RAM file is gone once QEMU mapped it (its memory goes with QEMU)
for d in /dev/shm/fvmsnap-restore-*; do
	[ -e "$d/ram" ] && die "RAM file $d/ram left behind"
done

# running by itself, and the -m it would have added given by hand
fvm_restore "$W/r2" "$W/s.fvm" --run -- -m 512M -drive file="$W/disk.qcow2",if=virtio
wait_serial "$W/r2" "HB $((hb + 1))" 60
grep -qa 'FVM-READY' "$W/r2/serial.log" && die "r2 rebooted instead of resuming"
vm_quit "$W/r2"
log "r2 ran by itself from heartbeat $hb"

# refused, each with a clear reason
restore_refused "$W/e1" "$W/s.fvm" 'block pc.ram .* has 536870912 bytes' -- -m 256M
restore_refused "$W/e2" "$W/s.fvm" 'snapshot of machine pc-i440fx' -- -machine q35
restore_refused "$W/e3" "$W/s.fvm" 'QEMU exited with status|invalid option' -- -no-such-option
restore_refused "$W/e4" "$W/nonexistent.fvm" 'nonexistent.fvm'
restore_refused "$W/e5" "$W/s.fvm" 'gives? -incoming|restore brings the state' -- -incoming defer
if mkdir -p "$W/small" && mount -t tmpfs -o size=16m tmpfs "$W/small" 2>/dev/null; then
	restore_refused "$W/e6" "$W/s.fvm" 'RAM directory .* free, block pc.ram needs' --ram-dir "$W/small"
	umount "$W/small"
else
	log "no tmpfs mount here (not root?): the small RAM directory case is not run"
fi
log "PASS"
