#!/bin/bash
# Scenario 2: a migration stream file (migrate "exec:cat > f" of the stopped
# guest) and a stream with zlib-compressed pages (QEMU 7.2 capability
# "compress"): convert, export, restore in a fresh QEMU; RAM equal to the
# pmemsave taken before each migrate; heartbeat goes on after cont. Also a
# live stream of the running guest, in which dirtied pages are sent again.
# Stock controls: QEMU restores its own streams to the same RAM. One boot:
# the compressed stream is taken from the VM restored from the first stream.
# Usage: s2-migration-stream.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s2-stream "${1:-}"

W=$WORK
boot_guest "$W/src"
vm_stop "$W/src"
hb=$(last_hb "$W/src")
pmemsave "$W/src" "$W/orig.bin"
migrate_out "$W/src" "exec:cat > $W/plain.mig"
vm_quit "$W/src"
log "plain stream $(stat -c %s "$W/plain.mig") bytes at heartbeat $hb"

# Stock control, then the compressed stream from the restored VM.
restore "$W/ctl" "exec:cat \"$W/plain.mig\""
check_ram "$W/ctl" "$W/orig.bin"
check_alive "$W/ctl" "$hb"
vm_stop "$W/ctl"
hbz=$(last_hb "$W/ctl")
pmemsave "$W/ctl" "$W/origz.bin"
set_caps "$W/ctl" compress
migrate_out "$W/ctl" "exec:cat > $W/zlib.mig"
vm_quit "$W/ctl"
log "compressed stream $(stat -c %s "$W/zlib.mig") bytes at heartbeat $hbz"
cmp -s "$W/orig.bin" "$W/origz.bin" && die "guest RAM did not change between the two streams"

restore_caps "$W/ctlz" "exec:cat $W/zlib.mig" compress
check_ram "$W/ctlz" "$W/origz.bin"
vm_quit "$W/ctlz"
log "stock controls: both streams restore to equal RAM"

need_fvmsnap
need_sub convert
need_sub export
fvm convert "$W/plain.mig" -o "$W/plain.fvm"
fvm export "$W/plain.fvm" -o "$W/plain-x.mig"
restore "$W/r1" "exec:cat \"$W/plain-x.mig\""
check_ram "$W/r1" "$W/orig.bin"
check_alive "$W/r1" "$hb"

# A live stream: the running guest migrates at 50 MB/s, so pages it dirties
# meanwhile are sent again in later passes; the last copy must win. The
# source's RAM after completion (paused) is what the stream ends with.
hmp "$W/r1" "migrate_set_parameter max-bandwidth 50M" 10 >/dev/null
migrate_out "$W/r1" "exec:cat > $W/live.mig"
hbl=$(last_hb "$W/r1")
pmemsave "$W/r1" "$W/live.bin"
vm_quit "$W/r1"
REF=${FVM_STOCK_LOAD_REF:-$FVM_BUILD_DIR/tests/qemu/stock_load_ref}
[ -x "$REF" ] && log "live stream: $("$REF" --counts "$W/live.mig" | grep '^block pc.ram')"
fvm convert "$W/live.mig" -o "$W/live.fvm"
fvm verify "$W/live.fvm"
roundtrip_check "$W/r3" "$W/live.bin" "$hbl" "exec:\"$FVMSNAP\" export \"$W/live.fvm\""

# Standard input too: convert reads the stream from a pipe.
log "fvmsnap convert - < zlib.mig"
timeout 300 "$FVMSNAP" convert - -o "$W/zlib.fvm" < "$W/zlib.mig" 2>"$W/fvmsnap.err" ||
	{ cat "$W/fvmsnap.err" >&2; die "fvmsnap convert - (zlib stream on stdin) failed"; }
roundtrip_check "$W/r2" "$W/origz.bin" "$hbz" "exec:\"$FVMSNAP\" export \"$W/zlib.fvm\""
log "PASS"
