#!/bin/bash
# fvmsnap hot and recompress --hot without QEMU: tests/lazy_toucher maps a
# snapshot lazily and reads a few pages; hot --pid must list exactly the
# data pages it read; recompress --hot must put them first in the file and
# keep every byte (unpack compares). The real-QEMU version is in
# tests/qemu/s8-hook.sh.
# usage: hot.sh FVMSNAP LAZY_TOUCHER
set -u
FVMSNAP=$(realpath "$1")
TOUCH=$(realpath "$2")
T=$(mktemp -d /var/tmp/fvm-hot.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
cd "$T" || exit 1

# pages 0-255 data, 256-511 zero, 512-1023 data (fill from /dev/urandom)
head -c $((256 * 4096)) /dev/urandom >ram.img
head -c $((256 * 4096)) /dev/zero >>ram.img
head -c $((512 * 4096)) /dev/urandom >>ram.img
"$FVMSNAP" pack -q --no-fsync --max-run 64K --block pc.ram=ram.img -o s.fvm || fail pack

# the toucher reads pages 3 4 5 700 300 (300 is a zero page: no file page)
coproc TOUCHER { exec "$TOUCH" s.fvm pc.ram 3 4 5 700 300; }
tpid=$TOUCHER_PID # bash unsets TOUCHER_PID when the coprocess ends
read -r -t 20 line <&"${TOUCHER[0]}" || fail "lazy_toucher did not start"
case $line in ready*) ;; *) fail "lazy_toucher: $line" ;; esac
"$FVMSNAP" hot --pid "$tpid" s.fvm -o hot.txt 2>hot.err || fail "hot: $(cat hot.err)"
kill "$tpid" 2>/dev/null
wait "$tpid" 2>/dev/null
# The pages read are listed; the kernel maps a read page's cached neighbours
# with it (fault-around, 64 KiB), so those may be too; zero pages never.
python3 - hot.txt <<'PY' || fail "hot listed the wrong pages: $(cat hot.txt)"
pages = set()
for l in open(__import__("sys").argv[1]):
    b, f, c = l.split()
    assert b == "pc.ram", l
    pages |= set(range(int(f), int(f) + int(c)))
assert {3, 4, 5, 700} <= pages, sorted(pages)
assert not pages & set(range(256, 512)), "a zero page"
assert len(pages) <= 4 * 32, len(pages)
PY
grep -qE "^hot: [0-9]+ of 768 data pages of s.fvm touched by process $tpid" hot.err ||
	fail "hot summary: $(cat hot.err)"

# errors: no such process, a snapshot the process does not map
"$FVMSNAP" hot --pid 999999999 s.fvm 2>err.txt && fail "hot of a missing process succeeded"
"$FVMSNAP" hot --pid $$ s.fvm 2>err.txt && fail "hot of a process without a mapping succeeded"
grep -q "has no mapping of it" err.txt || fail "hot: $(cat err.txt)"

# recompress --hot: those pages first, same bytes
"$FVMSNAP" recompress -q --no-fsync s.fvm -o h.fvm --compress none --hot hot.txt || fail recompress
"$FVMSNAP" verify -q h.fvm || fail "verify h.fvm"
"$FVMSNAP" unpack -q h.fvm -o out || fail unpack
cmp -s out/pc.ram.raw ram.img || fail "recompress --hot changed the pages"
"$FVMSNAP" inspect --json --runs h.fvm | python3 -c '
import json, sys
hot = []
for l in open("hot.txt"):
    b, f, c = l.split()
    hot.append((int(f), int(c)))
j = json.load(sys.stdin)
runs = sorted((r for r in j["runs"] if r["kind"] == "data"), key=lambda r: r["file_offset"])
first, n = [], sum(c for _, c in hot)
for r in runs:
    if n <= 0:
        break
    first.append((r["first_page"], r["page_count"]))
    n -= r["page_count"]
# the hot ranges, cut where the writer cut its runs (--max-run 64K here)
got = set(p for f, c in first for p in range(f, f + c))
want = set(p for f, c in hot for p in range(f, f + c))
assert got == want, (sorted(got - want)[:5], sorted(want - got)[:5])
' || fail "the working set is not first in the file"
printf 'pc.ram 2000 1\n' >bad.txt
"$FVMSNAP" recompress -q s.fvm -o x.fvm --hot bad.txt 2>err.txt && fail "--hot outside the block accepted"
grep -q "line 1" err.txt || fail "--hot bad line: $(cat err.txt)"
[ -e x.fvm ] && fail "a refused recompress left x.fvm"
echo "hot: ok"
