#!/bin/bash
# Scenario 7: fvmsnap restore and save with an unmodified QEMU. savevm of the guest
# into qcow2, convert, then restore: the main RAM mapped from a file in
# /dev/shm, the rest as a migration stream without its pages. The restored
# VM's RAM equals pmemsave of the original, the heartbeat goes on after cont
# (and by itself with --run), and every wrong setup is refused with a clear
# message and no QEMU left behind.
# Usage: s7-restore.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init "s7-restore${FVM_S7_QEMU10:+-qemu10}" "${1:-}"
need_fvmsnap
need_sub restore
# the same with QEMU 10.0 (its migration code differs from 7.2's)
[ "${FVM_S7_QEMU10:-0}" = 1 ] && use_qemu10

W=$WORK
blank_disk "$W/disk.qcow2" 256M
savevm_guest "$W/src" "$W/disk.qcow2" s1 "$W/orig.bin"
hb=$SAVED_HB
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

# save: a restored, running VM snapshotted over QMP (its RAM read from the
# backend file, whose name restore removed: through QEMU's open fd), left
# stopped; restored again it has the RAM it had when saved and ticks on
fvm_restore "$W/r3" "$W/s.fvm" --run -- -drive file="$W/disk.qcow2",if=virtio
wait_serial "$W/r3" "HB $((hb + 2))" 60
qmp3=$(restore_qmp "$W/r3")
fvm save --qmp "$qmp3" -o "$W/s2.fvm" --stop
log "$(cat "$WORK/fvmsnap.err" | tail -n 1)"
case "$(vm_status "$W/r3")" in paused*) ;; *) die "r3 not stopped after save --stop" ;; esac
hb2=$(last_hb "$W/r3")
pmemsave "$W/r3" "$W/orig2.bin"
# saved again while stopped (QEMU's postmigrate): works, and stays stopped
fvm save --qmp "$qmp3" -o "$W/s2b.fvm"
grep -q 'stopped by an earlier migration (postmigrate): ran it for' "$WORK/fvmsnap.err" ||
	die "second save: the brief run is not said: $(cat "$WORK/fvmsnap.err")"
case "$(vm_status "$W/r3")" in paused*) ;; *) die "r3 not stopped after a second save" ;; esac
fvm verify "$W/s2b.fvm"
vm_quit "$W/r3"
fvm verify "$W/s2.fvm"
fvm_restore "$W/r4" "$W/s2.fvm" --paused -- -drive file="$W/disk.qcow2",if=virtio
check_ram "$W/r4" "$W/orig2.bin"
check_alive "$W/r4" "$hb2"
# without --stop the VM goes on running; an output path that would be
# shell is only a name (QEMU gets a pipe over QMP, no exec:)
qmp4=$(restore_qmp "$W/r4")
fvm save --qmp "$qmp4" -o "$W/s3 \$(touch PWNED).fvm"
[ "$(vm_status "$W/r4")" = running ] || die "r4 not running after save"
[ -z "$(find "$W" . -maxdepth 1 -name 'PWNED*')" ] || die "save ran its output path as shell"
fvm verify "$W/s3 \$(touch PWNED).fvm"
vm_quit "$W/r4"
# a saved snapshot is a whole one: stock QEMU restores its exported stream
fvm export "$W/s2.fvm" -o "$W/s2.mig"
roundtrip_check "$W/r5" "$W/orig2.bin" "$hb2" "exec:cat $W/s2.mig" \
	-drive file="$W/disk.qcow2",if=virtio
# save refuses a QEMU without a shared backend
vm_start "$W/e7" -S -qmp unix:"$W/e7/qmp.sock",server=on,wait=off
rc=0
"$FVMSNAP" save --qmp "$W/e7/qmp.sock" -o "$W/e7.fvm" 2>"$W/e7/save.err" || rc=$?
[ $rc -eq 4 ] && grep -q 'no shared memory backend' "$W/e7/save.err" ||
	{ cat "$W/e7/save.err" >&2; die "save without a shared backend: exit $rc"; }
[ ! -e "$W/e7.fvm" ] || die "a refused save wrote $W/e7.fvm"
vm_quit "$W/e7"
log "save refused a QEMU without a shared backend"

# refused, each with a clear reason
restore_refused "$W/e1" "$W/s.fvm" 'block pc.ram .* has 536870912 bytes' -- -m 256M
restore_refused "$W/e2" "$W/s.fvm" 'snapshot of machine pc-i440fx' -- -machine q35
restore_refused "$W/e3" "$W/s.fvm" 'QEMU exited with status|invalid option' -- -no-such-option
restore_refused "$W/e4" "$W/nonexistent.fvm" 'nonexistent.fvm'
# a flipped byte in the RAM payload: the CRCs find it, QEMU does not run it
cp "$W/s.fvm" "$W/bad.fvm"
size=$(stat -c %s "$W/bad.fvm")
printf '\xa5' | dd of="$W/bad.fvm" bs=1 seek=$((size / 2)) conv=notrunc status=none
restore_refused "$W/e8" "$W/bad.fvm" 'crc mismatch at file offset' -- -drive file="$W/disk.qcow2",if=virtio
restore_refused "$W/e5" "$W/s.fvm" 'gives? -incoming|restore brings the state' -- -incoming defer
if mkdir -p "$W/small" && mount -t tmpfs -o size=16m tmpfs "$W/small" 2>/dev/null; then
	restore_refused "$W/e6" "$W/s.fvm" 'RAM directory .* free, block pc.ram needs' --ram-dir "$W/small"
	umount "$W/small"
else
	log "no tmpfs mount here (not root?): the small RAM directory case is not run"
fi

# the disk belongs to the snapshot: written after it, it is refused (the
# message says what changed), and --force restores anyway with a warning
grep -q "disk.0.fingerprint" <("$FVMSNAP" inspect --json "$W/s.fvm") ||
	die "convert recorded no disk identity"
grep -q "disk.0.fingerprint" <("$FVMSNAP" inspect --json "$W/s2.fvm") ||
	die "save recorded no disk identity"
# every restore above used the disk without writing it: it still matches
command -v qemu-io >/dev/null || skip "qemu-io not installed (qemu-utils)"
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" "$W/disk.qcow2" >/dev/null || die "qemu-io write"
restore_refused "$W/e8" "$W/s.fvm" 'disk .*disk.qcow2 changed since' -- -drive file="$W/disk.qcow2",if=virtio
restore_refused "$W/e9" "$W/s2.fvm" 'disk .*disk.qcow2 changed since' -- -drive file="$W/disk.qcow2",if=virtio
grep -q -- '--force restores anyway' "$W/e9/restore.err" || die "the refusal does not mention --force"
fvm_restore "$W/r6" "$W/s2.fvm" --force --paused -- -drive file="$W/disk.qcow2",if=virtio
grep -q 'warning: disk .* changed' "$W/r6/restore.err" || die "--force gave no warning"
vm_quit "$W/r6"
log "PASS"
