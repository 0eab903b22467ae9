#!/bin/bash
# Scenario 4: a guest with more than one RAM block of interest: -M q35 with a
# VGA device (its vga.vram block, written by the VGA BIOS at boot). Migration
# stream -> convert -> inspect lists pc.ram and vga.vram -> export -> restore:
# guest RAM and the VGA memory (pmemsave of its PCI BAR) equal the original.
# Usage: s4-q35-vga.sh [FVMSNAP]
. "$(dirname "$0")/lib.sh"
fvm_init s4-q35-vga "${1:-}"

W=$WORK
M=(-M q35 -device VGA)

# vram_bar VM: "ADDR SIZE" of the VGA device's BAR0 (its video memory).
vram_bar() {
	hmp "$1" "info pci" 10 | awk '
		/VGA controller/ { vga = 1 }
		vga && /BAR0: .*memory at/ {
			for (i = 1; i <= NF; i++) if ($i == "at") a = $(i + 1)
			gsub(/[\[\]\.]/, "", $NF); print a, $NF; exit }'
}

boot_guest "$W/src" "${M[@]}"
vm_stop "$W/src"
hb=$(last_hb "$W/src")
read -r vaddr vend <<<"$(vram_bar "$W/src")"
[ -n "${vaddr:-}" ] || die "no VGA BAR0 in info pci"
vsize=$(printf '0x%x' $((vend - vaddr + 1)))
log "vga.vram BAR0 at $vaddr size $vsize"
pmemsave "$W/src" "$W/orig.bin"
pmemsave_at "$W/src" "$vaddr" "$vsize" "$W/vram.bin"
python3 "$HERE/pagecount.py" "$W/vram.bin" | grep -q ' nonzero 0 ' && die "VGA memory all zero: nothing to prove"
migrate_out "$W/src" "exec:cat > $W/q35.mig"
vm_quit "$W/src"

# check_vm VM: RAM and VGA memory of a restored, paused VM.
check_vm() {
	check_ram "$1" "$W/orig.bin"
	pmemsave_at "$1" "$vaddr" "$vsize" "$1/vram.bin"
	cmp -s "$W/vram.bin" "$1/vram.bin" || die "VGA memory of $(basename "$1") differs"
}

restore "$W/ctl" "exec:cat $W/q35.mig" "${M[@]}"
check_vm "$W/ctl"
vm_quit "$W/ctl"
log "stock control: q35 stream restores RAM and VGA memory"

need_fvmsnap
need_sub convert
need_sub export
fvm convert "$W/q35.mig" -o "$W/q35.fvm"
fvm inspect --json "$W/q35.fvm" > "$W/q35.json"
python3 - "$W/q35.json" <<'PY' || die "fvmsnap inspect does not list the q35 blocks"
import json, sys
doc = json.load(open(sys.argv[1]))
names = {b['name']: b for b in doc['blocks']}
print('blocks:', ', '.join(f"{n} ({b['length']} bytes, {b['data_pages']} data pages)" for n, b in names.items()))
assert names['pc.ram']['length'] == 512 << 20
# QEMU names a PCI device's RAM block after its slot: 0000:00:01.0/vga.vram
vram = [b for n, b in names.items() if n.split('/')[-1] == 'vga.vram']
assert len(vram) == 1, 'no vga.vram block'
assert vram[0]['length'] == 16 << 20 and vram[0]['data_pages'] > 0
PY
fvm export "$W/q35.fvm" -o "$W/q35-x.mig"
restore "$W/r1" "exec:cat $W/q35-x.mig" "${M[@]}"
check_vm "$W/r1"
check_alive "$W/r1" "$hb"
vm_quit "$W/r1"
log "PASS"
