#!/bin/bash
# fvmsnap save against a stock QEMU without a guest (issue 10): its RAM is a
# shared file of known data, so every snapshot is checked against that file.
# - the output path is never shell: a path with $(touch PWNED), spaces and
#   quotes saves, and no PWNED appears (QEMU gets a pipe by getfd, not
#   "exec:cat > PATH");
# - no temporary stream beside the output after a save;
# - a VM that a save left stopped (QEMU: postmigrate) saves again, twice,
#   and stays stopped; the brief run that takes is said; a running VM
#   saved (resumed after), saved with --stop, then saved again;
# - SIGTERM at several points of a save of a running VM: exit 130
#   "interrupted by SIGTERM" and the older file kept byte for byte, or a
#   whole new snapshot; never a temporary left, and the VM runs again.
# With FVM_SAVE_QEMU10=1 the same with QEMU 10.0 from the cache of the
# qemu suite (FVM_QEMU_CACHE, else BUILD/qemu-cache; tests/qemu/lib.sh).
# Usage: save.sh FVMSNAP. Exit 77 without qemu-system-x86_64 (or that
# QEMU 10.0) or socat.
set -u
# shellcheck source=tests/cli-lib.sh
. "$(dirname "$(realpath "$0")")/cli-lib.sh"

FVMSNAP=$(realpath "$1")
QEMU=qemu-system-x86_64
QEMU_L=
if [ "${FVM_SAVE_QEMU10:-0}" = 1 ]; then
	cache=${FVM_QEMU_CACHE:-$(dirname "$(dirname "$FVMSNAP")")/qemu-cache}
	QEMU=$cache/qemu10/usr/bin/qemu-system-x86_64
	QEMU_L="-L $cache/qemu10/usr/share/qemu -L /usr/share/seabios"
fi
for p in "$QEMU" socat; do
	if ! command -v "$p" >/dev/null 2>&1; then
		echo "SKIP: $p not installed"
		exit 77
	fi
done
"$QEMU" --version | head -n 1
W=$(mktemp -d "${TMPDIR:-/tmp}/save-test.XXXXXX")
QPID=
cleanup() {
	[ -n "$QPID" ] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
cd "$W" || exit 1
export FVM_TEST=1

# qemu_start RAMFILE SIZE [-S]: a QEMU whose RAM is RAMFILE (shared)
qemu_start() {
	rm -f qmp.sock
	# shellcheck disable=SC2086 # QEMU_L is words
	"$QEMU" $QEMU_L -nodefaults -M pc -m "$2" ${3:-} -display none \
		-object memory-backend-file,id=pc.ram,mem-path="$1",share=on,size="$2" \
		-machine memory-backend=pc.ram -qmp unix:"$W/qmp.sock",server=on,wait=off \
		>qemu.log 2>&1 &
	QPID=$!
	for _ in $(seq 100); do [ -S qmp.sock ] && return 0; sleep 0.1; done
	echo "FAIL: QEMU did not start: $(cat qemu.log)"
	exit 1
}
qemu_stop() {
	kill "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	QPID=
}
qmp() {
	printf '{"execute":"qmp_capabilities"}\n%s\n' "$1" |
		socat -t5 - UNIX-CONNECT:"$W/qmp.sock" | sed -n '3p'
}
status() { qmp '{"execute":"query-status"}' | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p'; }

# same_ram SNAP RAMFILE: the snapshot's pc.ram is the file
same_ram() {
	rm -rf un
	"$FVMSNAP" unpack -q "$1" -o un 2>err.log || { fail "unpack $1: $(cat err.log)"; return; }
	cmp -s un/pc.ram.raw "$2" || fail "$1: pc.ram differs from $2"
}

# only DIR NAME...: DIR holds exactly these names (no temporary)
only() {
	local dir=$1 want got
	shift
	want=$(printf '%s\n' "$@" | sort)
	got=$(ls -A "$dir" | sort)
	[ "$got" = "$want" ] || fail "$dir holds: $(ls -A "$dir" | tr '\n' ' ') (expected: $*)"
}

"$FVMSNAP" sample -q -o ram.img --size 64M --seed 7 --nonzero-share 0.5 || exit 1

# ---- a path that would be shell, of a paused VM
qemu_start ram.img 64M -S
mkdir "out dir"
out="out dir/x \$(touch PWNED) y.fvm"
"$FVMSNAP" save -q --qmp qmp.sock -o "$out" 2>err.log || fail "save to a path with shell characters: $(cat err.log)"
[ -z "$(find . -name 'PWNED*')" ] || fail "the output path was run as shell: $(find . -name 'PWNED*')"
[ -e "$out" ] || fail "no output at $out"
"$FVMSNAP" verify -q "$out" 2>err.log || fail "verify of the save: $(cat err.log)"
same_ram "$out" ram.img
only "out dir" "$(basename "$out")"
echo "ok: saved to $out, no PWNED"
[ "$(status)" = postmigrate ] || fail "after a save of a paused VM: status $(status)"

# ---- a second save of the stopped VM: works, and it stays stopped; into a
# path with quotes and backquotes (neither shell nor JSON)
out2="out dir/\`touch PWNED2\`; 'q\" y.fvm"
"$FVMSNAP" save --qmp qmp.sock -o "$out2" 2>err.log ||
	fail "second save of a paused VM: $(cat err.log)"
[ -z "$(find . -name 'PWNED*')" ] || fail "the output path was run as shell: $(find . -name 'PWNED*')"
grep -q "stopped by an earlier migration (postmigrate): ran it for .* ms" err.log ||
	fail "second save: the run is not said: $(cat err.log)"
grep -q "VM stopped$" err.log || fail "second save: $(cat err.log)"
case "$(status)" in postmigrate | paused) ;; *) fail "after the second save: status $(status)" ;; esac
same_ram "$out2" ram.img
"$FVMSNAP" save -q --qmp qmp.sock -o "out dir/third.fvm" 2>err.log ||
	fail "third save of a paused VM: $(cat err.log)"
only "out dir" "$(basename "$out")" "$(basename "$out2")" third.fvm
echo "ok: a paused VM saved three times"
qemu_stop

# ---- a running VM: save resumes it; --stop, then save again
qemu_start ram.img 64M
[ "$(status)" = running ] || fail "QEMU without -S: status $(status)"
"$FVMSNAP" save -q --qmp qmp.sock -o run1.fvm 2>err.log || fail "save of a running VM: $(cat err.log)"
[ "$(status)" = running ] || fail "after save: status $(status)"
"$FVMSNAP" save -q --stop --qmp qmp.sock -o run2.fvm 2>err.log || fail "save --stop: $(cat err.log)"
[ "$(status)" = postmigrate ] || fail "after save --stop: status $(status)"
same_ram run2.fvm ram.img
"$FVMSNAP" save -q --qmp qmp.sock -o run3.fvm 2>err.log || fail "save after save --stop: $(cat err.log)"
case "$(status)" in postmigrate | paused) ;; *) fail "after a save of a stopped VM: status $(status)" ;; esac
same_ram run3.fvm ram.img
echo "ok: a running VM saved, saved with --stop, saved again"
qemu_stop

# ---- SIGTERM during a save of a running VM over an older snapshot: 512 MiB
# of RAM, half of it data, take long enough to be interrupted at several
# points; the VM runs again after each
"$FVMSNAP" sample -q -o big.img --size 512M --seed 9 --nonzero-share 0.5 || exit 1
cp run1.fvm old.fvm
qemu_start big.img 512M
mkdir kill
interrupted=0 completed=0
for delay in 0.05 0.1 0.2 0.3 0.5 0.8; do
	cp old.fvm kill/s.fvm
	"$FVMSNAP" save -q --qmp qmp.sock -o kill/s.fvm 2>err.log &
	pid=$!
	catching "$pid" || fail "fvmsnap save never caught SIGTERM"
	sleep "$delay"
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
	rc=$?
	only kill s.fvm
	if [ $rc -eq 130 ]; then
		grep -qx "fvmsnap save: kill/s.fvm: interrupted by SIGTERM" err.log ||
			fail "SIGTERM after $delay s: $(cat err.log)"
		cmp -s old.fvm kill/s.fvm || fail "SIGTERM after $delay s: the older file was changed"
		interrupted=$((interrupted + 1))
	elif [ $rc -eq 0 ]; then
		"$FVMSNAP" verify -q kill/s.fvm 2>err.log || fail "SIGTERM after $delay s, exit 0: $(cat err.log)"
		completed=$((completed + 1))
	else
		fail "SIGTERM after $delay s: exit $rc: $(cat err.log)"
	fi
	[ "$(status)" = running ] || fail "after SIGTERM after $delay s: status $(status)"
done
echo "ok: SIGTERM: $interrupted saves interrupted, $completed completed"
[ $interrupted -gt 0 ] || fail "no save was interrupted by SIGTERM (too fast here?)"
# and the VM is still there, and saves
"$FVMSNAP" save -q --stop --qmp qmp.sock -o kill/s.fvm 2>err.log || fail "save after the SIGTERMs: $(cat err.log)"
same_ram kill/s.fvm big.img
only kill s.fvm
qemu_stop

[ "$fails" -eq 0 ] || exit 1
echo "all save checks passed"
