#!/bin/bash
# Benchmark (not a test): the working set first, on slow flash (issue 9).
# The test guest is saved and converted; a lazily restored copy runs for a
# few heartbeats and `fvmsnap hot` records the pages it touched; the
# snapshot is rewritten twice with the same writer, once in its own order
# and once with those pages first (`recompress --hot`). Both are exported
# through an emulated eMMC device (qemu-storage-daemon: a throttle group
# at FVM_EMMC_BPS, default 137 MB/s as the seed's tablet, and 4000 read
# IOPS, bench/emmc-lib.sh: an ext4 image exported through FUSE, read with
# O_DIRECT, on a loop device) and
# restored by the QEMU patched with the libfastvm hook, N times each,
# interleaved, the page cache dropped before each run: -incoming
# fvm-lazy: with the prefetch (file order), without it (faults only), and
# fvm: (eager) for reference. Timed: launch to a paused VM, then cont to
# the guest's next heartbeat (bench/restore_time.py), and for the lazy
# runs the time the prefetch needs (all runs read) is the file's size over
# the device's rate.
#
# Usage: bench/hot.sh [-n N] [-b BUILD] [-j JSON]   (N default 5; JSON: the
# medians and every run as JSON too, for bench/run.sh's report)
# Needs: root (FUSE, loop device, mount, page cache drop), qemu-storage-daemon, the
# patched QEMU 7.2 (contrib/qemu/build-and-test.sh 7.2 --build-only).
set -euo pipefail
n=5
build=
json=
while getopts n:b:j: o; do
	case $o in
	n) n=$OPTARG ;;
	b) build=$OPTARG ;;
	j) json=$OPTARG ;;
	*) echo "usage: $0 [-n N] [-b BUILD] [-j JSON]" >&2; exit 1 ;;
	esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${build:-$root/build}" && pwd)
fvmsnap=$build/tools/fvmsnap
[ -x "$fvmsnap" ] || { echo "no $fvmsnap: build first" >&2; exit 1; }
. "$root/tests/qemu/lib.sh"
FVM_BUILD_DIR=$build
fvm_init bench-hot "$fvmsnap"
pq=$CACHE/qemu-7.2-fvm/build/qemu-system-x86_64
[ -x "$pq" ] || skip "no patched QEMU 7.2 (contrib/qemu/build-and-test.sh 7.2 --build-only)"
export FVM_PQEMU=$pq FVM_PQEMU_L="-L /usr/share/qemu -L /usr/share/seabios"
( . "$root/bench/emmc-lib.sh" && emmc_check ) || skip "no eMMC device here (bench/emmc-lib.sh)"
BPS=${FVM_EMMC_BPS:-137000000}
IOPS=${FVM_EMMC_IOPS:-4000}

W=$WORK
blank_disk "$W/disk.qcow2" 256M
drive=(-drive file="$W/disk.qcow2",if=virtio)
savevm_guest "$W/src" "$W/disk.qcow2" s1 "$W/orig.bin"
fvm convert "$W/disk.qcow2" --snapshot s1 -o "$W/s.fvm"

# the working set: lazily restored, a few heartbeats, then hot
fvm_incoming "$W/ws" "fvm-lazy:$W/s.fvm" "${drive[@]}"
hmp "$W/ws" cont 10 >/dev/null
wait_serial "$W/ws" 'HB [0-9]+' 60
sleep 3
fvm hot --pid "$(vm_pid "$W/ws")" "$W/s.fvm" -o "$W/hot.txt"
vm_quit "$W/ws"
# the same writer both times: only the order differs
fvm recompress -q "$W/s.fvm" -o "$W/plain.fvm" --compress none
fvm recompress -q "$W/s.fvm" -o "$W/hot.fvm" --compress none --hot "$W/hot.txt"
log "working set: $(awk '{n += $3} END {print n}' "$W/hot.txt") pages of $(
	fvm inspect --json "$W/s.fvm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["data_pages"])')"

for f in plain hot; do fvm verify -q "$W/$f.fvm"; done

# the device (bench/emmc-lib.sh): both files on one ext4 image behind one
# throttle group; QEMU opens them through $W/{plain,hot}.view
# shellcheck source=bench/emmc-lib.sh
. "$root/bench/emmc-lib.sh"
trap 'emmc_stop' EXIT
mkdir -p "$W/dev"
emmc_start "$W/dev" "$BPS" "$IOPS" "$W/plain.fvm" "$W/hot.fvm" || die "the eMMC device failed"
ln -sf "${EMMC_VIEWS[0]}" "$W/plain.view"
ln -sf "${EMMC_VIEWS[1]}" "$W/hot.view"
for f in plain hot; do
	cmp -s "$W/$f.view" "$W/$f.fvm" || die "the eMMC view of $f.fvm differs"
done
emmc_prime "$BPS" "$W/plain.view"
log "eMMC: $BPS B/s, $IOPS IOPS; files $(stat -c %s "$W/plain.fvm") and $(stat -c %s "$W/hot.fvm") bytes"

mapfile -t qargs < <(patched qemu_cmd "$W/run")
mkdir -p "$W/run"
FVM_ROOT=$root FVM_HOT_JSON=$json python3 - "$n" "$W" "$pq" "$BPS" "${qargs[@]:1}" -m "${FVM_GUEST_MEM:-512M}" "${drive[@]}" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, os.path.join(os.environ["FVM_ROOT"], "bench"))
import restore_time as rt

n, work, qemu, bps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
args = sys.argv[5:]
nocheck = ["-global", "migration.x-fvm-disk-check=off"]
cases = []
for f in ("plain", "hot"):
    view = os.path.join(work, f + ".view")
    cases += [("fvm-lazy: + prefetch, %s order" % f, view, ["-incoming", "fvm-lazy:" + view]),
              ("fvm-lazy: faults only, %s order" % f, view,
               ["-incoming", "fvm-lazy:" + view, "-global", "migration.x-fvm-prefetch=off"])]
cases.append(("fvm: eager", os.path.join(work, "plain.view"),
              ["-incoming", "fvm:" + os.path.join(work, "plain.view")]))
res = {c[0]: ([], []) for c in cases}
sock = os.path.join(work, "run", "qmp.sock")
for i in range(n):
    for name, view, extra in cases:
        fd = os.open(view, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        with open("/proc/sys/vm/drop_caches", "w") as dc:
            dc.write("1")
        if os.path.exists(sock):
            os.unlink(sock)
        t, h = rt.run_qemu(qemu, args, sock, extra + nocheck)
        res[name][0].append(t)
        res[name][1].append(h)
        print("  round %d %-40s paused %.3f s, heartbeat %.3f s after cont" % (i + 1, name, t, h),
              file=sys.stderr, flush=True)
size = os.path.getsize(os.path.join(work, "plain.fvm"))
print("| restore (eMMC %.0f MB/s) | to paused VM (s) | cont to first heartbeat (s) | paused + heartbeat |" % (bps / 1e6))
print("|---|---|---|---|")
for name, _, _ in cases:
    t, h = statistics.median(res[name][0]), statistics.median(res[name][1])
    print("| %s | %.3f | %.3f | %.3f |" % (name, t, h, t + h))
print("\nmedians of %d interleaved runs; reading the whole file at the device's rate: %.2f s" % (n, size / bps))
if os.environ.get("FVM_HOT_JSON"):
    with open(os.environ["FVM_HOT_JSON"], "w") as f:
        json.dump({"schema": "fvm-bench-hot/1", "bps": bps, "rounds": n, "file_bytes": size,
                   "cases": [{"case": name, "paused_s": statistics.median(res[name][0]),
                              "heartbeat_s": statistics.median(res[name][1]),
                              "paused_runs_s": res[name][0], "heartbeat_runs_s": res[name][1]}
                             for name, _, _ in cases]}, f, indent=1)
        f.write("\n")
PY
