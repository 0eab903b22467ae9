#!/bin/bash
# Scenario 5: `fvmsnap inspect --json` on the stock inputs (a qcow2 internal
# snapshot and a migration stream of the same stopped guest) reports pc.ram
# page counts equal to those counted in the pmemsave dump (pagecount.py;
# pc.ram is guest-physical 0..512 MiB on -M pc). Stock control: the
# independent QEMU-like reader (stock_load_ref) loads pc.ram from the stream
# byte-equal to the dump, with the same counts.
# Usage: s5-inspect-stock.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s5-inspect "${1:-}"

W=$WORK
REF=${FVM_STOCK_LOAD_REF:-$FVM_BUILD_DIR/tests/qemu/stock_load_ref}
[ -x "$REF" ] || die "stock_load_ref not built ($REF)"
blank_disk "$W/disk.qcow2" 256M
boot_guest "$W/src" -drive file="$W/disk.qcow2",if=virtio
vm_stop "$W/src"
pmemsave "$W/src" "$W/orig.bin"
savevm "$W/src" s1
migrate_out "$W/src" "exec:cat > $W/vm.mig"
vm_quit "$W/src"

read -r _ pages _ zero _ nonzero _ runs <<<"$(python3 "$HERE/pagecount.py" "$W/orig.bin")"
log "dump: $pages pages, $zero zero, $nonzero non-zero in $runs runs"
"$REF" --counts --dump pc.ram="$W/pcram.bin" "$W/vm.mig" > "$W/ref.txt" || die "stock_load_ref failed"
cmp -s "$W/pcram.bin" "$W/orig.bin" || die "stock_load_ref's pc.ram differs from the dump"
grep -q "^block pc.ram pages $pages zero $zero nonzero $nonzero " "$W/ref.txt" ||
	{ cat "$W/ref.txt" >&2; die "stock_load_ref counts differ from the dump"; }
rm -f "$W/pcram.bin"
log "stock control: reference reader's pc.ram equals the dump"

need_fvmsnap
fvm inspect --json "$W/vm.mig" > "$W/mig.json"
python3 "$HERE/pagecount.py" "$W/orig.bin" --inspect "$W/mig.json" --block pc.ram >&2 ||
	die "inspect of the stream: pc.ram counts differ from the dump"
fvm inspect --json "$W/disk.qcow2" --snapshot s1 > "$W/qcow2.json"
python3 "$HERE/pagecount.py" "$W/orig.bin" --inspect "$W/qcow2.json" --block pc.ram >&2 ||
	die "inspect of the qcow2 snapshot: pc.ram counts differ from the dump"
need_sub convert
fvm convert "$W/vm.mig" -o "$W/vm.fvm"
fvm inspect --json "$W/vm.fvm" > "$W/fvm.json"
python3 "$HERE/pagecount.py" "$W/orig.bin" --inspect "$W/fvm.json" --block pc.ram >&2 ||
	die "inspect of the converted file: pc.ram counts differ from the dump"
log "PASS"
