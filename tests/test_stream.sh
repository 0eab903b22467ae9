#!/bin/sh
# fvmsnap convert / export / inspect on real QEMU migration streams.
#
# Streams come from a QEMU that ran its BIOS for two seconds (no guest, no
# disk): enough RAM content for data and zero runs, quick to make. Checks:
# convert -> export -> convert gives the same RAM and device state; RAM
# equals QEMU's pmemsave; a stream from stdin and to stdout; zlib pages;
# inspect's counts; inspect of hostile block and device names, of a stream
# on a pipe, of a UTF-8 savevm name (also list); the exported stream
# restores in a fresh QEMU 7.2 with RAM equal to the original; hostile
# inputs fail with a message and a non-zero exit, leave no file and leave
# an existing output untouched.
#
# Usage: test_stream.sh /path/to/fvmsnap. Exit 77 (skip) without QEMU.
set -u

F=$1
case $F in /*) ;; *) F=$(pwd)/$F ;; esac
QEMU=${QEMU:-qemu-system-x86_64}
if ! command -v "$QEMU" >/dev/null 2>&1; then
	echo "SKIP: $QEMU not installed (apt-get install qemu-system-x86)"
	exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
	echo "SKIP: python3 needed to read the JSON of inspect"
	exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/fvm-stream.XXXXXX")
trap 'rm -rf "$T"' EXIT
n=0
fail() { echo "FAIL: $*"; exit 1; }
ok() { n=$((n + 1)); echo "ok $n - $*"; }

# hmp MEM [QEMU ARGS...] < commands: HMP on stdio; "sleep N" lines pause.
# HMP migrate (without -d) holds the monitor until the migration is done.
hmp() {
	mem=$1
	shift
	{
		while read -r line; do
			case $line in
			"sleep "*) sleep "${line#sleep }" ;;
			*) echo "$line"; sleep 0.3 ;;
			esac
		done
		sleep 1
		echo quit
	} | timeout 120 "$QEMU" -nodefaults -M pc -m "$mem" -display none \
		-monitor stdio "$@" > "$T/hmp.log" 2>&1
}

MEM=64M
RAMHEX=0x4000000

# ---------------------------------------------------------------- streams
hmp $MEM -S <<EOF
cont
sleep 2
stop
pmemsave 0 $RAMHEX "$T/a.ram"
migrate "exec:cat > $T/a.mig"
EOF
[ -s "$T/a.mig" ] && [ -s "$T/a.ram" ] || fail "QEMU wrote no stream: $(cat "$T/hmp.log")"
hmp $MEM -S <<EOF
migrate_set_capability compress on
cont
sleep 2
stop
migrate "exec:cat > $T/c.mig"
EOF
[ -s "$T/c.mig" ] || fail "QEMU wrote no compressed stream"
ok "QEMU streams made"

# ---------------------------------------------------------------- round trip
unpack() { rm -rf "$2"; "$F" unpack -q "$1" -o "$2" || fail "unpack $1"; rm -f "$2/meta.txt"; }

"$F" convert -q --no-fsync "$T/a.mig" -o "$T/a.fvm" || fail "convert a.mig"
"$F" verify "$T/a.fvm" > /dev/null || fail "verify a.fvm"
"$F" export -q "$T/a.fvm" -o "$T/a2.mig" || fail "export a.fvm"
"$F" convert -q --no-fsync "$T/a2.mig" -o "$T/a2.fvm" || fail "convert a2.mig"
unpack "$T/a.fvm" "$T/u1"
unpack "$T/a2.fvm" "$T/u2"
diff -r "$T/u1" "$T/u2" > /dev/null || fail "export + convert changed RAM or device state"
ok "convert, export, convert again: same RAM and device state"

cmp -s "$T/u1/pc.ram.raw" "$T/a.ram" || fail "pc.ram differs from QEMU's pmemsave"
ok "pc.ram equals pmemsave"

cat "$T/a.mig" | "$F" convert -q --no-fsync - -o "$T/s.fvm" || fail "convert from stdin"
unpack "$T/s.fvm" "$T/u3"
diff -r "$T/u1" "$T/u3" > /dev/null || fail "stdin conversion differs"
"$F" export "$T/a.fvm" > "$T/a3.mig" 2> /dev/null || fail "export to stdout"
cmp -s "$T/a2.mig" "$T/a3.mig" || fail "export to stdout differs from -o"
ok "stdin input, stdout output"

"$F" convert -q --no-fsync "$T/c.mig" -o "$T/c.fvm" || fail "convert c.mig"
"$F" export -q "$T/c.fvm" -o "$T/c2.mig" || fail "export c.fvm"
"$F" convert -q --no-fsync "$T/c2.mig" -o "$T/c2.fvm" || fail "convert c2.mig"
unpack "$T/c.fvm" "$T/v1"
unpack "$T/c2.fvm" "$T/v2"
diff -r "$T/v1" "$T/v2" > /dev/null || fail "compressed stream round trip differs"
"$F" inspect --json "$T/c.mig" > "$T/c.json" || fail "inspect c.mig"
python3 - "$T/c.json" <<'EOF' || fail "compressed stream: no COMPRESS_PAGE records seen"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["records"]["compress_page"] > 0 else 1)
EOF
ok "zlib-compressed pages"

# ---------------------------------------------------------------- inspect
"$F" inspect --json "$T/a.mig" > "$T/a.json" || fail "inspect a.mig"
"$F" inspect --json "$T/a.fvm" > "$T/f.json" || fail "inspect a.fvm"
"$F" inspect "$T/a.mig" > /dev/null || fail "inspect a.mig (text)"
python3 - "$T/a.json" "$T/f.json" "$T/a.ram" <<'EOF' || fail "inspect counts"
import json, sys
s = json.load(open(sys.argv[1]))
f = json.load(open(sys.argv[2]))
ram = open(sys.argv[3], "rb").read()
sb = {b["name"]: b for b in s["blocks"]}
fb = {b["name"]: b for b in f["blocks"]}
assert sb.keys() == fb.keys(), (sb.keys(), fb.keys())
for k in sb:
    for key in ("length", "data_pages", "zero_pages"):
        assert sb[k][key] == fb[k][key], (k, key, sb[k][key], fb[k][key])
nz = sum(1 for i in range(0, len(ram), 4096) if ram[i:i + 4096].count(0) != 4096)
assert sb["pc.ram"]["data_pages"] == nz, (sb["pc.ram"]["data_pages"], nz)
assert sb["pc.ram"]["data_pages"] + sb["pc.ram"]["zero_pages"] == len(ram) // 4096
EOF
ok "inspect of the stream: counts equal the converted file's and pmemsave's"

# ---------------------------------------------------------------- names
# Hostile names: pc.ram renamed (same length, in the block list and every
# record) to bytes with control characters and invalid UTF-8; two device
# names of the JSON description replaced, one with raw bytes, one with a
# JSON escape. inspect --json must stay valid UTF-8 JSON with the bytes as
# documented (invalid UTF-8 -> \u00XX); text output shows them as '?'.
python3 - "$T/a.mig" "$T/names.mig" <<'PY' || fail "could not rename blocks and devices"
import sys
a = open(sys.argv[1], "rb").read()
a = a.replace(b"\x06pc.ram", b"\x06p\x01\xff\xc3\xa4m")
for old, new in ((b'{"name": "timer", "instance_id"', b'{"name": "t\x02\xfe\x7fr", "instance_id"'),
                 (b'{"name": "fw_cfg", "instance_id"', b'{"name": "\\u00e9", "instance_id"')):
    assert a.count(old) == 1, old
    a = a.replace(old, new)
open(sys.argv[2], "wb").write(a)
PY
"$F" inspect --json "$T/names.mig" > "$T/names.json" || fail "inspect --json names.mig"
"$F" inspect "$T/names.mig" > "$T/names.txt" || fail "inspect names.mig"
python3 - "$T/names.json" "$T/names.txt" <<'PY' || fail "hostile names: JSON or text output"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
names = [b["name"] for b in d["blocks"]]
assert "p\x01\u00ff\u00e4m" in names, names
assert "t\x02\u00fe\x7fr/0" in d["devices"] and "\u00e9/0" in d["devices"], d["devices"][:8]
t = open(sys.argv[2], "rb").read().decode("utf-8")
assert not any(c < " " and c != "\n" or "\x7f" <= c <= "\x9f" for c in t), "raw control characters"
assert "  0    p??\u00e4m " in t and "t???r/0" in t and "\u00e9/0" in t, t
PY
ok "inspect: hostile block and device names give valid JSON and safe text"

cat "$T/a.mig" | "$F" inspect --json - > "$T/pipe.json" || fail "inspect - from a pipe"
python3 - "$T/a.json" "$T/pipe.json" <<'PY' || fail "inspect - differs from inspect FILE"
import json, sys
f, p = (json.load(open(x)) for x in sys.argv[1:])
assert p["input"] == "-" and f["format"] == "qemu-migration-stream", (p["input"], f["format"])
del f["input"], p["input"]
assert f == p
PY
ok "inspect - reads a stream from a pipe"

# A UTF-8 snapshot name through savevm: list and inspect give it back.
if command -v qemu-img >/dev/null 2>&1; then
	qemu-img create -q -f qcow2 "$T/d.qcow2" 16M || fail "qemu-img create"
	echo 'savevm "snäp"' | hmp 32M -S -drive file="$T/d.qcow2",if=ide,format=qcow2
	"$F" list --json "$T/d.qcow2" > "$T/list.json" || fail "list --json"
	"$F" list "$T/d.qcow2" | grep -q "^1  *snäp  " || fail "list: UTF-8 name not shown as it is"
	"$F" inspect --json --snapshot "snäp" "$T/d.qcow2" > "$T/q.json" || fail "inspect --snapshot snäp"
	python3 - "$T/list.json" "$T/q.json" "$T/d.qcow2" <<'PY' || fail "UTF-8 snapshot name"
import json, sys
l, q = (json.load(open(x, encoding="utf-8")) for x in sys.argv[1:3])
assert l["schema"] == "fvmsnap-list/1" and [s["name"] for s in l["snapshots"]] == ["sn\u00e4p"], l
assert q["schema"] == "fvmsnap-inspect-stock/1" and q["input"] == sys.argv[3], q["input"]
assert q["snapshot"] == {"id": "1", "name": "sn\u00e4p"} and q["format"] == "qcow2-internal-snapshot", q
PY
	ok "savevm \"snäp\": list --json and inspect --json give the name back"
fi

# ---------------------------------------------------------------- restore
hmp $MEM -incoming "exec:$F export -q $T/a.fvm" <<EOF
sleep 3
info status
pmemsave 0 $RAMHEX "$T/r.ram"
EOF
# "paused (inmigrate)" would mean the stream was not (yet) loaded.
grep -a "VM status:" "$T/hmp.log" | grep -v inmigrate | grep -q paused ||
	fail "QEMU did not load the exported stream: $(cat "$T/hmp.log")"
cmp -s "$T/a.ram" "$T/r.ram" || fail "restored RAM differs"
ok "QEMU restores the exported stream with equal RAM"

# ---------------------------------------------------------------- hostile
# patch FILE OFFSET HEXBYTES
patch() {
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))' "$@"
}
size=$(wc -c < "$T/a.mig")

expect_fail() {
	what=$1
	in=$2
	printf 'previous' > "$T/out/keep.fvm"
	"$F" convert -q "$in" -o "$T/out/keep.fvm" 2> "$T/err"
	rc=$?
	[ $rc -ne 0 ] || fail "$what: accepted"
	[ -s "$T/err" ] || fail "$what: no message"
	[ "$(cat "$T/out/keep.fvm")" = previous ] || fail "$what: existing output changed"
	"$F" convert -q "$in" -o "$T/out/new.fvm" 2> /dev/null && fail "$what: accepted"
	[ "$(ls -A "$T/out")" = keep.fvm ] || fail "$what: left files: $(ls -A "$T/out")"
}
mkdir "$T/out"

cp "$T/a.mig" "$T/h.mig"; patch "$T/h.mig" 0 58
expect_fail "wrong magic" "$T/h.mig"
grep -q "magic" "$T/err" || fail "wrong magic: message does not say so"
cp "$T/a.mig" "$T/h.mig"; patch "$T/h.mig" 4 00000002
expect_fail "version 2" "$T/h.mig"
grep -q "version 2" "$T/err" || fail "version 2: message does not say so"
# Byte 26 follows the configuration section ("pc-i440fx-7.2").
cp "$T/a.mig" "$T/h.mig"; patch "$T/h.mig" 26 09
expect_fail "unknown section type" "$T/h.mig"
grep -q "offset 26" "$T/err" || fail "unknown section: no offset in: $(cat "$T/err")"
for cut in 0 3 7 20 26 40 120 4000 $((size / 3)) $((size / 2)) $((size - 2)) $((size - 1)); do
	head -c $cut "$T/a.mig" > "$T/h.mig"
	expect_fail "truncated at $cut" "$T/h.mig"
done
# Cut inside the device sections, past the last RAM record: device state is
# full of zero bytes, and EOF is 0x00, so only the last section's footer
# before EOF tells a whole stream from a cut one (QEMU itself fails late:
# "Unable to read ID string for section").
post=$("$F" inspect --json "$T/a.mig" | python3 -c '
import json, sys
print([d["size"] for d in json.load(sys.stdin)["devstate"] if d["name"] == "qemu.post-ram"][0])')
start=$((size - post))
n=0
for k in 1 2 5 13 100 1000 4096 8192 $((post / 3)) $((post / 2)) $((post - 300)); do
	[ $k -lt $post ] || continue
	head -c $((start + k)) "$T/a.mig" > "$T/h.mig"
	expect_fail "cut $k bytes into the device state" "$T/h.mig"
	n=$((n + 1))
done
# every cut at a zero byte of the device state, the cases a check for a
# final 0x00 let through
for k in $(python3 -c '
import sys
d = open(sys.argv[1], "rb").read()[int(sys.argv[2]):]
z = [i for i in range(1, len(d) - 300) if d[i - 1] == 0]
print(" ".join(str(z[j]) for j in range(0, len(z), max(1, len(z) // 20))))' "$T/a.mig" "$start"); do
	head -c $((start + k)) "$T/a.mig" > "$T/h.mig"
	expect_fail "cut after a zero byte, $k bytes into the device state" "$T/h.mig"
	n=$((n + 1))
done
[ $n -ge 20 ] || fail "only $n cuts into the device state tried"
# Record-level corruption of the real streams, found by their bytes: the
# second "\x06pc.ram" is the first page record naming pc.ram (the first is
# in the block list); the first record with flags 0x120 followed by a
# plausible length and a zlib header is a CONTINUE|COMPRESS_PAGE record.
python3 - "$T" <<'PY' || fail "could not locate records to corrupt"
import struct, sys, zlib
t = sys.argv[1]
a = open(t + "/a.mig", "rb").read()
i = a.find(b"\x06pc.ram", a.find(b"\x06pc.ram") + 1)
assert i > 8
hdr = struct.unpack(">Q", a[i - 8:i])[0]
def put(name, data):
    open(t + "/h-" + name + ".mig", "wb").write(data)
put("idstr0", a[:i] + b"\x00" + a[i + 1:])
put("idstr255", a[:i] + b"\xff" + a[i + 1:])
put("unknown-block", a[:i] + b"\x06pc.rax" + a[i + 7:])
past = (hdr & 0xfff) | (64 << 20)
put("past-end", a[:i - 8] + struct.pack(">Q", past) + a[i:])
c = open(t + "/c.mig", "rb").read()
for j in range(0, len(c) - 16):
    h = struct.unpack(">Q", c[j:j + 8])[0]
    n = struct.unpack(">I", c[j + 8:j + 12])[0]
    if h & 0xfff == 0x120 and 0 < n <= 4110 and c[j + 12] == 0x78:
        break
else:
    sys.exit(1)
half = zlib.compress(bytes(range(256)) * 8, 1)
put("compress-size", c[:j + 8] + struct.pack(">I", len(half)) + half + c[j + 12 + n:])
bad = bytes(b ^ 0x55 for b in c[j + 14:j + 12 + n])
put("compress-data", c[:j + 14] + bad + c[j + 12 + n:])
PY
for h in idstr0:"idstr length 0" idstr255:"unknown block\|idstr contains NUL" unknown-block:"unknown block 'pc.rax'" \
	 past-end:"past the end of block pc.ram" compress-size:"inflate to one 4096-byte page" \
	 compress-data:"inflate to one 4096-byte page"; do
	expect_fail "${h%%:*}" "$T/h-${h%%:*}.mig"
	grep -q "${h#*:}" "$T/err" || fail "${h%%:*}: message: $(cat "$T/err")"
	grep -q "offset [0-9]" "$T/err" || fail "${h%%:*}: no offset in: $(cat "$T/err")"
done
head -c $((size / 2)) "$T/a.mig" | "$F" convert -q - -o "$T/out/keep.fvm" 2> /dev/null &&
	fail "truncated stdin accepted"
[ "$(cat "$T/out/keep.fvm")" = previous ] || fail "truncated stdin: output changed"
ok "hostile streams: clear error, non-zero exit, outputs untouched"

"$F" export "$T/out/keep.fvm" -o "$T/out/x.mig" 2> /dev/null && fail "export of a non-snapshot"
[ ! -e "$T/out/x.mig" ] || fail "failed export left its output"
ok "failed export leaves no output"

echo "1..$n"
exit 0
