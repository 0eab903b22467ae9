#!/bin/bash
# Scenario 8: QEMU linking libfastvm (contrib/qemu). The patched QEMU
# restores with -incoming fvm:PATH (RAM read into guest memory, CRCs checked)
# and fvm-lazy:PATH (RAM mapped, read on first touch), and saves with QMP
# x-fvm-save; files cross between it, fvmsnap restore/save with the stock QEMU
# and stock snapshots. Each restore: RAM equal to pmemsave of the original,
# the heartbeat goes on after cont. Then the refusals, and a changed disk.
# Usage: s8-hook.sh [FVMSNAP]; FVM_S8_VERSION=7.2 (default) or 10.0 picks the
# patched QEMU built by contrib/qemu/build-and-test.sh VERSION.
. "$(dirname "$0")/lib.sh"
ver=${FVM_S8_VERSION:-7.2}
fvm_init "s8-hook-$ver" "${1:-}"
need_fvmsnap
need_sub restore
need_sub hot
# the stock QEMU of the same series for the cross tests
[ "$ver" = 7.2 ] || use_qemu10
use_patched "$ver"

W=$WORK
blank_disk "$W/disk.qcow2" 256M
drive=(-drive file="$W/disk.qcow2",if=virtio)
savevm_guest "$W/src" "$W/disk.qcow2" s1 "$W/orig.bin"
hb=$SAVED_HB
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm"

# 1. a stock snapshot, converted, restored by the patched QEMU: eager, lazy
# (one VM at a time: they share the disk, whose lock QEMU takes)
fvm_incoming "$W/a-lazy" "fvm-lazy:$W/s.fvm" "${drive[@]}"
[ "$(vm_status "$W/a-lazy")" = paused ] || die "a-lazy is not paused"
check_ram "$W/a-lazy" "$W/orig.bin"
check_alive "$W/a-lazy" "$hb"
vm_quit "$W/a-lazy"
# 1b. the working set: a lazily restored VM runs (no pmemsave, which would
# read every page), fvmsnap hot lists the pages it touched, recompress
# --hot writes them first, and the reordered file restores the same RAM.
fvm_incoming "$W/ws" "fvm-lazy:$W/s.fvm" "${drive[@]}"
check_alive "$W/ws" "$hb"
fvm hot --pid "$(vm_pid "$W/ws")" "$W/s.fvm" -o "$W/hot.txt"
vm_quit "$W/ws"
fvm inspect --json --runs "$W/s.fvm" >"$W/runs.json"
python3 - "$W/hot.txt" "$W/runs.json" <<'PY' || die "hot: the working set is not a proper part of the data pages"
import json, sys
hot = [l.split() for l in open(sys.argv[1]) if l.strip()]
n = sum(int(c) for _, _, c in hot)
data = json.load(open(sys.argv[2]))["totals"]["data_pages"]
assert hot and all(b == hot[0][0] or b for b, _, _ in hot), hot[:3]
assert any(b == "pc.ram" for b, _, _ in hot), "no pc.ram page"
assert 0 < n < data, (n, data)
print("working set: %d of %d data pages in %d ranges" % (n, data, len(hot)))
PY
fvm recompress -q "$W/s.fvm" -o "$W/s-hot.fvm" --compress none --hot "$W/hot.txt"
fvm verify "$W/s-hot.fvm"
fvm inspect --json --runs "$W/s-hot.fvm" >"$W/runs-hot.json"
python3 - "$W/hot.txt" "$W/runs-hot.json" <<'PY' || die "recompress --hot: the working set does not come first in the file"
import json, sys
hot = {}
for l in open(sys.argv[1]):
    if l.strip():
        b, f, c = l.split()
        hot.setdefault(b, set()).update(range(int(f), int(f) + int(c)))
j = json.load(open(sys.argv[2]))
names = {b["id"]: b["name"] for b in j["blocks"]}
runs = sorted((r for r in j["runs"] if r["kind"] == "data"), key=lambda r: r["file_offset"])
want = sum(len(v) for v in hot.values())
seen = 0
for r in runs:   # the first data runs in file order hold exactly the hot pages
    if seen >= want:
        break
    pages = set(range(r["first_page"], r["first_page"] + r["page_count"]))
    assert pages <= hot.get(names[r["block"]], set()), r
    seen += len(pages)
assert seen == want, (seen, want)
PY
fvm_incoming "$W/ws2" "fvm-lazy:$W/s-hot.fvm" "${drive[@]}"
check_ram "$W/ws2" "$W/orig.bin"
check_alive "$W/ws2" "$hb"
vm_quit "$W/ws2"
# 1c. compressed (zstd frames, decoded by the library's threads): fvm:
# restores the same RAM; fvm-lazy: refuses, saying why; a damaged frame is
# found before the guest runs.
fvm recompress -q "$W/s.fvm" -o "$W/s-z.fvm" --compress zstd
fvm_incoming "$W/z" "fvm:$W/s-z.fvm" "${drive[@]}"
check_ram "$W/z" "$W/orig.bin"
check_alive "$W/z" "$hb"
vm_quit "$W/z"
incoming_refused "$W/zl" "fvm-lazy:$W/s-z.fvm" 'compressed.*cannot be mapped' "${drive[@]}"
python3 - "$W/s-z.fvm" "$W/bad-z.fvm" <<'PY' || die "could not damage a frame"
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
io = struct.unpack_from("<Q", b, len(b) - 32)[0]
nb, nm, nd, _, ne = struct.unpack_from("<IIIIQ", b, io + 16)
fa = io + 16 + 24 + 8 * (nb + nm + nd) + 40 * ne
for k in range(struct.unpack_from("<Q", b, fa)[0]):
    po, fo, pl, sl = struct.unpack_from("<QQII", b, fa + 8 + 32 * k)
    if sl < pl:  # a compressed frame
        b[fo + sl // 2] ^= 0x10
        break
else:
    sys.exit(1)
open(sys.argv[2], "wb").write(b)
PY
incoming_refused "$W/zb" "fvm:$W/bad-z.fvm" 'frame [0-9]+ at file offset 0x[0-9a-f]+: stored crc' "${drive[@]}"
# 1d. authenticated (libfastvm FORMAT.md 4.6): x-fvm-save with key-file
# writes one; fvm: given its key (-global migration.x-fvm-key) restores the
# same RAM and runs, and so does fvm-lazy: (RAM installed through
# userfaultfd, each page checked first); without the key, with another key,
# for a file that has none, or with one payload byte changed (eager or
# lazy: the prefetch finds it), QEMU refuses before the guest runs.
for k in k1 k2; do
	python3 -c 'import os; print(os.urandom(32).hex())' >"$W/$k"
	chmod 600 "$W/$k"
done
fvm_incoming "$W/ka" "fvm:$W/s.fvm" "${drive[@]}"
fvm_save_qmp "$W/ka" "$W/k.fvm" true "$W/k1"
hbk=$(last_hb "$W/ka")
pmemsave "$W/ka" "$W/k.bin"
vm_quit "$W/ka"
python3 - "$W/k.fvm" <<'PY' || die "x-fvm-save key-file did not write an authenticated file"
import struct, sys
h = open(sys.argv[1], "rb").read(64)
sys.exit(0 if struct.unpack_from("<Q", h, 16)[0] == 4 and any(h[40:56]) else 1)
PY
fvm_incoming "$W/kb" "fvm:$W/k.fvm" -global migration.x-fvm-key="$W/k1" "${drive[@]}"
check_ram "$W/kb" "$W/k.bin"
check_alive "$W/kb" "$hbk"
vm_quit "$W/kb"
incoming_refused "$W/kc" "fvm:$W/k.fvm" 'its key is needed' "${drive[@]}"
incoming_refused "$W/kd" "fvm:$W/k.fvm" 'written with key id [0-9a-f]+, the key given has id' \
	-global migration.x-fvm-key="$W/k2" "${drive[@]}"
incoming_refused "$W/ke" "fvm:$W/s.fvm" 'not an authenticated snapshot' \
	-global migration.x-fvm-key="$W/k1" "${drive[@]}"
fvm_incoming "$W/kl" "fvm-lazy:$W/k.fvm" -global migration.x-fvm-key="$W/k1" "${drive[@]}"
[ "$(vm_status "$W/kl")" = paused ] || die "kl is not paused"
check_ram "$W/kl" "$W/k.bin"
check_alive "$W/kl" "$hbk"
vm_quit "$W/kl"
cp "$W/k.fvm" "$W/k-bad.fvm"
ksize=$(stat -c %s "$W/k-bad.fvm")
printf '\xa5' | dd of="$W/k-bad.fvm" bs=1 seek=$((ksize / 2)) conv=notrunc status=none
incoming_refused "$W/kg" "fvm:$W/k-bad.fvm" 'payload tag does not verify at file offset' \
	-global migration.x-fvm-key="$W/k1" "${drive[@]}"
incoming_refused "$W/kh" "fvm-lazy:$W/k-bad.fvm" \
	'fvm-lazy: .*payload tag does not verify at file offset 0x[0-9a-f]+ \(lazy load' \
	-global migration.x-fvm-key="$W/k1" "${drive[@]}"

fvm_incoming "$W/a" "fvm:$W/s.fvm" "${drive[@]}"
[ "$(vm_status "$W/a")" = paused ] || die "a is not paused"
check_ram "$W/a" "$W/orig.bin"
check_alive "$W/a" "$hb"

# 2. x-fvm-save of the running restored VM, left stopped; then a second
# cycle: restored lazy and eager, saved again, restored again
fvm_save_qmp "$W/a" "$W/h1.fvm" true
case "$(vm_status "$W/a")" in paused*) ;; *) die "a runs after x-fvm-save stop" ;; esac
hb1=$(last_hb "$W/a")
pmemsave "$W/a" "$W/h1.bin"
vm_quit "$W/a"
fvm verify "$W/h1.fvm"
# saved from a lazily restored VM (its RAM partly still the file's pages)
fvm_incoming "$W/b-lazy" "fvm-lazy:$W/h1.fvm" "${drive[@]}"
check_ram "$W/b-lazy" "$W/h1.bin"
check_alive "$W/b-lazy" "$hb1"
fvm_save_qmp "$W/b-lazy" "$W/h2.fvm" true
hb2=$(last_hb "$W/b-lazy")
pmemsave "$W/b-lazy" "$W/h2.bin"
vm_quit "$W/b-lazy"
# without stop the VM runs on
fvm_incoming "$W/b" "fvm:$W/h1.fvm" "${drive[@]}"
check_ram "$W/b" "$W/h1.bin"
check_alive "$W/b" "$hb1"
fvm_save_qmp "$W/b" "$W/h3.fvm"
[ "$(vm_status "$W/b")" = running ] || die "b not running after x-fvm-save"
vm_quit "$W/b"
fvm verify "$W/h3.fvm"
fvm_incoming "$W/c" "fvm:$W/h2.fvm" "${drive[@]}"
check_ram "$W/c" "$W/h2.bin"
check_alive "$W/c" "$hb2"
vm_quit "$W/c"

# 3. across: a patched-QEMU save restored by fvmsnap into the stock QEMU,
# and exported to a stock migration stream
fvm_restore "$W/d" "$W/h1.fvm" --paused -- "${drive[@]}"
check_ram "$W/d" "$W/h1.bin"
check_alive "$W/d" "$hb1"
# ... and fvmsnap save of that stock VM restored by the patched QEMU
fvm save --qmp "$(restore_qmp "$W/d")" -o "$W/f1.fvm" --stop
hbf=$(last_hb "$W/d")
pmemsave "$W/d" "$W/f1.bin"
vm_quit "$W/d"
for uri in fvm fvm-lazy; do
	fvm_incoming "$W/e-$uri" "$uri:$W/f1.fvm" "${drive[@]}"
	check_ram "$W/e-$uri" "$W/f1.bin"
	check_alive "$W/e-$uri" "$hbf"
	vm_quit "$W/e-$uri"
done
fvm export "$W/h1.fvm" -o "$W/h1.mig"
roundtrip_check "$W/g" "$W/h1.bin" "$hb1" "exec:cat $W/h1.mig" "${drive[@]}"

# 4. refused, QEMU exits with the reason and never runs the guest
incoming_refused "$W/r1" "fvm:$W/missing.fvm" 'missing.fvm' "${drive[@]}"
cp "$W/h1.fvm" "$W/bad.fvm"
# a flipped byte in the middle of the RAM payload: found by the CRCs
size=$(stat -c %s "$W/bad.fvm")
printf '\xa5' | dd of="$W/bad.fvm" bs=1 seek=$((size / 2)) conv=notrunc status=none
fvm_rc=0
"$FVMSNAP" verify "$W/bad.fvm" 2>/dev/null || fvm_rc=$?
[ $fvm_rc -ne 0 ] || die "verify accepted the damaged copy (offset $((size / 2)))"
incoming_refused "$W/r2" "fvm:$W/bad.fvm" 'crc mismatch' "${drive[@]}"
head -c $((size - 100)) "$W/h1.fvm" > "$W/cut.fvm"
incoming_refused "$W/r3" "fvm:$W/cut.fvm" 'cut.fvm' "${drive[@]}"
incoming_refused "$W/r4" "fvm:$W/h1.fvm" 'snapshot of a pc-i440fx.*machine' -machine q35 "${drive[@]}"
incoming_refused "$W/r5" "fvm:$W/h1.fvm" 'RAM block pc.ram has 536870912 bytes' -m 256M "${drive[@]}"
echo junk > "$W/junk.fvm"
incoming_refused "$W/r6" "fvm:$W/junk.fvm" 'junk.fvm' "${drive[@]}"
# lazy over shared file-backed memory would detach it from its file
incoming_refused "$W/r7" "fvm-lazy:$W/h1.fvm" 'pc.ram is shared or file-backed' \
	-object memory-backend-file,id=pc.ram,size=512M,mem-path="$W/ramfile",share=on \
	-machine memory-backend=pc.ram "${drive[@]}"
rm -f "$W/ramfile"
# ... which the eager load fills like any memory
fvm_incoming "$W/s" "fvm:$W/h1.fvm" \
	-object memory-backend-file,id=pc.ram,size=512M,mem-path="$W/ramfile",share=on \
	-machine memory-backend=pc.ram "${drive[@]}"
check_ram "$W/s" "$W/h1.bin"
check_alive "$W/s" "$hb1"
vm_quit "$W/s"
rm -f "$W/ramfile"

# 5. the disk belongs to the snapshot: a write after the save is refused by
# both restore paths, for snapshots of either maker (the convert of the stock
# savevm, x-fvm-save, fvmsnap save), and let through when asked
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" "$W/disk.qcow2" >/dev/null || die "qemu-io write"
for f in s h1 f1; do
	incoming_refused "$W/k-$f" "fvm:$W/$f.fvm" 'disk .*disk.qcow2 changed since the snapshot' "${drive[@]}"
done
restore_refused "$W/k-fvmsnap" "$W/h1.fvm" 'disk .*disk.qcow2 changed since' -- "${drive[@]}"
fvm_incoming "$W/k-forced" "fvm:$W/h1.fvm" -global migration.x-fvm-disk-check=off "${drive[@]}"
grep -q 'changed since the snapshot.*restored anyway' "$W/k-forced/qemu.out" ||
	die "no warning for the changed disk: $(cat "$W/k-forced/qemu.out")"
check_ram "$W/k-forced" "$W/h1.bin"
vm_quit "$W/k-forced"
log "PASS"
