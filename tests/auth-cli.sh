#!/bin/bash
# fvmsnap with authenticated snapshots (--key, doc/FORMAT.md 4.6): keygen
# (mode 0600, no overwrite without --force), key files refused (too open,
# malformed, not regular, too large), pack/convert/recompress --key and the
# readers (verify, inspect text and JSON, unpack, export, bench, hot)
# with the key, without it, with another one, and on a tampered file.
# Skips (77) when this build has no authentication (fvmsnap keygen says so).
# Usage: auth-cli.sh /path/to/fvmsnap
set -u
. "$(dirname "$(realpath "$0")")/cli-lib.sh"

FVMSNAP=$(realpath "$1")
export FVMSNAP
CORPUS=$(realpath "$(dirname "$0")/../fuzz/corpus/stream")
if ! command -v python3 >/dev/null; then
	echo "SKIP: python3 not found (needed to read inspect --json)"
	exit 77
fi
W=$(mktemp -d "$PWD/auth-cli-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export FVM_TEST=1
umask 022


fs() { "$FVMSNAP" "$@"; }

# ---- keygen, or skip when this build cannot authenticate
"$FVMSNAP" keygen -o k1 >out.log 2>err.log
rc=$?
if [ "$rc" -eq 4 ] && grep -q 'built without authenticated snapshots' err.log; then
	echo "SKIP: $(cat err.log)"
	exit 77
fi
[ "$rc" -eq 0 ] || { echo "FAIL: keygen exit $rc: $(cat err.log)"; exit 1; }
id1=$(cat out.log)
[[ "$id1" =~ ^[0-9a-f]{16}$ ]] || fail "keygen printed '$id1', not a 16-digit key id"
[ "$(stat -c %a k1)" = 600 ] || fail "key file mode $(stat -c %a k1), not 600 (umask 022)"
grep -qE '^[0-9a-f]{64}$' k1 && [ "$(stat -c %s k1)" -eq 65 ] ||
	fail "key file is not 64 lowercase hex digits and a newline"
ls -A | grep -q '^\.k1\.' && fail "keygen left its temporary file"
cp -p k1 k1.before
expect 1 fs keygen -o k1
err_has "k1 exists" "keygen over an existing key"
cmp -s k1 k1.before || fail "keygen without --force changed the existing key"
expect 0 fs keygen -o k1 --force
cmp -s k1 k1.before && fail "keygen --force kept the old key"
[ "$(stat -c %a k1)" = 600 ] || fail "keygen --force: mode $(stat -c %a k1)"
id1=$(cat out.log)
expect 0 fs keygen -o k2
id2=$(cat out.log)
[ "$id1" != "$id2" ] || fail "two keys with one key id $id1"
(umask 0; expect 0 fs keygen -o k0)
[ "$(stat -c %a k0)" = 600 ] || fail "keygen under umask 0: mode $(stat -c %a k0)"
expect 1 fs keygen
expect 1 fs keygen -o -
ok "keygen"

# ---- the raw images
expect 0 fs sample -q -o ram.raw --size 8M --seed 7
head -c 65536 /dev/urandom >rom.raw
printf 'dev state\n' >dev.bin

# ---- key files refused
cp -p k1 kopen && chmod 644 kopen
expect 1 fs pack -q --block pc.ram=ram.raw -o x.fvm --key kopen
err_has "kopen: permissions 0644 are too open: a key file must be readable by its owner only (chmod 600 kopen)" "a 0644 key file"
cp -p k1 kgrp && chmod 620 kgrp
expect 1 fs verify --key kgrp x.fvm
err_has "kgrp: permissions 0620 are too open" "a group-writable key file"
[ -e x.fvm ] && fail "pack with a refused key file wrote its output"
printf 'not a key\n' >kbad && chmod 600 kbad
expect 1 fs pack -q --block pc.ram=ram.raw -o x.fvm --key kbad
err_has "key file kbad: not a key" "a malformed key file"
(cat k1; echo) >kshort2 && chmod 600 kshort2   # two newlines
expect 1 fs verify --key kshort2 x.fvm
err_has "key file kshort2: not a key" "a key file with two newlines"
head -c 5000 /dev/zero >kbig && chmod 600 kbig
expect 1 fs verify --key kbig x.fvm
err_has "5000 bytes, not a key" "a key file over 4096 bytes"
expect 1 fs verify --key . x.fvm
err_has "not a regular file" "a directory as key file"
expect 1 fs verify --key no-such-key x.fvm
err_has "no-such-key" "a missing key file"
ok "key files refused"

# ---- pack --key, verify, inspect
expect 0 fs pack -q --no-fsync --block pc.ram=ram.raw --block rom=rom.raw \
	--devstate dev=dev.bin -o a.fvm --key k1
expect 0 fs pack -q --no-fsync --block pc.ram=ram.raw --block rom=rom.raw \
	--devstate dev=dev.bin -o p.fvm
expect 0 fs verify --key k1 a.fvm
grep -q 'authenticated: key and MAC verified' out.log || fail "verify --key: no authenticated note"
expect 1 fs verify a.fvm
err_has "a.fvm is authenticated (key id $id1): give its key with --key FILE" "verify without key"
expect 2 fs verify --key k2 a.fvm
err_has "key id $id1, the key given has id $id2" "verify with another key"
expect 2 fs verify --key k1 p.fvm
err_has "not an authenticated snapshot" "verify --key of a plain file"
expect 0 fs verify p.fvm
cat a.fvm | fs verify --key k1 - >out.log 2>err.log
[ $? -eq 4 ] || fail "verify --key of an authenticated file on a pipe: exit $?"
err_has "stream" "an authenticated file on a pipe"
expect 1 fs pack -q --block pc.ram=ram.raw -o z.fvm --key k1 --compress zstd
err_has "cannot be compressed in this format version" "pack --key --compress zstd"
[ -e z.fvm ] && fail "pack --key --compress left an output"
expect 0 fs pack -q --no-fsync --block pc.ram=ram.raw -o n.fvm --key k1 --compress none
expect 0 fs verify -q --key k1 n.fvm

expect 0 fs inspect a.fvm
grep -q "^authenticated: yes, key id $id1; no key given" out.log ||
	fail "inspect without key: $(grep authenticated out.log)"
grep -q "AUTHENTICATED" out.log || fail "inspect names no AUTHENTICATED feature"
expect 0 fs inspect --key k1 a.fvm
grep -q "^authenticated: yes, key id $id1; key verified" out.log ||
	fail "inspect --key: $(grep authenticated out.log)"
expect 2 fs inspect --key k2 a.fvm
err_has "the key given has id $id2" "inspect with another key"
expect 0 fs inspect p.fvm
grep -q "^authenticated: no" out.log || fail "inspect of a plain file: $(grep authenticated out.log)"
for args in "a.fvm true $id1 false" "--key k1 a.fvm true $id1 true" "p.fvm false None false"; do
	set -- $args
	if [ "$1" = --key ]; then f="$1 $2 $3"; shift 3; else f=$1; shift; fi
	fs inspect --json $f >j.json 2>err.log || fail "inspect --json $f: $(cat err.log)"
	python3 - j.json "$@" <<'PY' || fail "inspect --json $f: authenticated/key_id/key_checked"
import json, sys
want_auth, want_id, want_checked = sys.argv[2] == "true", sys.argv[3], sys.argv[4] == "true"
d = json.load(open(sys.argv[1]))
ok = (d["authenticated"] is want_auth and d["key_checked"] is want_checked and
      (d["key_id"] is None if want_id == "None" else d["key_id"] == want_id) and
      ("AUTHENTICATED" in d["format"]["features"]) == want_auth)
if not ok:
    print("  |", {k: d[k] for k in ("authenticated", "key_id", "key_checked")}, d["format"]["features"])
sys.exit(0 if ok else 1)
PY
done
ok "pack --key, verify, inspect"

# ---- unpack: the raw images back, only with the key
expect 0 fs unpack -q --key k1 a.fvm -o ua
cmp -s ua/pc.ram.raw ram.raw || fail "unpack --key: pc.ram differs from the input"
cmp -s ua/rom.raw rom.raw || fail "unpack --key: rom differs from the input"
cmp -s ua/devstate-0-dev.bin dev.bin || fail "unpack --key: device state differs"
expect 1 fs unpack -q a.fvm -o ub
err_has "give its key with --key FILE" "unpack without key"
[ -e ub ] && fail "unpack without key left its directory"
expect 2 fs unpack -q --key k2 a.fvm -o ub
[ -e ub ] && fail "unpack with another key left its directory"
ok "unpack --key"

# ---- convert --key of a stream, export --key equal to the plain export
expect 0 fs convert -q --no-fsync "$CORPUS/synthetic-good.mig" -o cp.fvm
expect 0 fs convert -q --no-fsync --key k1 "$CORPUS/synthetic-good.mig" -o ca.fvm
expect 0 fs verify -q --key k1 ca.fvm
expect 1 fs verify ca.fvm
expect 1 fs convert -q "$CORPUS/synthetic-good.mig" -o cz.fvm --compress lz4 --key k1
err_has "cannot be compressed" "convert --key --compress lz4"
[ -e cz.fvm ] && fail "convert --key --compress left an output"
cat "$CORPUS/synthetic-good.mig" | fs convert -q --no-fsync --key k1 - -o cs.fvm >out.log 2>err.log ||
	fail "convert --key of a stream on a pipe: $(cat err.log)"
expect 0 fs verify -q --key k1 cs.fvm
expect 0 fs export -q cp.fvm -o cp.mig
expect 0 fs export -q --key k1 ca.fvm -o ca.mig
cmp -s cp.mig ca.mig || fail "export --key of an authenticated snapshot differs from the plain one's"
fs export -q --key k1 ca.fvm >ca2.mig 2>err.log || fail "export --key to stdout: $(cat err.log)"
cmp -s cp.mig ca2.mig || fail "export --key to stdout differs"
fs export -q --key k1 - <ca.fvm >ca3.mig 2>err.log || fail "export --key of standard input: $(cat err.log)"
cmp -s cp.mig ca3.mig || fail "export --key of standard input differs"
expect 1 fs export -q ca.fvm -o cx.mig
err_has "give its key with --key FILE" "export without key"
[ -e cx.mig ] && fail "export without key left its output"
ok "convert --key, export --key"

# ---- recompress: plain -> authenticated -> plain (--no-auth), and compressed
expect 0 fs recompress -q --no-fsync --key k1 p.fvm -o r1.fvm
expect 0 fs inspect r1.fvm
grep -q "^authenticated: yes, key id $id1" out.log || fail "recompress --key: output not authenticated"
grep -q "^compression:" out.log && fail "recompress --key compressed its output"
expect 0 fs verify -q --key k1 r1.fvm
expect 1 fs recompress -q --no-fsync r1.fvm -o r2.fvm
err_has "give its key with --key FILE" "recompress of an authenticated input without key"
expect 2 fs recompress -q --no-fsync --key k2 r1.fvm -o r2.fvm
[ -e r2.fvm ] && fail "recompress with another key left an output"
expect 1 fs recompress -q --key k1 --compress zstd p.fvm -o r2.fvm
err_has "cannot be compressed in this format version" "recompress --key --compress zstd"
expect 1 fs recompress -q --no-auth p.fvm -o r2.fvm
expect 0 fs recompress -q --no-fsync --key k1 --no-auth --compress none r1.fvm -o r2.fvm
expect 0 fs inspect r2.fvm
grep -q "^authenticated: no" out.log || fail "recompress --no-auth: output authenticated"
expect 0 fs unpack -q r2.fvm -o u2
cmp -s u2/pc.ram.raw ram.raw && cmp -s u2/rom.raw rom.raw && cmp -s u2/devstate-0-dev.bin dev.bin ||
	fail "plain -> authenticated -> plain: unpack differs from the input"
expect 0 fs unpack -q --key k1 r1.fvm -o u1
cmp -s u1/pc.ram.raw ram.raw || fail "recompress --key: unpack differs from the input"
expect 0 fs recompress -q --no-fsync --key k1 cp.fvm -o cr.fvm
expect 0 fs export -q --key k1 cr.fvm -o cr.mig
cmp -s cp.mig cr.mig || fail "export --key of a recompress --key differs from the plain export"
if fs recompress -q --no-fsync --compress zstd p.fvm -o pz.fvm 2>/dev/null; then
	expect 0 fs recompress -q --no-fsync --key k1 pz.fvm -o rz.fvm
	expect 0 fs unpack -q --key k1 rz.fvm -o uz
	cmp -s uz/pc.ram.raw ram.raw || fail "compressed -> authenticated: unpack differs"
	expect 0 fs recompress -q --no-fsync --key k1 --no-auth rz.fvm -o rz2.fvm
	fs inspect rz2.fvm | grep -q "^compression:  zstd" ||
		fail "recompress --key --no-auth did not compress by default"
fi
ok "recompress --key, --no-auth"

# ---- a tampered payload byte: verify and unpack refuse, naming it
python3 - a.fvm t.fvm <<'PY' || fail "could not make the tampered file"
import json, subprocess, sys, os
src, dst = sys.argv[1], sys.argv[2]
d = json.loads(subprocess.run([os.environ["FVMSNAP"], "inspect", "--json", "--runs", src],
                              check=True, capture_output=True).stdout)
run = max((r for r in d["runs"] if r["kind"] == "data"), key=lambda r: r["page_count"])
off = run["file_offset"] + run["page_count"] * 4096 // 2 + 123
b = bytearray(open(src, "rb").read())
b[off] ^= 0x20
open(dst, "wb").write(b)
PY
expect 0 fs inspect t.fvm     # listings are not the payload
expect 2 fs verify --key k1 t.fvm
err_has "does not verify" "verify of a tampered file"
expect 2 fs unpack -q --key k1 t.fvm -o ut
err_has "does not verify" "unpack of a tampered file"
[ -e ut ] && fail "unpack of a tampered file left $(ls -A ut | head -3)"
mkdir ut2
expect 2 fs unpack -q --key k1 t.fvm -o ut2
[ -z "$(ls -A ut2)" ] || fail "unpack of a tampered file into a directory left $(ls -A ut2 | head -3)"
# a block's name changed with its record CRC made right again (FORMAT.md R11),
# as an attacker without the key would: only the MAC can refuse it
python3 - a.fvm tm.fvm <<'PY' || fail "could not make the block-name-tampered file"
import struct, sys
def crc32c(data):
    c = 0xffffffff
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82f63b78 if c & 1 else 0)
    return c ^ 0xffffffff
assert crc32c(b"123456789") == 0xe3069283
b = bytearray(open(sys.argv[1], "rb").read())
rec = b.index(b"BLCK")                        # the first record: pc.ram's
blen = struct.unpack_from("<Q", b, rec + 8)[0]
body = rec + 16
name = b.index(b"pc.ram", body, body + blen)
b[name + 4] = ord("b")                        # pc.rbm
struct.pack_into("<I", b, rec + 4, crc32c(b[rec:rec + 4] + b[rec + 8:rec + 16] + b[body:body + blen]))
open(sys.argv[2], "wb").write(b)
PY
expect 0 fs inspect tm.fvm
grep -q "pc.rbm" out.log || fail "the block-name-tampered file does not list pc.rbm (CRC not right?)"
expect 2 fs verify --key k1 tm.fvm
err_has "does not verify" "verify of a file with a changed block name"
expect 2 fs unpack -q --key k1 tm.fvm -o um
[ -e um ] && fail "unpack of a file with a changed block name left its directory"
ok "tampered files"

# ---- bench and hot
expect 0 fs bench -n 1 --warm --no-memory --key k1 a.fvm
grep -q "authenticated: mmap loads skipped" out.log || fail "bench --key: no skip note"
grep -q "load pread" out.log || fail "bench --key: no pread load timed"
grep -q "read() 1 MiB" out.log || fail "bench --key: no reference"
# lazy loads go through userfaultfd, each page checked (or are left out
# with the library's reason where it is refused)
if grep -q "authenticated: lazy loads skipped" out.log; then
	grep -q "userfaultfd" out.log || fail "bench --key: lazy skipped without saying why"
	uffd=0
else
	grep -q "load lazy" out.log || fail "bench --key: no lazy load timed"
	uffd=1
fi
expect 1 fs bench -n 1 --warm --no-memory a.fvm
err_has "give its key with --key FILE" "bench without key"
if [ "$uffd" -eq 1 ]; then
	expect 0 fs bench -n 1 --warm --no-memory --key k1 --backend lazy --prefetch a.fvm
	grep -q "lazy+write" out.log || fail "bench --backend lazy --key: no lazy+write"
	grep -q "lazy+prefetch" out.log || fail "bench --backend lazy --key --prefetch: no prefetch"
	# the tampered payload byte: found before any timed run waits on it
	expect 2 fs bench -n 1 --warm --no-memory --key k1 --backend lazy t.fvm
	err_has "payload tag does not verify" "bench --backend lazy of a tampered file"
	err_has "not installed" "bench --backend lazy of a tampered file"
fi
expect 4 fs bench -n 1 --warm --no-memory --key k1 --backend mmap a.fvm
err_has "an authenticated snapshot cannot be mapped" "bench --backend mmap"
expect 4 fs hot --pid $$ a.fvm
err_has "is never mapped" "hot of an authenticated file"
ok "bench --key, hot"

# ---- --help of every command with --key
for c in pack convert recompress save verify unpack export inspect bench restore; do
	expect 0 fs "$c" --help
	grep -q -- "--key KEYFILE" out.log || fail "$c --help does not mention --key KEYFILE"
done
expect 0 fs keygen --help
grep -q "^Usage: fvmsnap keygen" out.log || fail "keygen --help"
expect 0 fs --help
grep -q "^  keygen " out.log || fail "fvmsnap --help does not list keygen"

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all authenticated-snapshot checks passed"
