#!/bin/bash
# SIGKILL during fvmsnap save (issue 10, doc/RELIABILITY.md): a stock QEMU
# (no guest: SeaBIOS only, so no kernel cache is needed) whose 256 MiB of
# RAM is a shared file backend prefilled with sample data, saved over QMP
# onto a path that holds an older snapshot, killed at FVM_KILLS (12) random
# points drawn over 1.5 times the time a clean save takes. Afterwards the path holds
# the old file byte for byte or a whole new one (fvmsnap verify), and
# nothing is left beside it (save streams through a pipe and writes an
# unnamed file until it links it). Between kills the VM is
# resumed over QMP ("cont": a killed save leaves it stopped) once QEMU has
# finished the migration it was given, and the x-ignore-shared capability
# a killed save leaves set is reported.
#
# Usage: kill-save.sh FVMSNAP   (exit 77 without qemu-system-x86_64 or python3)
set -u

FVMSNAP=$(realpath "$1")
KILLS=${FVM_KILLS:-12}
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || { echo "SKIP: $QEMU not installed"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 needed (QMP)"; exit 77; }
"$FVMSNAP" save --help >/dev/null 2>&1 || { echo "SKIP: no fvmsnap save"; exit 77; }
W=$(mktemp -d "${TMPDIR:-/tmp}/fvm-kill-save.XXXXXX")
QPID=
cleanup() {
	[ -n "$QPID" ] && kill -KILL "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
cd "$W" || exit 1
export FVM_TEST=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fs() { "$FVMSNAP" "$@"; }
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

# qmp EXECUTE [ARGS-JSON]: one QMP command on its own connection; prints
# the "return" value as JSON (exit 1 on an error reply)
qmp() {
	python3 - "$W/qmp.sock" "$@" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(c, a=None):
    m = {"execute": c}
    if a:
        m["arguments"] = json.loads(a)
    f.write(json.dumps(m) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # greeting
cmd("qmp_capabilities")
r = cmd(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
print(json.dumps(r.get("return", r.get("error"))))
sys.exit(0 if "return" in r else 1)
PY
}

# resume: wait out QEMU's migration, then cont (a killed save left it stopped)
resume() {
	local i st
	for i in $(seq 1 100); do
		st=$(qmp query-migrate) || return 1
		case $st in *'"active"'*|*'"setup"'*|*'"device"'*) sleep 0.1 ;; *) break ;; esac
	done
	qmp cont >/dev/null || true
}

fs sample -q -o ram.img --size 256M --seed 51 --nonzero-share 0.5 || exit 1
fs sample -q -o old.img --size 4M --seed 52 || exit 1
fs pack -q --no-fsync --block pc.ram=old.img -o old.fvm || exit 1
"$QEMU" -nodefaults -M pc,memory-backend=pc.ram -m 256M \
	-object memory-backend-file,id=pc.ram,size=256M,mem-path="$W/ram.img",share=on \
	-display none -qmp unix:"$W/qmp.sock",server=on,wait=off >qemu.log 2>&1 &
QPID=$!
for i in $(seq 1 100); do
	[ -S qmp.sock ] && break
	sleep 0.1
done
[ -S qmp.sock ] || { cat qemu.log; fail "QEMU has no QMP socket"; exit 1; }

clean=
for i in 1 2 3; do
	cp old.fvm out.fvm
	t0=$(now_ms)
	fs save -q --qmp "$W/qmp.sock" -o out.fvm 2>err.log || { cat err.log; fail "clean save failed"; exit 1; }
	t1=$(now_ms)
	[ -z "$clean" ] || [ $((t1 - t0)) -lt "$clean" ] && clean=$((t1 - t0))
done
fs verify -q out.fvm || fail "a clean save does not verify"
echo "save: a clean run takes $clean ms, writes $(stat -c %s out.fvm) bytes"

olds=0 news=0 late=0 capleft=0
for ((i = 1; i <= KILLS; i++)); do
	resume
	cp old.fvm out.fvm
	d=$((RANDOM % (clean * 3 / 2 + 1))) # past the end too: the commit comes last
	t0=$(now_ms)
	fs save -q --qmp "$W/qmp.sock" -o out.fvm >/dev/null 2>&1 &
	pid=$!
	sleep "$(printf '%d.%03d' $((d / 1000)) $((d % 1000)))"
	{
		kill -KILL $pid
		t1=$(now_ms)
		wait $pid
	} 2>/dev/null
	[ $? -eq 137 ] || late=$((late + 1))
	d=$((t1 - t0))
	if cmp -s out.fvm old.fvm; then
		got=old
		olds=$((olds + 1))
	elif fs verify -q out.fvm >/dev/null 2>&1; then
		got=new
		news=$((news + 1))
	else
		got=BROKEN
		fail "save killed at $d ms: out.fvm is neither the old nor a whole new file"
	fi
	left=$(ls -A | grep -v -x -e ram.img -e old.img -e old.fvm -e out.fvm -e qmp.sock \
		-e qemu.log -e err.log)
	# save streams QEMU's state through a pipe (no temporary stream file)
	# and the writer's file is unnamed until it is linked: nothing is left
	[ -z "$left" ] || fail "save killed at $d ms: left $left"
	if qmp query-migrate-capabilities | grep -q '"capability": "x-ignore-shared", "state": true'; then
		capleft=$((capleft + 1))
		got="$got, x-ignore-shared left on"
		qmp migrate-set-capabilities \
			'{"capabilities": [{"capability": "x-ignore-shared", "state": false}]}' >/dev/null
	fi
	echo "  kill $i at $d ms of $clean: $got"
done
echo "save: $KILLS kills: $olds old, $news new, $late after the end, x-ignore-shared left on $capleft times"
# QEMU still saves after all that
resume
fs save -q --qmp "$W/qmp.sock" -o out.fvm 2>err.log && fs verify -q out.fvm ||
	fail "save after the kills: $(cat err.log)"

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all save kill checks passed"
