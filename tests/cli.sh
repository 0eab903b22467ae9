#!/bin/bash
# fvmsnap end to end: pack/unpack round trips (several blocks, a 2 MiB page
# block, device state, pipes), inspect --json against page counts computed
# here from the raw images, verify on good, flipped and truncated files,
# snapshots on standard input (inspect, verify, export, bench), the
# environment (FVM_BACKEND, FVM_WILLNEED), exit codes of --help and bad
# usage, atomic replacement on failure, bench.
# Usage: cli.sh /path/to/fvmsnap   (meson runs it from the build directory)
set -u
. "$(dirname "$(realpath "$0")")/cli-lib.sh"

FVMSNAP=$(realpath "$1")
if ! command -v python3 >/dev/null; then
	echo "SKIP: python3 not found (needed to check inspect --json)"
	exit 77
fi
W=$(mktemp -d "$PWD/cli-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export FVM_TEST=1


fs() { "$FVMSNAP" "$@"; }

# ---- help and usage
expect 0 fs --help
expect 0 fs --version
grep -q '^fvmsnap [0-9]' out.log || fail "--version prints no version"
for c in pack unpack inspect verify bench sample; do
	expect 0 fs "$c" --help
	grep -q "^Usage: fvmsnap $c" out.log || fail "$c --help prints no usage on stdout"
done
expect 1 fs
expect 1 fs no-such-command
expect 1 fs pack
expect 1 fs pack --block nofile -o x.fvm
expect 1 fs pack --block a=b,pagesize=3K -o x.fvm
expect 1 fs pack --block a=b --max-run 12Q -o x.fvm
expect 1 fs pack --bogus-option
expect 1 fs unpack x.fvm
expect 1 fs unpack
expect 1 fs inspect
expect 1 fs inspect a.fvm b.fvm
expect 1 fs verify
expect 1 fs bench
expect 1 fs bench -n 0 x.fvm
expect 1 fs bench --backend nosuch x.fvm
expect 1 fs sample
expect 1 fs sample -o s.img --size 5000
expect 1 fs sample -o s.img --nonzero-share 1.5
ok "help and usage exit codes"

# ---- inputs: three raw images, one viewed with 2 MiB pages
expect 0 fs sample -q -o a.img --size 8M --seed 11
expect 0 fs sample -q -o b.img --size 16M --seed 12 --nonzero-share 0.3
expect 0 fs sample -q -o c.img --size 1M --seed 13 --nonzero-share 1
cmp -s a.img b.img && fail "samples of different seeds are equal"
fs sample -q -o a2.img --size 8M --seed 11 && cmp -s a.img a2.img ||
	fail "sample is not deterministic for a seed"
printf 'cpu state \001\002\000 bytes' > ds0.bin
: > ds1.bin
printf 'x' > tiny.img

PACK=(--block pc.ram=a.img --block vga.vram=b.img,pagesize=2M
      --block '/rom@etc/acpi tables'=c.img
      --devstate cpu=ds0.bin --devstate =ds1.bin
      --meta machine=pc-i440fx-7.2 --meta 'note=tab	and "quotes"'
      --meta $'bin=\xff\x01\xc3\xa9' --no-fsync)
expect 0 fs pack "${PACK[@]}" -o snap.fvm
grep -q 'packed 3 blocks' out.log || fail "pack prints no summary"
[ -s snap.fvm ] || fail "pack wrote nothing"
ls -A | grep -q '^\.' && fail "pack left a temporary file"

# ---- inspect --json against counts computed from the images
expect 0 fs inspect snap.fvm
grep -q 'pc.ram' out.log || fail "inspect lists no block"
fs inspect --json --runs snap.fvm > inspect.json || fail "inspect --json failed"
python3 -c 'import json,sys; json.load(sys.stdin)' < inspect.json ||
	fail "inspect --json is not JSON"
python3 - <<'PY' || fail "inspect --json values"
import json, sys
d = json.load(open("inspect.json"))
def scan(path, ps):
    data = open(path, "rb").read()
    z = bytes(ps)
    nz = [data[i:i + ps] != z for i in range(0, len(data), ps)]
    runs = sum(1 for i, b in enumerate(nz) if b and (i == 0 or not nz[i - 1]))
    return len(data), len(nz), sum(nz), runs
want = {"pc.ram": ("a.img", 4096), "vga.vram": ("b.img", 2 << 20),
        "/rom@etc/acpi tables": ("c.img", 4096)}
bad = []
blocks = {b["name"]: b for b in d["blocks"]}
if sorted(blocks) != sorted(want):
    bad.append("block names %s" % sorted(blocks))
tot_data = 0
for name, (path, ps) in want.items():
    b = blocks.get(name)
    if not b:
        continue
    length, pages, data, runs = scan(path, ps)
    tot_data += data * ps
    for key, val in (("length", length), ("page_size", ps), ("pages", pages),
                     ("data_pages", data), ("zero_pages", pages - data),
                     ("absent_pages", 0)):
        if b[key] != val:
            bad.append("%s %s = %s, expected %s" % (name, key, b[key], val))
    # Runs are only split at segment limits: never fewer than here.
    if b["data_runs"] < runs or (name == "pc.ram" and b["data_runs"] != runs):
        bad.append("%s data_runs %d, %d runs in the image" % (name, b["data_runs"], runs))
t = d["totals"]
if t["payload_bytes"] != tot_data:
    bad.append("payload_bytes %d != %d" % (t["payload_bytes"], tot_data))
if abs(t["zero_share"] - (1 - tot_data / t["length"])) > 1e-5:
    bad.append("zero_share %s" % t["zero_share"])
import os
if d["file_size"] != os.path.getsize("snap.fvm"):
    bad.append("file_size")
h = d["run_histogram"]
if sum(x["data_runs"] for x in h) != t["data_runs"] or sum(x["data_pages"] for x in h) != t["data_pages"]:
    bad.append("histogram does not add up")
for x in h:
    if not (x["min_pages"] <= x["max_pages"]):
        bad.append("histogram bucket %s" % x)
meta = {m["key"]: m["value"] for m in d["meta"]}
# Bytes that are not UTF-8 come out as \u00XX, valid UTF-8 as it is.
if (meta.get("machine") != "pc-i440fx-7.2" or meta.get("note") != 'tab\tand "quotes"'
        or meta.get("bin") != "\u00ff\u0001\u00e9"):
    bad.append("meta %s" % meta)
if not meta.get("creator", "").startswith("fvmsnap ") or not meta.get("created", "").endswith("Z"):
    bad.append("creator/created %s" % meta)
ds = [(x["name"], x["size"]) for x in d["devstate"]]
if ds != [("cpu", os.path.getsize("ds0.bin")), ("", 0)]:
    bad.append("devstate %s" % ds)
if "PAYLOAD_CRC" not in d["format"]["features"]:
    bad.append("features %s" % d["format"]["features"])
if not any(r["kind"] == "data" and r["file_offset"] % 4096 == 0 and r["file_offset"] > 0 for r in d["runs"]):
    bad.append("runs list")
for b in bad:
    print("  |", b)
sys.exit(1 if bad else 0)
PY
ok "pack and inspect"

# ---- unpack: byte-exact, sparse, lists
check_unpacked() {
	local dir=$1
	cmp a.img "$dir/pc.ram.raw" || fail "$dir: pc.ram differs"
	cmp b.img "$dir/vga.vram.raw" || fail "$dir: vga.vram differs"
	cmp c.img "$dir/_rom_etc_acpi_tables.raw" || fail "$dir: rom block differs"
	cmp ds0.bin "$dir/devstate-0-cpu.bin" || fail "$dir: device state 0 differs"
	cmp ds1.bin "$dir/devstate-1.bin" || fail "$dir: device state 1 differs"
	grep -q "^pc.ram.raw	pc.ram	8388608	4096$" "$dir/blocks.txt" ||
		fail "$dir: blocks.txt"
	grep -q "^machine	pc-i440fx-7.2$" "$dir/meta.txt" || fail "$dir: meta.txt"
	ls -A "$dir" | grep -q '^\.' && fail "$dir: temporary file left"
	return 0
}
expect 0 fs unpack snap.fvm -o out
check_unpacked out
alloc=$(( $(stat -c %b out/pc.ram.raw) * $(stat -c %B out/pc.ram.raw) ))
[ "$alloc" -lt $((8 << 20)) ] || fail "unpacked image is not sparse ($alloc bytes allocated)"
ok "unpack"

# From a pipe, and pack to stdout into a pipe.
cat snap.fvm | fs unpack - -o out-pipe >/dev/null 2>err.log || { fail "unpack from stdin"; cat err.log; }
check_unpacked out-pipe
fs pack "${PACK[@]}" -q -o - | fs unpack -q - -o out-pipe2 2>err.log || { fail "pack -o - | unpack -"; cat err.log; }
check_unpacked out-pipe2
ok "pipes"

# ---- verify: good, flipped payload byte, truncated
expect 0 fs verify snap.fvm
grep -q '^ok: ' out.log || fail "verify prints no ok line"
off=$(python3 -c 'import json; print([r["file_offset"] for r in json.load(open("inspect.json"))["runs"] if r["kind"] == "data"][0] + 100)')
cp snap.fvm flip.fvm
python3 - "$off" <<'PY'
import sys
off = int(sys.argv[1])
with open("flip.fvm", "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x10]))
PY
expect 2 fs verify flip.fvm
grep -q 'checksum' err.log || fail "verify of a flipped byte does not say checksum"
size=$(stat -c %s snap.fvm)
head -c $((size - 1000)) snap.fvm > trunc.fvm
expect 2 fs verify trunc.fvm
expect 2 fs inspect trunc.fvm
head -c 4000 snap.fvm > trunc2.fvm
expect 2 fs verify trunc2.fvm
printf 'not a snapshot at all, just some text that is long enough....' > junk.fvm
expect 2 fs verify junk.fvm
expect 3 fs verify no-such-file.fvm
ok "verify"

# ---- a snapshot on standard input: a pipe is read once, front to back
# (inspect reads it to the end, checking every checksum, then lists it);
# standard input that is a file is read like one. Messages say "standard
# input", once.
cat snap.fvm | fs inspect - > pipe-inspect.txt 2>err.log || { fail "cat | inspect -"; cat err.log; }
grep -q '^file: *standard input (read as a stream, every checksum verified)$' pipe-inspect.txt ||
	fail "inspect - does not say it read a stream: $(head -1 pipe-inspect.txt)"
grep -q 'pc.ram' pipe-inspect.txt || fail "inspect - lists no block"
grep -q '^device state: 2 sections$' pipe-inspect.txt || fail "inspect - lists no device state"
cat snap.fvm | fs inspect --json --runs - > pipe-inspect.json 2>err.log || { fail "cat | inspect --json -"; cat err.log; }
fs inspect --json --runs - < snap.fvm > file-stdin.json 2>err.log || { fail "inspect --json - < file"; cat err.log; }
python3 - inspect.json pipe-inspect.json file-stdin.json <<'PY' || fail "inspect --json - differs from inspect --json FILE"
import json, sys
f, p, s = (json.load(open(n)) for n in sys.argv[1:])
assert p["file"] == "-" and p["streamed"] is True and p["file_size"] == 0, (p["file"], p["streamed"], p["file_size"])
assert f["streamed"] is False and s["streamed"] is False and s["file"] == "-"
assert p["totals"]["overhead_percent"] is None
for k in ("format", "blocks", "run_histogram", "meta"):
    assert p[k] == f[k], k
tp, tf = dict(p["totals"]), dict(f["totals"])
del tp["overhead_percent"], tf["overhead_percent"]
assert tp == tf, (tp, tf)
strip = lambda l, keys: [{k: v for k, v in e.items() if k not in keys} for e in l]
assert strip(p["runs"], ("file_offset",)) == strip(f["runs"], ("file_offset",))
assert strip(p["devstate"], ("file_offset",)) == strip(f["devstate"], ("file_offset",))
assert [d["name"] for d in p["devstate"]] == ["cpu", ""] and p["devstate"][0]["size"] == 19
del f["file"], s["file"]
assert f == s, "inspect - < FILE is not inspect FILE"
PY
cat snap.fvm | fs verify - > out.log 2>err.log || { fail "cat | verify -"; cat err.log; }
grep -q '^ok: standard input: 3 blocks, .* (read as a stream)$' out.log || fail "verify - ok line: $(cat out.log)"
expect 0 fs verify - < snap.fvm
grep -q '^ok: standard input: 3 blocks, ' out.log || fail "verify - < FILE: $(cat out.log)"
# damaged on a pipe: non-zero exit, the library's detail, the input named once
cat flip.fvm | fs verify - > /dev/null 2> err.log
rc=$?
[ $rc -eq 2 ] || fail "verify - of a flipped byte: exit $rc, expected 2"
grep -q '^fvmsnap verify: standard input: checksum mismatch: .*payload crc mismatch' err.log ||
	fail "verify - of a flipped byte: $(cat err.log)"
[ "$(grep -o 'standard input' err.log | wc -l)" -eq 1 ] || fail "verify - names its input more than once: $(cat err.log)"
cat trunc.fvm | fs verify - > /dev/null 2> err.log
rc=$?
{ [ $rc -eq 2 ] && grep -q '^fvmsnap verify: standard input: file is truncated: ' err.log; } ||
	fail "verify - of a truncated stream: exit $rc: $(cat err.log)"
cat flip.fvm | fs inspect - > /dev/null 2> err.log
rc=$?
{ [ $rc -eq 2 ] && grep -q 'checksum mismatch' err.log; } || fail "inspect - of a flipped byte: exit $rc: $(cat err.log)"
cat junk.fvm | fs inspect - > /dev/null 2> err.log
rc=$?
{ [ $rc -eq 2 ] && grep -q "^fvmsnap inspect: standard input: not a libfastvm snapshot, QEMU migration stream, mapped-ram file or qcow2 image: " err.log; } ||
	fail "inspect - of junk: exit $rc: $(cat err.log)"
# bench times a file's storage: standard input is refused, saying why
cat snap.fvm | fs bench -n 1 - > /dev/null 2> err.log
rc=$?
{ [ $rc -eq 1 ] && grep -q '^fvmsnap bench: bench needs a file, not standard input: ' err.log; } ||
	fail "bench -: exit $rc: $(cat err.log)"
ok "standard input: inspect, verify, bench"

# ---- the environment: fvmsnap maps FVM_BACKEND and FVM_WILLNEED onto its
# load options (the library reads no environment variable)
rm -rf out-env
FVM_BACKEND=pread fs unpack snap.fvm -o out-env > out.log 2> err.log || { fail "FVM_BACKEND=pread unpack"; cat err.log; }
grep -q ' (pread)$' out.log || fail "FVM_BACKEND=pread: unpack did not load with pread: $(cat out.log)"
check_unpacked out-env
cat snap.fvm | FVM_BACKEND=pread fs unpack -q - -o out-env 2> err.log || { fail "FVM_BACKEND=pread unpack -"; cat err.log; }
FVM_BACKEND=nosuch fs unpack snap.fvm -o out-env > /dev/null 2> err.log
rc=$?
{ [ $rc -eq 1 ] && grep -q '^fvmsnap unpack: FVM_BACKEND=nosuch: expected pread, uring or io_uring$' err.log; } ||
	fail "FVM_BACKEND=nosuch: exit $rc: $(cat err.log)"
FVM_WILLNEED=4 fs bench -n 1 --warm --backend pread --no-memory snap.fvm > out.log 2> err.log ||
	{ fail "FVM_WILLNEED=4 bench"; cat err.log; }
grep -q '^bench: snap.fvm: .*, willneed 4$' out.log || fail "FVM_WILLNEED=4: bench: $(head -1 out.log)"
FVM_WILLNEED=4 fs bench -n 1 --warm --backend pread --no-memory --willneed 2 --json snap.fvm > bench-env.json 2> err.log ||
	{ fail "FVM_WILLNEED=4 bench --willneed 2"; cat err.log; }
python3 -c 'import json,sys; t=json.load(sys.stdin)["tuning"]; assert t["willneed_window"] == 2, t' < bench-env.json ||
	fail "--willneed does not win over FVM_WILLNEED"
FVM_WILLNEED=65 fs bench -n 1 snap.fvm > /dev/null 2> err.log
rc=$?
[ $rc -eq 1 ] || fail "FVM_WILLNEED=65: exit $rc, expected 1"
ok "environment"

# ---- a file padded with zeros after its footer (a FUSE/NBD export or block
# device rounds the size up): readable as it was; non-zero padding is not
cp snap.fvm padded.fvm
head -c 300 /dev/zero >> padded.fvm
expect 0 fs verify padded.fvm
rm -rf out-padded
expect 0 fs unpack padded.fvm -o out-padded
cmp out-padded/pc.ram.raw out/pc.ram.raw || fail "padded file unpacked differently"
cp snap.fvm padded-junk.fvm
head -c 300 /dev/zero | tr '\0' '\1' >> padded-junk.fvm
expect 2 fs verify padded-junk.fvm
ok "zero padding after the footer"

# ---- stock QEMU inputs without QEMU (real streams: test_stream.sh): error
# messages name the file and what it is not; unknown options; inspect of a
# stream on a pipe; the stock JSON document (synthetic fuzz corpus streams)
for i in $(seq 200); do echo "this is a text file, not any kind of snapshot"; done > junk.txt
expect 2 fs list junk.txt
grep -q "^fvmsnap list: junk.txt: not a qcow2 image: " err.log || fail "list of junk: $(cat err.log)"
expect 2 fs convert junk.txt -o j.fvm
grep -q "^fvmsnap convert: junk.txt: not a QEMU migration stream, mapped-ram file or qcow2 image: " err.log ||
	fail "convert of junk: $(cat err.log)"
expect 2 fs inspect junk.txt
grep -q "^fvmsnap inspect: junk.txt: not a libfastvm snapshot, QEMU migration stream, mapped-ram file or qcow2 image: " err.log ||
	fail "inspect of junk: $(cat err.log)"
expect 2 fs export junk.txt -o j.mig
grep -q "^fvmsnap export: junk.txt: not a libfastvm snapshot: " err.log || fail "export of junk: $(cat err.log)"
[ -e j.fvm ] || [ -e j.mig ] && fail "a failed convert/export left its output"
printf 'QEVM\000\000\000\003\007' > short.mig
expect 2 fs convert short.mig -o j.fvm
grep -q "^fvmsnap convert: short.mig: " err.log || fail "convert error does not name the file: $(cat err.log)"
for c in list convert export inspect; do
	expect 0 fs "$c" --help
	grep -q "^Usage: fvmsnap $c" out.log || fail "$c --help prints no usage on stdout"
	expect 1 fs "$c" --bogus-option
	{ [ "$(wc -l < err.log)" -eq 2 ] && [ "$(tail -n 1 err.log)" = "Try 'fvmsnap $c --help'." ]; } ||
		fail "$c --bogus-option: $(cat err.log)"
done
CORPUS=$(dirname "$(realpath "$0")")/../fuzz/corpus/stream
if [ -f "$CORPUS/synthetic-good.mig" ] && [ -f "$CORPUS/synthetic-mapped-ram.mig" ]; then
	fs inspect --json "$CORPUS/synthetic-good.mig" > good.json || fail "inspect --json of a stream"
	cat "$CORPUS/synthetic-good.mig" | fs inspect --json - > pipe.json || fail "inspect --json - from a pipe"
	cat "$CORPUS/synthetic-good.mig" | fs inspect - > pipe.txt || fail "inspect - from a pipe"
	grep -q '^input: *standard input (QEMU migration stream)$' pipe.txt || fail "inspect - text: $(head -1 pipe.txt)"
	fs inspect --json "$CORPUS/synthetic-mapped-ram.mig" > mapped.json || fail "inspect --json of a mapped-ram file"
	cat "$CORPUS/synthetic-mapped-ram.mig" | fs inspect - > /dev/null 2> err.log
	[ $? -eq 4 ] || fail "inspect - of a mapped-ram file on a pipe: not exit 4"
	fs convert -q --no-fsync "$CORPUS/synthetic-good.mig" -o good.fvm || fail "convert of a stream"
	# the summary counts live pages: pc.ram page 6 is sent as data, then
	# again as a zero page (pc.ram 0-2 and 5 data, 3, 4 and 6 zero; rom 0
	# data, 1 zero)
	fs convert --no-fsync "$CORPUS/synthetic-good.mig" -o good2.fvm > conv.txt 2>&1 ||
		fail "convert of a stream (summary)"
	grep -q "(5 data pages, 4 zero pages, 1 sent again)" conv.txt ||
		fail "convert summary: $(cat conv.txt)"
	# export -: a pipe is copied to a temporary file (export reads in block
	# order), a file on standard input read in place; the same stream
	fs export -q good.fvm -o file.mig || fail "export of a converted stream"
	cat good.fvm | fs export -q - -o pipe.mig 2>err.log || { fail "cat | export -"; cat err.log; }
	cmp -s file.mig pipe.mig || fail "export - from a pipe differs from export FILE"
	fs export -q - < good.fvm > stdin.mig 2>err.log || { fail "export - < FILE"; cat err.log; }
	cmp -s file.mig stdin.mig || fail "export - < FILE differs from export FILE"
	# a failed write names its offset in hex, as pack and convert do
	expect 3 fs export -q good.fvm -o /dev/full
	grep -qx "fvmsnap export: /dev/full: I/O error: write at offset 0x0: No space left on device" err.log ||
		fail "export to /dev/full: $(cat err.log)"
	cat snap.fvm | fs export - -o j.mig > /dev/null 2> err.log
	rc=$?
	{ [ $rc -eq 4 ] && grep -q '^fvmsnap export: standard input: not found: no QEMU device state' err.log; } ||
		fail "export - of a snapshot not from QEMU: exit $rc: $(cat err.log)"
	[ -e j.mig ] && fail "a failed export - left its output"
	fs inspect --json good.fvm > goodfvm.json || fail "inspect --json of a converted stream"
	python3 - good.json pipe.json mapped.json goodfvm.json <<'PY' || fail "stock inspect --json"
import json, sys
good, pipe, mapped, fvm = (json.load(open(f, encoding="utf-8")) for f in sys.argv[1:])
assert good["schema"] == "fvmsnap-inspect-stock/1", good["schema"]
assert good["input"].endswith("synthetic-good.mig") and pipe["input"] == "-", (good["input"], pipe["input"])
assert good["snapshot"] is None and good["mapped_ram"] is None and good["capabilities"] == []
del good["input"], pipe["input"]
assert good == pipe, "stdin and file differ"
meta = {m["key"]: m["value"] for m in fvm["meta"]}
assert meta["source.format"] == good["format"] == "qemu-migration-stream", (meta["source.format"], good["format"])
assert mapped["format"] == "qemu-mapped-ram" and mapped["capabilities"] == ["mapped-ram"], mapped
assert mapped["mapped_ram"] == {"written_pages": 1, "unwritten_pages": 1}, mapped["mapped_ram"]
PY
else
	fail "fuzz/corpus/stream synthetic streams not found beside the tests"
fi
ok "stock inputs: messages, options, stdin, JSON"

# ---- failures leave existing files alone
cp snap.fvm keep.fvm
expect 3 fs pack --block pc.ram=missing.img -o keep.fvm
cmp -s snap.fvm keep.fvm || fail "failed pack (missing input) changed the output"
expect 1 fs pack --block pc.ram=tiny.img -o keep.fvm
grep -q 'multiple of the page size' err.log || fail "no clear error for a bad image size"
cmp -s snap.fvm keep.fvm || fail "failed pack (bad size) changed the output"
cp -r out out-keep
expect 2 fs unpack flip.fvm -o out-keep
diff -r out out-keep >/dev/null || fail "failed unpack changed existing files"
ls -A out-keep | grep -q '^\.' && fail "failed unpack left a temporary file"
ls -A | grep -q '^\.' && fail "failed pack left a temporary file"
ok "atomic on failure"

# ---- bench, short
expect 0 fs bench -n 1 snap.fvm
grep -qE '^warm +load uring .* [0-9]+\.[0-9]+x' out.log || fail "bench prints no warm ratio line"
grep -qE '^cold +load pread .* [0-9]+\.[0-9]+x' out.log || fail "bench prints no cold ratio line"
grep -q '^verdict' out.log || fail "bench prints no verdict"
fs bench -n 1 --warm --backend pread --json snap.fvm > bench.json 2>err.log || fail "bench --json"
python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["results"] and "warm_ratio" in d["verdict"]' < bench.json ||
	fail "bench --json output"
# --prefetch adds lazy+prefetch and its wait, which cannot end before the
# load did; a compressed file skips the mapped loads with a note
expect 0 fs bench -n 1 --cold --no-memory --prefetch --backend lazy snap.fvm
grep -qE '^cold +lazy\+prefetch ' out.log || fail "bench --prefetch: no lazy+prefetch row"
grep -qE '^cold +prefetch wait ' out.log || fail "bench --prefetch: no prefetch wait row"
fs bench -n 1 --cold --no-memory --prefetch --json snap.fvm | python3 -c '
import json, sys
r = {x["config"]: x for x in json.load(sys.stdin)["results"]}
assert r["prefetch_wait"]["median_ms"] >= r["lazy_prefetch"]["median_ms"] > 0, r
assert r["lazy_prefetch"]["max_ms"] >= r["lazy_prefetch"]["min_ms"], r' ||
	fail "bench --prefetch --json"
expect 1 fs bench -n 1 --prefetch --verify snap.fvm
expect 0 fs bench -n 1 --warm --no-memory --backend uring,lazy-map snap.fvm
[ "$(grep -cE '^warm +(load uring|load lazy) ' out.log)" = 2 ] && ! grep -q 'lazy+write' out.log ||
	fail "bench --backend uring,lazy-map: $(cat out.log)"
expect 1 fs bench -n 1 --backend uring, snap.fvm
expect 1 fs bench -n 1 --backend uring,nosuch snap.fvm
expect 0 fs recompress -q snap.fvm -o bz.fvm --compress zstd:1
expect 0 fs bench -n 1 --warm --no-memory --prefetch --threads 1 bz.fvm
grep -q '^bench: bz.fvm: compressed (zstd): mmap and lazy loads skipped' out.log ||
	fail "bench of a compressed file: no skip note: $(head -2 out.log)"
grep -qE '^warm +(load mmap|load lazy|lazy\+prefetch) ' out.log && fail "bench ran a mapped load of a compressed file"
grep -qE '^warm +load uring ' out.log || fail "bench of a compressed file: no uring row"
fs bench -n 1 --warm --no-memory --json bz.fvm | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["codec"] == "zstd" and 0 < d["stored_bytes"] < d["payload_bytes"], d' ||
	fail "bench --json of a compressed file: codec, stored_bytes"
expect 1 fs bench -n 1 --backend mmap bz.fvm
grep -q 'bz.fvm is compressed (zstd): the mmap and lazy loads map plain runs only' err.log ||
	fail "bench --backend mmap of a compressed file: $(cat err.log)"
expect 1 fs bench -n 1 --threads 0 snap.fvm
rm -f bz.fvm
ok "bench"

# ---- restore and save: the command line (tests/qemu/s7-restore.sh runs them with QEMU)
expect 0 fs restore --help
expect 0 fs save --help
expect 1 fs restore
expect 1 fs restore snap.fvm
expect 1 fs restore snap.fvm --
expect 1 fs restore a.fvm b.fvm -- qemu-system-x86_64
expect 1 fs restore - -- qemu-system-x86_64
expect 1 fs restore --timeout 0 snap.fvm -- qemu-system-x86_64
expect 1 fs restore --ram-dir /a/directory/name/far/longer/than/sixty/four/bytes/for/the/qmp/socket snap.fvm -- true
grep -q 'longer than 64 bytes' err.log || fail "restore: long --ram-dir not explained"
# a snapshot that is not from QEMU: no pc.ram block
expect 3 fs restore nosuch.fvm -- qemu-system-x86_64
expect 4 fs restore snap.fvm --block no.such.block -- qemu-system-x86_64
grep -q 'no.such.block' err.log || fail "restore: the missing block is not named"
expect 1 fs save
expect 1 fs save --qmp x.sock
expect 1 fs save -o y.fvm extra
expect 3 fs save --qmp "$PWD/no-such.sock" -o y.fvm
[ ! -e y.fvm ] || fail "a failed save wrote y.fvm"
ls -A | grep -q '^y\.fvm\..*\.mig$' && fail "a failed save left its temporary stream"
ok "restore and save usage"

# ---- an output that is the input is refused before anything is written
# (the rename that commits an output would replace the user's file)
same_refused() { # LABEL FILE CMD...: CMD refused (exit 1), FILE unchanged, no temporary left
	local label=$1 file=$2 sum
	shift 2
	sum=$(cksum < "$file")
	expect 1 "$@"
	grep -q 'refusing to replace it' err.log || fail "$label: not refused: $(cat err.log)"
	[ "$(cksum < "$file")" = "$sum" ] || fail "$label: $file changed"
	ls -A | grep -q '^\..*\.tmp\|^\.[^.]' && fail "$label: a temporary file was left: $(ls -A | grep '^\.')"
	return 0
}
cp snap.fvm same.fvm
same_refused "export -o its input" same.fvm fs export same.fvm -o same.fvm
ln -f same.fvm same-hard.fvm
same_refused "export -o a hard link" same.fvm fs export same.fvm -o same-hard.fvm
ln -sf same.fvm same-sym.fvm
same_refused "export -o a symlink" same.fvm fs export same.fvm -o same-sym.fvm
grep -q 'a symlink to it' err.log || fail "export -o a symlink: not said: $(cat err.log)"
same_refused "pack -o its block" a.img fs pack --block pc.ram=a.img --no-fsync -o a.img
if [ -f "$CORPUS/synthetic-good.mig" ]; then
	cp "$CORPUS/synthetic-good.mig" same.mig
	same_refused "convert -o its stream" same.mig fs convert same.mig -o same.mig
	ln -sf same.mig same-link.mig
	same_refused "convert of a symlink -o its target" same.mig fs convert same-link.mig -o same.mig
fi
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f qcow2 same.qcow2 1M
	same_refused "convert -o its qcow2" same.qcow2 fs convert same.qcow2 --snapshot s1 -o same.qcow2
fi
rm -f same.fvm same-hard.fvm same-sym.fvm same.mig same-link.mig same.qcow2
ok "an output that is the input"

# ---- a writer killed with SIGKILL leaves no temporary file (O_TMPFILE) and
# the old file whole: the path holds the old or the new snapshot
fs sample -o kill.img --size 256M --seed 3 >/dev/null 2>&1 || fail "sample for the kill test"
cp snap.fvm kill.fvm
old=$(cksum < kill.fvm)
for d in 0.02 0.05 0.08 0.12 0.2 0.3; do
	"$FVMSNAP" pack --block pc.ram=kill.img -o kill.fvm >/dev/null 2>&1 &
	pid=$!
	sleep $d
	kill -KILL $pid 2>/dev/null
	wait $pid 2>/dev/null
	ls -A | grep -q '^\.kill\.fvm\.' && fail "SIGKILL after ${d}s left $(ls -A | grep '^\.kill')"
	if [ "$(cksum < kill.fvm)" != "$old" ]; then
		fs verify -q kill.fvm || fail "SIGKILL after ${d}s: kill.fvm is neither the old nor a whole new file"
		cp snap.fvm kill.fvm
	fi
done
# the tool's own atomic outputs (export, unpack, sample): the same
for d in 0.05 0.1 0.2 0.3; do
	"$FVMSNAP" sample -o kill2.img --size 1G --seed 4 >/dev/null 2>&1 &
	pid=$!
	sleep $d
	kill -KILL $pid 2>/dev/null
	wait $pid 2>/dev/null
	ls -A | grep -q '^\.kill2\.img\.' && fail "sample killed after ${d}s left $(ls -A | grep '^\.kill2')"
	rm -f kill2.img
done
rm -f kill.fvm kill.img
ok "SIGKILL while writing"

# ---- messages: the failing thing named once, in the user's words
# An output in a missing directory: the output is named, once, not the
# input, and no temporary's name leaks.
expect 0 fs sample -q -o msg.img --size 1M --seed 21
expect 3 fs pack -q --block pc.ram=msg.img -o nodir/x.fvm
grep -qx "fvmsnap pack: nodir/x.fvm: I/O error: cannot create the file: No such file or directory" err.log ||
	fail "pack into a missing directory: $(cat err.log)"
expect 0 fs pack -q --block pc.ram=msg.img -o msg.fvm
expect 3 fs export -q msg.fvm -o nodir/x.mig
grep -qx "fvmsnap export: nodir/x.mig: No such file or directory" err.log ||
	fail "export into a missing directory: $(cat err.log)"
expect 3 fs unpack -q msg.fvm -o nodir/sub
grep -qx "fvmsnap unpack: nodir/sub: No such file or directory" err.log ||
	fail "unpack into a missing directory: $(cat err.log)"
# A qcow2 image on a pipe: not "not supported on this system".
{ printf 'QFI\373\000\000\000\003'; head -c 200 /dev/zero; } >fake.qcow2
fs convert - -o x.fvm <fake.qcow2 >out.log 2>err.log
[ $? -eq 1 ] || fail "convert of a qcow2 on standard input: exit not 1"
grep -qx "fvmsnap convert: standard input: invalid argument: a qcow2 image is read by its path, not from standard input" err.log ||
	fail "qcow2 on standard input: $(cat err.log)"
cat fake.qcow2 | fs list - >out.log 2>err.log
[ $? -eq 1 ] || fail "list -: exit not 1"
grep -q "^fvmsnap list: list reads a qcow2 image by its path, not from standard input$" err.log ||
	fail "list -: $(cat err.log)"
# SIGTERM while loading: "interrupted by SIGTERM", not the library's
# "canceled by the progress callback"; exit 130, no output directory.
# (The stream pauses after 300 KB; the signal arrives in the pause and the
# next progress callback, once data flows again, cancels the load.)
expect 0 fs sample -q -o term.img --size 8M --seed 22
expect 0 fs pack -q --block pc.ram=term.img -o term.fvm
rm -f term.fifo
mkfifo term.fifo
"$FVMSNAP" unpack -q - -o term.d <term.fifo >out.log 2>err.log &
pid=$!
{ head -c 300000 term.fvm; sleep 1.5; tail -c +300001 term.fvm; } >term.fifo &
feeder=$!
catching $pid || fail "unpack never caught SIGTERM"
sleep 0.7
kill -TERM $pid
wait $pid
rc=$?
wait $feeder
[ $rc -eq 130 ] || fail "unpack on SIGTERM: exit $rc, expected 130"
grep -qx "fvmsnap unpack: standard input: interrupted by SIGTERM" err.log ||
	fail "unpack on SIGTERM: $(cat err.log)"
[ -e term.d ] && fail "unpack on SIGTERM left term.d"
rm -f term.fifo term.fvm term.img msg.fvm msg.img fake.qcow2
ok "messages name the failing thing once"

# Compressed runs (FORMAT.md 4.5): pack --compress, inspect shows the codec
# and the ratio, verify, unpack gives the same bytes, recompress both ways,
# bad --compress values are usage errors, recompress never replaces its input.
expect 0 fs sample -q -o cz.img --size 16M --seed 31 --nonzero-share 0.5
expect 1 fs pack --block pc.ram=cz.img -o cz.fvm --compress gzip
expect 1 fs pack --block pc.ram=cz.img -o cz.fvm --compress zstd:99
expect 1 fs pack --block pc.ram=cz.img -o cz.fvm --compress none:3
expect 1 fs pack --block pc.ram=cz.img -o cz.fvm --compress zstd --frame-size 100K
[ -e cz.fvm ] && fail "a refused pack --compress left cz.fvm"
for codec in zstd lz4:9; do
	expect 0 fs pack -q --block pc.ram=cz.img -o cz.fvm --compress $codec --frame-size 64K
	fs inspect cz.fvm >out.log 2>&1 || fail "inspect of a $codec file"
	grep -q "^compression:  ${codec%%:*} level" out.log || fail "inspect: no compression line ($codec)"
	grep -q "COMPRESSED" out.log || fail "inspect: no COMPRESSED feature ($codec)"
	fs inspect --json cz.fvm | python3 -c 'import json,sys; c=json.load(sys.stdin)["compression"]; assert c["frames"] > 0 and c["ratio"] > 1.0, c' ||
		fail "inspect --json: compression ($codec)"
	expect 0 fs verify -q cz.fvm
	rm -rf cz.d
	expect 0 fs unpack -q cz.fvm -o cz.d
	cmp -s cz.d/pc.ram.raw cz.img || fail "unpack of a $codec file differs from its image"
	expect 0 fs recompress -q cz.fvm -o plain.fvm --compress none
	fs inspect plain.fvm | grep -q "^compression:" && fail "recompress --compress none kept frames"
	expect 0 fs recompress -q plain.fvm -o cz2.fvm --compress zstd:1
	rm -rf cz.d && expect 0 fs unpack -q cz2.fvm -o cz.d
	cmp -s cz.d/pc.ram.raw cz.img || fail "recompressed file differs from its image ($codec)"
done
cp cz.fvm keep.fvm
expect 1 fs recompress cz.fvm -o cz.fvm
cmp -s cz.fvm keep.fvm || fail "recompress -o its input changed it"
expect 1 fs recompress - -o x.fvm
# a damaged frame is found by verify and by unpack, naming the frame
python3 - cz.fvm <<'PY'
import sys, struct
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
io = struct.unpack_from('<Q', b, len(b) - 32)[0]
nb, nm, nd, _, ne = struct.unpack_from('<IIIIQ', b, io + 16)
fa = io + 16 + 24 + 8 * (nb + nm + nd) + 40 * ne
for k in range(struct.unpack_from('<Q', b, fa)[0]):
    po, fo, pl, sl = struct.unpack_from('<QQII', b, fa + 8 + 32 * k)
    if sl < pl:
        b[fo + sl // 2] ^= 1
        break
open(p, 'wb').write(b)
PY
fs verify cz.fvm >out.log 2>err.log && fail "verify accepted a damaged frame"
grep -q "frame [0-9]* at file offset 0x" err.log || fail "verify: damaged frame: $(cat err.log)"
rm -rf cz.d
fs unpack -q cz.fvm -o cz.d 2>err.log && fail "unpack accepted a damaged frame"
grep -q "stored crc" err.log || fail "unpack: damaged frame: $(cat err.log)"
rm -rf cz.d cz.img cz.fvm cz2.fvm plain.fvm keep.fvm
# export of a compressed snapshot gives the stream the plain one gives
if [ -f "$CORPUS/synthetic-good.mig" ]; then
	expect 0 fs convert -q "$CORPUS/synthetic-good.mig" -o ep.fvm
	expect 0 fs convert -q "$CORPUS/synthetic-good.mig" -o ez.fvm --compress lz4
	fs inspect ez.fvm | grep -q "^compression:  lz4" || fail "convert --compress lz4 wrote no frames"
	expect 0 fs export -q ep.fvm -o ep.mig
	expect 0 fs export -q ez.fvm -o ez.mig
	cmp -s ep.mig ez.mig || fail "export of a compressed snapshot differs from the plain one's"
	rm -f ep.fvm ez.fvm ep.mig ez.mig
fi
ok "compressed runs: pack, inspect, verify, unpack, recompress, convert, export"

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all fvmsnap checks passed"
