#!/bin/sh
# Keeps bench/codecs.c from rotting: runs it on small inputs and checks what
# it reports. A synthetic 8 MiB image (fvmsnap sample) as raw and as .fvm
# must give the same table (the .fvm path loads the same non-zero pages
# through the public API); every codec must round-trip (codecs exits 1 when
# a frame differs); random pages must not shrink under any codec; a byte
# flipped after decoding (--inject-fault) must be reported.
# Usage: codecs-test.sh FVMSNAP CODECS
set -eu
fvmsnap=${1:?usage: codecs-test.sh FVMSNAP CODECS}
codecs=${2:?usage: codecs-test.sh FVMSNAP CODECS}
# Meson passes build-relative names: make them paths.
case $fvmsnap in */*) ;; *) fvmsnap=./$fvmsnap ;; esac
case $codecs in */*) ;; *) codecs=./$codecs ;; esac
fail() { echo "codecs-test: FAIL: $*" >&2; exit 1; }
t=$(mktemp -d "${TMPDIR:-/tmp}/codecs-test.XXXXXX")
trap 'rm -rf "$t"' EXIT

"$fvmsnap" sample -o "$t/img" --size 8M --seed 7 --quiet
"$fvmsnap" pack --block pc.ram="$t/img" -o "$t/img.fvm" --no-fsync --quiet

"$codecs" -q --runs 1 --sample 1 -j "$t/raw.json" "$t/img" > "$t/raw.md" ||
	fail "codecs on the raw image failed (exit $?)"
rows=$(grep -c '^| [a-z0-9]* [0-9]*\*\{0,1\} | ' "$t/raw.md" || true)
[ "$rows" = 18 ] || { cat "$t/raw.md" >&2; fail "expected 18 rows (9 codecs x 2 frame sizes), got $rows"; }
grep -q 'non-zero (' "$t/raw.md" || fail "no input summary line"
# Text-like sample pages compress: every codec's ratio is above 1.
awk -F'|' '/^\| [a-z0-9]+ [0-9]/ && $4 + 0 <= 1.0 { bad = 1; print } END { exit bad }' "$t/raw.md" ||
	fail "a codec did not compress the sample image"
if command -v python3 >/dev/null 2>&1; then
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert len(d["results"]) == 18, d' \
		"$t/raw.json" || fail "JSON output unreadable or incomplete"
fi

"$codecs" -q --runs 1 --sample 1 "$t/img.fvm" > "$t/fvm.md" ||
	fail "codecs on the .fvm snapshot failed (exit $?)"
# Same pages, same frames: ratio and non-shrinking columns agree.
cut -d'|' -f2,3,4,7 "$t/raw.md" | grep '^ [a-z]' > "$t/raw.cols"
cut -d'|' -f2,3,4,7 "$t/fvm.md" | grep '^ [a-z]' > "$t/fvm.cols"
cmp -s "$t/raw.cols" "$t/fvm.cols" || { diff "$t/raw.cols" "$t/fvm.cols" >&2; fail ".fvm and raw image differ"; }

# Random pages: no frame shrinks, ratio exactly 1.
head -c 2097152 /dev/urandom > "$t/rand"
"$codecs" -q --runs 1 --sample 1 --frame 256K "$t/rand" > "$t/rand.md" ||
	fail "codecs on random data failed (exit $?)"
awk -F'|' '/^\| [a-z0-9]+ [0-9]/ && ($4 + 0 != 1 || $7 !~ /100.0%/) { bad = 1; print } END { exit bad }' "$t/rand.md" ||
	fail "random data shrank or was not all stored raw"

rc=0
"$codecs" -q --runs 1 --codec lz4 --inject-fault "$t/img" > /dev/null 2> "$t/fault.err" || rc=$?
[ $rc = 1 ] || fail "--inject-fault: exit $rc, expected 1"
grep -q 'does not round-trip' "$t/fault.err" || fail "--inject-fault: no round-trip message"

# Bad input: an all-zero image is refused with a message naming it.
head -c 65536 /dev/zero > "$t/zero"
rc=0
"$codecs" -q "$t/zero" > /dev/null 2> "$t/zero.err" || rc=$?
[ $rc = 1 ] && grep -q "$t/zero" "$t/zero.err" || fail "all-zero image: exit $rc, $(cat "$t/zero.err")"
echo "codecs-test: ok"
