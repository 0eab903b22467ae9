#!/bin/bash
# fvmsnap clean (issue 10): temporaries made by hand as killed writers leave
# them (.NAME.XXXXXX beside the target). Only the stale ones of ours go:
# with the snapshot or QEMU stream magic, or empty, held by no process, not
# changed for --min-age seconds. Kept: one held open by a live sleep, one
# only mapped by a live process, one with the pattern but other content,
# .notours.txt, a symlink with the pattern, a directory with it; --dry-run
# removes nothing; FILE cleans only that target's temporaries; -q lists
# nothing; a missing directory is an error naming it.
# Usage: clean.sh FVMSNAP
set -u
. "$(dirname "$(realpath "$0")")/cli-lib.sh"

FVMSNAP=$(realpath "$1")
if ! command -v python3 >/dev/null; then
	echo "SKIP: python3 not found (it maps a file for one case)"
	exit 77
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/clean-test.XXXXXX")
PIDS=
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
cd "$W" || exit 1
export FVM_TEST=1


# has NAME...: d holds exactly these names
has() {
	local want got
	want=$(printf '%s\n' "$@" | sort)
	got=$(ls -A d | sort)
	[ "$got" = "$want" ] || fail "d holds: $(echo $got) (expected: $*)"
}

mkdir d
"$FVMSNAP" sample -q -o ram.img --size 1M --seed 1 || exit 1
"$FVMSNAP" pack -q --block pc.ram=ram.img -o snap.fvm || exit 1
# a whole snapshot under a temporary's name (killed before its rename)
cp snap.fvm d/.vm.fvm.Ab3dEf
# a QEMU stream's start (export -o vm.mig killed), and an empty one
printf 'QEVM\0\0\0\3' > d/.vm.mig.Xy12AB
: > d/.other.fvm.Pp00Qq
# held open by a live process
cp snap.fvm d/.busy.fvm.Qw3rTy
sleep 300 3<d/.busy.fvm.Qw3rTy &
PIDS="$PIDS $!"
# mapped by a live process that closed its descriptor
cp snap.fvm d/.mapped.fvm.Mm12mm
# (mmap(2) itself: Python's mmap module keeps a descriptor of its own)
python3 -c "
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDONLY)
addr = libc.mmap(None, 4096, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
os.close(fd)
if addr in (None, ctypes.c_void_p(-1).value):
    sys.exit('mmap failed')
print('mapped', flush=True)
time.sleep(300)" d/.mapped.fvm.Mm12mm > mapped.log &
PIDS="$PIDS $!"
# the pattern, not our content; not the pattern; not regular files
echo hello > d/.notes.txt.Zx9cVb
cp snap.fvm d/.notours.txt
cp snap.fvm d/.short.fvm.abc
ln -s ../snap.fvm d/.link.fvm.Ln12Ln
mkdir d/.dir.fvm.Dr12Dr
for _ in $(seq 50); do grep -q mapped mapped.log && break; sleep 0.1; done
grep -q mapped mapped.log || fail "the mapping process did not start"
all=(.vm.fvm.Ab3dEf .vm.mig.Xy12AB .other.fvm.Pp00Qq .busy.fvm.Qw3rTy .mapped.fvm.Mm12mm
	.notes.txt.Zx9cVb .notours.txt .short.fvm.abc .link.fvm.Ln12Ln .dir.fvm.Dr12Dr)

# all were just made: the default --min-age keeps them
expect 0 "$FVMSNAP" clean d
has "${all[@]}"
grep -q "^kept d/.vm.fvm.Ab3dEf (.*): changed less than 60 s ago$" out.log ||
	fail "fresh temporary not said kept: $(cat out.log)"

# --dry-run lists the stale ones with size and age, removes nothing
expect 0 "$FVMSNAP" clean --dry-run --min-age 0 d
has "${all[@]}"
size=$(stat -c %s snap.fvm)
grep -q "^stale d/.vm.fvm.Ab3dEf (.* [KM]iB, [0-9]* s old)$" out.log ||
	fail "dry run: no size and age for .vm.fvm.Ab3dEf ($size bytes): $(cat out.log)"
grep -q "^stale d/.vm.mig.Xy12AB (8 B, " out.log || fail "dry run: QEVM one: $(cat out.log)"
grep -q "^stale d/.other.fvm.Pp00Qq (0 B, " out.log || fail "dry run: empty one: $(cat out.log)"
grep -q "^kept d/.busy.fvm.Qw3rTy (.*): open in process [0-9]*$" out.log ||
	fail "dry run: held one: $(cat out.log)"
grep -q "^kept d/.mapped.fvm.Mm12mm (.*): mapped by process [0-9]*$" out.log ||
	fail "dry run: mapped one: $(cat out.log)"
grep -q "^would remove 3 stale temporaries (.*) of 5 found$" out.log ||
	fail "dry run summary: $(cat out.log)"
grep -Eq 'notes|notours|short|link|dir\.fvm' out.log && fail "dry run lists foreign files: $(cat out.log)"

# the real run: only the three stale ones go
expect 0 "$FVMSNAP" clean --min-age 0 d
has .busy.fvm.Qw3rTy .mapped.fvm.Mm12mm .notes.txt.Zx9cVb .notours.txt .short.fvm.abc \
	.link.fvm.Ln12Ln .dir.fvm.Dr12Dr
grep -q "^removed d/.vm.fvm.Ab3dEf (" out.log || fail "removal not listed: $(cat out.log)"
grep -q "^removed 3 stale temporaries" out.log || fail "summary: $(cat out.log)"
[ -e snap.fvm ] || fail "the symlink's target was removed"

# once the holders are gone, they are stale too
for p in $PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
PIDS=
expect 0 "$FVMSNAP" clean -q --min-age 0 d
[ -s out.log ] && fail "-q printed: $(cat out.log)"
has .notes.txt.Zx9cVb .notours.txt .short.fvm.abc .link.fvm.Ln12Ln .dir.fvm.Dr12Dr

# FILE: only that target's temporaries (the target need not exist)
cp snap.fvm d/.a.fvm.AAAAAA
cp snap.fvm d/.a.fvm.BBBBB1
cp snap.fvm d/.b.fvm.CCCCCC
cp snap.fvm d/.a.fvm.x.DDDDDD
expect 0 "$FVMSNAP" clean --min-age 0 d/a.fvm
[ -e d/.a.fvm.AAAAAA ] || [ -e d/.a.fvm.BBBBB1 ] && fail "FILE: the target's temporaries kept: $(ls -A d)"
[ -e d/.b.fvm.CCCCCC ] && [ -e d/.a.fvm.x.DDDDDD ] || fail "FILE: another target's removed: $(ls -A d)"
(cd d && "$FVMSNAP" clean -q --min-age 0 b.fvm) || fail "FILE without a directory"
[ -e d/.b.fvm.CCCCCC ] && fail "FILE without a directory: kept"

# errors name the path; exit non-zero, the other operands still done
cp snap.fvm d/.c.fvm.CCCCCC
expect 3 "$FVMSNAP" clean --min-age 0 nodir/x.fvm d
grep -qx "fvmsnap clean: nodir: No such file or directory" err.log || fail "missing directory: $(cat err.log)"
[ -e d/.c.fvm.CCCCCC ] && fail "the operand after an error was not cleaned"
expect 1 "$FVMSNAP" clean
grep -q "no directory or file given" err.log || fail "no operand: $(cat err.log)"
expect 1 "$FVMSNAP" clean --min-age x d
expect 0 "$FVMSNAP" clean --help
grep -q "Usage: fvmsnap clean" out.log || fail "--help: $(cat out.log)"

[ "$fails" -eq 0 ] || exit 1
echo "all clean checks passed"
