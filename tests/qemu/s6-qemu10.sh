#!/bin/bash
# Scenario 6: the current QEMU, 10.0 from bookworm-backports, unpacked beside
# 7.2 by setup-qemu10.sh: a `migrate file:` stream and a mapped-ram file of
# the stopped guest are converted, exported and restored by QEMU 10.0 with
# RAM equal to its pmemsave dump; the guest ticks on after cont.
# Stock controls: QEMU 10.0 restores its own file and mapped-ram file.
# One boot: the mapped-ram file comes from the VM restored from the stream.
# Usage: s6-qemu10.sh [FVMSNAP]; skips unless CACHE/qemu10 is unpacked.
. "$(dirname "$0")/lib.sh"
fvm_init s6-qemu10 "${1:-}"

use_qemu10

W=$WORK
boot_guest "$W/src"
vm_stop "$W/src"
hb=$(last_hb "$W/src")
pmemsave "$W/src" "$W/orig.bin"
migrate_out "$W/src" "file:$W/file.mig"
vm_quit "$W/src"
log "file: stream $(stat -c %s "$W/file.mig") bytes at heartbeat $hb"

restore_caps "$W/ctl" "file:$W/file.mig"
check_ram "$W/ctl" "$W/orig.bin"
check_alive "$W/ctl" "$hb"
vm_stop "$W/ctl"
hbm=$(last_hb "$W/ctl")
pmemsave "$W/ctl" "$W/origm.bin"
set_caps "$W/ctl" mapped-ram
migrate_out "$W/ctl" "file:$W/mapped.ram"
vm_quit "$W/ctl"
log "mapped-ram file $(stat -c %s "$W/mapped.ram") bytes ($(du -k "$W/mapped.ram" | cut -f1) KiB allocated) at heartbeat $hbm"

restore_caps "$W/ctlm" "file:$W/mapped.ram" mapped-ram
check_ram "$W/ctlm" "$W/origm.bin"
vm_quit "$W/ctlm"
log "stock controls: QEMU 10.0 restores its file: stream and mapped-ram file"

need_fvmsnap
need_sub convert
need_sub export
fvm convert "$W/file.mig" -o "$W/file.fvm"
fvm export "$W/file.fvm" -o "$W/file-x.mig"
roundtrip_check "$W/r1" "$W/orig.bin" "$hb" "exec:cat $W/file-x.mig"

# inspect reads the mapped-ram file's bitmap: its counts match the dump too.
fvm inspect --json "$W/mapped.ram" > "$W/mapped.json"
python3 "$HERE/pagecount.py" "$W/origm.bin" --inspect "$W/mapped.json" --block pc.ram >&2 ||
	die "inspect of the mapped-ram file: pc.ram counts differ from the dump"
fvm convert "$W/mapped.ram" -o "$W/mapped.fvm"
fvm verify "$W/mapped.fvm"
fvm export "$W/mapped.fvm" -o "$W/mapped-x.mig"
roundtrip_check "$W/r2" "$W/origm.bin" "$hbm" "exec:\"$FVMSNAP\" export $W/mapped.fvm"
log "PASS"
