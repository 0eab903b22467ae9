# Shell library for the real-QEMU integration tests (sourced by bash).
#
# Owns: booting the test guest under TCG, waiting for serial output,
# talking HMP over the unix monitor socket, pmemsave, and tearing down every
# QEMU a script started (EXIT trap), with every wait bounded by a timeout.
#
# Environment:
#   FVM_QEMU_CACHE  guest kernel/initramfs cache (default BUILD/qemu-cache)
#   FVM_BUILD_DIR   meson build dir (default: two levels above fvmsnap)
#   FVM_QEMU        qemu-system-x86_64 to use (default: from PATH)
#   FVM_QEMU_L      extra "-L DIR" firmware paths (set by use_qemu10)
#   FVM_KEEP        keep the work directory when set to 1
# Scripts call fvm_init "$name" "$@" first; it sets WORK, FVMSNAP, CACHE.

set -u
set -o pipefail

FVM_QEMU=${FVM_QEMU:-qemu-system-x86_64}
FVM_QEMU_L=${FVM_QEMU_L:-}
QEMU_PIDS=()
VM_DIRS=()
RESTORE_DIRS=()
SKIP=77
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '[%s %4ds] %s\n' "${TEST_NAME:-qemu}" "$SECONDS" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
skip() { log "SKIP: $*"; exit $SKIP; }

# Every QEMU a script started is told to quit, then killed by its own pid.
fvm_cleanup() {
	local rc=$? i pid
	for i in "${!QEMU_PIDS[@]}"; do
		pid=${QEMU_PIDS[$i]}
		kill -0 "$pid" 2>/dev/null || continue
		hmp_raw "${VM_DIRS[$i]}/mon.sock" quit 3 >/dev/null 2>&1 || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -TERM "$pid" 2>/dev/null && sleep 0.5
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for i in "${RESTORE_DIRS[@]}"; do
		case "$i" in */fvmsnap-restore-*) rm -rf "$i" ;; esac
	done
	if [ "$rc" -eq 0 ] || [ "$rc" -eq $SKIP ]; then
		[ "${FVM_KEEP:-0}" = 1 ] || rm -rf "${WORK:-/nonexistent}"
	else
		log "work directory kept: ${WORK:-}"
	fi
	exit "$rc"
}

# fvm_init NAME [FVMSNAP]: checks tools, builds/caches the guest, makes WORK.
fvm_init() {
	TEST_NAME=$1
	FVMSNAP=${2:-}
	local t
	for t in "$FVM_QEMU" qemu-img socat; do
		command -v "$t" >/dev/null 2>&1 || skip "$t not installed (apt-get install qemu-system-x86 qemu-utils socat)"
	done
	if [ -n "$FVMSNAP" ]; then
		FVMSNAP=$(cd "$(dirname "$FVMSNAP")" && pwd)/$(basename "$FVMSNAP")
		[ -x "$FVMSNAP" ] || FVMSNAP=""
	fi
	if [ -z "${FVM_BUILD_DIR:-}" ]; then
		if [ -n "$FVMSNAP" ]; then
			FVM_BUILD_DIR=$(cd "$(dirname "$FVMSNAP")/.." && pwd)
		else
			FVM_BUILD_DIR=$(pwd)
		fi
	fi
	CACHE=${FVM_QEMU_CACHE:-$FVM_BUILD_DIR/qemu-cache}
	"$HERE/build-guest.sh" "$CACHE" >/dev/null
	local rc=$?
	[ $rc -eq $SKIP ] && skip "cannot build the guest (see above)"
	[ $rc -eq 0 ] || die "build-guest.sh failed ($rc)"
	CACHE=$(cd "$CACHE" && pwd)
	mkdir -p "$FVM_BUILD_DIR/qemu-work"
	WORK=$(mktemp -d "$FVM_BUILD_DIR/qemu-work/$TEST_NAME.XXXXXX")
	# HMP has no nested quoting: "exec:cat > PATH" needs a path without
	# blanks or quotes.
	case "$WORK" in *[[:space:]\"\']*) die "work dir '$WORK' has blanks or quotes" ;; esac
	trap fvm_cleanup EXIT
	trap 'exit 130' INT TERM
	log "work dir $WORK, qemu $("$FVM_QEMU" --version | head -n 1)"
}

# Fails the scenario when fvmsnap is not built yet, after the stock controls
# of the scenario ran: the script exits 77 so the suite says what is missing.
need_fvmsnap() {
	[ -n "$FVMSNAP" ] || skip "stock controls passed; fvmsnap not built, round trip not tested"
}

# Subcommand probe: a scenario whose fvmsnap lacks a subcommand skips loudly.
need_sub() {
	"$FVMSNAP" "$1" --help >/dev/null 2>&1 ||
		skip "stock controls passed; 'fvmsnap $1' not available yet"
}

# ---- HMP --------------------------------------------------------------------

# hmp_raw SOCK CMD [TIMEOUT]: run one HMP command and print its output (ANSI
# echo removed). Completion is detected by a marker: an unknown command sent
# after CMD, whose error line HMP prints only once CMD has finished (HMP runs
# commands in order, and savevm/pmemsave block the monitor until done).
hmp_raw() {
	local sock=$1 cmd=$2 tmo=${3:-60} line out="" deadline ok=0
	local marker="fvm_marker_$$_$RANDOM"
	[ -S "$sock" ] || return 1
	coproc HMPC { exec socat - UNIX-CONNECT:"$sock" 2>/dev/null; }
	local cpid=$HMPC_PID
	printf '%s\n%s\n' "$cmd" "$marker" >&"${HMPC[1]}"
	deadline=$((SECONDS + tmo))
	while [ $SECONDS -lt $deadline ]; do
		IFS= read -r -t $((deadline - SECONDS)) line <&"${HMPC[0]}" || break
		line=$(printf '%s' "$line" | sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r//g')
		case "$line" in
		*"unknown command: '$marker'"*) ok=1; break ;;
		"(qemu) "*|"QEMU "*" monitor - type"*) ;;
		*) out+="$line"$'\n' ;;
		esac
	done
	kill "$cpid" 2>/dev/null
	wait "$cpid" 2>/dev/null
	printf '%s' "$out"
	[ $ok = 1 ]
}

# hmp VM CMD [TIMEOUT]: as hmp_raw on VM's monitor; dies on timeout.
hmp() {
	local vm=$1 cmd=$2 tmo=${3:-60}
	hmp_raw "$vm/mon.sock" "$cmd" "$tmo" || die "HMP '$cmd' on $(basename "$vm") timed out after ${tmo}s"
}

# ---- VMs --------------------------------------------------------------------

# vm_start VMDIR [qemu args...]: starts QEMU (TCG, 512 MiB, no defaults, serial
# to VMDIR/serial.log, HMP on VMDIR/mon.sock) with the guest kernel. A
# restoring QEMU gets -kernel too: it adds the linuxboot option ROM, a RAM
# block the incoming stream names. Machine options, drives and -incoming/-S
# go in the extra args.
vm_start() {
	local vm=$1; shift
	mkdir -p "$vm"
	rm -f "$vm/serial.log" "$vm/mon.sock" "$vm/qemu.pid"
	# shellcheck disable=SC2086
	"$FVM_QEMU" $FVM_QEMU_L -accel tcg -m "${FVM_GUEST_MEM:-512M}" -nodefaults -nographic \
		-serial file:"$vm/serial.log" \
		-monitor unix:"$vm/mon.sock",server,nowait \
		-kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1" -no-reboot \
		-pidfile "$vm/qemu.pid" "$@" >"$vm/qemu.out" 2>&1 &
	local pid=$!
	QEMU_PIDS+=("$pid")
	VM_DIRS+=("$vm")
	local i
	for i in $(seq 1 100); do
		[ -S "$vm/mon.sock" ] && return 0
		kill -0 "$pid" 2>/dev/null || { cat "$vm/qemu.out" >&2; die "QEMU for $(basename "$vm") exited at start"; }
		sleep 0.1
	done
	die "QEMU for $(basename "$vm") has no monitor socket after 10 s"
}

# vm_pid VM: the QEMU last started in VM's directory.
vm_pid() {
	local vm=$1 i pid=""
	for i in "${!VM_DIRS[@]}"; do
		[ "${VM_DIRS[$i]}" = "$vm" ] && pid=${QEMU_PIDS[$i]}
	done
	[ -n "$pid" ] && echo "$pid"
}

# vm_quit VM: quit and reap one QEMU (bounded).
vm_quit() {
	local vm=$1 pid i
	pid=$(vm_pid "$vm") || return 0
	hmp_raw "$vm/mon.sock" quit 5 >/dev/null 2>&1 || true
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# wait_serial VM REGEX [TIMEOUT]: waits until the serial log has a line
# matching REGEX (grep -E).
wait_serial() {
	local vm=$1 re=$2 tmo=${3:-120} deadline
	deadline=$((SECONDS + tmo))
	while [ $SECONDS -lt $deadline ]; do
		grep -qaE "$re" "$vm/serial.log" 2>/dev/null && return 0
		local pid; pid=$(vm_pid "$vm")
		kill -0 "$pid" 2>/dev/null || die "QEMU for $(basename "$vm") died while waiting for /$re/: $(tail -n 3 "$vm/qemu.out")"
		sleep 0.5
	done
	tail -n 5 "$vm/serial.log" >&2
	die "no serial line /$re/ from $(basename "$vm") within ${tmo}s"
}

# last_hb VM: the last heartbeat counter on VM's serial log (0 if none).
last_hb() {
	grep -aoE 'HB [0-9]+' "$1/serial.log" 2>/dev/null | tail -n 1 | awk '{print $2+0} END {if (NR == 0) print 0}'
}

# boot_guest VM [qemu args...]: boots the guest and waits until its random
# data is in RAM and it ticked twice.
boot_guest() {
	local vm=$1; shift
	vm_start "$vm" "$@"
	wait_serial "$vm" 'FVM-READY' 180
	wait_serial "$vm" 'HB 2' 60
	log "$(basename "$vm") booted (heartbeat $(last_hb "$vm"))"
}

vm_status() { hmp "$1" "info status" 10 | sed -n 's/^VM status: //p'; }

# vm_stop VM: stops the guest, waits for "paused".
vm_stop() {
	hmp "$1" stop 30 >/dev/null
	case "$(vm_status "$1")" in paused*) ;; *) die "$(basename "$1") did not pause" ;; esac
}

# pmemsave VM FILE [SIZE]: dumps guest-physical memory 0..SIZE (default the
# 512 MiB of RAM). HMP parses a bare '/' as division: the path is quoted.
pmemsave() {
	local vm=$1 f=$2 size=${3:-0x20000000} out
	case "$f" in /*) ;; *) f=$(pwd)/$f ;; esac
	rm -f "$f"
	out=$(hmp "$vm" "pmemsave 0 $size \"$f\"" 120)
	[ -s "$f" ] || die "pmemsave into $f failed: $out"
}

# pmemsave_at VM ADDR SIZE FILE
pmemsave_at() {
	local vm=$1 addr=$2 size=$3 f=$4 out
	rm -f "$f"
	out=$(hmp "$vm" "pmemsave $addr $size \"$f\"" 120)
	[ -s "$f" ] || die "pmemsave $addr into $f failed: $out"
}

# savevm VM NAME: internal snapshot into the VM's qcow2 drive.
savevm() {
	local out
	out=$(hmp "$1" "savevm $2" 300)
	[ -z "$out" ] || die "savevm $2: $out"
	hmp "$1" "info snapshots" 10 | grep -q " $2 " || die "savevm $2 not listed"
}

# savevm_guest VM DISK NAME RAMFILE: boots the guest with DISK (virtio),
# stops it, dumps its RAM into RAMFILE, saves snapshot NAME into DISK and
# quits; SAVED_HB is the heartbeat it was stopped at. (Not in $(...): a
# subshell would lose the QEMU's registration and its die.)
savevm_guest() {
	local vm=$1 disk=$2 name=$3 ram=$4
	boot_guest "$vm" -drive file="$disk",if=virtio
	vm_stop "$vm"
	SAVED_HB=$(last_hb "$vm")
	pmemsave "$vm" "$ram"
	savevm "$vm" "$name"
	vm_quit "$vm"
	log "snapshot $name saved at heartbeat $SAVED_HB"
}

# wait_migrate VM [TIMEOUT]: polls "info migrate" until completed; dies on
# failed/cancelled or timeout.
wait_migrate() {
	local vm=$1 tmo=${2:-300} deadline st
	deadline=$((SECONDS + tmo))
	while [ $SECONDS -lt $deadline ]; do
		st=$(hmp "$vm" "info migrate" 10 | sed -n -E 's/^(Migration status|Status): *//p' | head -n 1)
		case "$st" in
		completed) return 0 ;;
		failed*|cancelled*) die "migration on $(basename "$vm") $st: $(tail -n 5 "$vm/qemu.out")" ;;
		esac
		sleep 0.5
	done
	die "migration on $(basename "$vm") not completed after ${tmo}s (status '$st')"
}

# migrate_out VM URI: migrates a stopped VM into URI and waits. URI goes in
# one pair of HMP quotes: no quotes inside it.
migrate_out() {
	local out
	out=$(hmp "$1" "migrate -d \"$2\"" 30)
	[ -z "$out" ] || die "migrate $2: $out"
	wait_migrate "$1" 600
}

# wait_incoming VM [TIMEOUT]: waits until an -incoming -S QEMU finished
# loading (status leaves "inmigrate"); dies if QEMU exits (a failed load).
wait_incoming() {
	local vm=$1 tmo=${2:-300} deadline st pid
	pid=$(vm_pid "$vm")
	deadline=$((SECONDS + tmo))
	while [ $SECONDS -lt $deadline ]; do
		kill -0 "$pid" 2>/dev/null || die "incoming QEMU $(basename "$vm") exited: $(tail -n 5 "$vm/qemu.out")"
		st=$(hmp_raw "$vm/mon.sock" "info status" 10 | sed -n 's/^VM status: //p') || true
		case "$st" in
		"paused (inmigrate)"|inmigrate*|"") ;;
		paused*) return 0 ;;
		*) die "incoming $(basename "$vm"): unexpected status '$st'" ;;
		esac
		sleep 0.3
	done
	die "incoming $(basename "$vm") not loaded after ${tmo}s"
}

# restore VM INCOMING [qemu args...]: starts a fresh paused QEMU that loads
# INCOMING ("exec:..." or "defer"), waits for the load.
restore() {
	local vm=$1 inc=$2; shift 2
	vm_start "$vm" -S -incoming "$inc" "$@"
	[ "$inc" = defer ] || wait_incoming "$vm" 300
}

# check_ram VM EXPECTED [SIZE]: pmemsave of the restored (paused) VM equals
# EXPECTED byte for byte.
check_ram() {
	local vm=$1 exp=$2 size=${3:-0x20000000}
	pmemsave "$vm" "$vm/ram.bin" "$size"
	cmp -s "$exp" "$vm/ram.bin" || {
		cmp "$exp" "$vm/ram.bin" | head -n 1 >&2
		die "RAM of $(basename "$vm") differs from $(basename "$exp")"
	}
	rm -f "$vm/ram.bin"
}

# check_alive VM: cont, then the heartbeat must go on counting from where
# the snapshot left it (a reboot would print FVM-READY and start at 1).
check_alive() {
	local vm=$1 min=${2:-1} n
	hmp "$vm" cont 10 >/dev/null
	wait_serial "$vm" 'HB [0-9]+' 60
	local first deadline=$((SECONDS + 60))
	first=$(grep -aoE 'HB [0-9]+' "$vm/serial.log" | head -n 1 | awk '{print $2}')
	grep -qa 'FVM-READY' "$vm/serial.log" && die "$(basename "$vm") rebooted instead of resuming"
	[ "$first" -ge "$min" ] || die "$(basename "$vm") heartbeat restarted at $first (expected >= $min)"
	# A loaded host slows TCG down: wait for the next tick, bounded.
	while n=$(last_hb "$vm"); [ "$n" -le "$first" ] && [ $SECONDS -lt $deadline ]; do
		sleep 0.5
	done
	[ "$n" -gt "$first" ] || die "$(basename "$vm") heartbeat stuck at $n"
	log "$(basename "$vm") alive: heartbeat $first -> $n"
}

# roundtrip_check VM EXPECTED MINHB INCOMING [qemu args]: restore, compare
# RAM, cont, heartbeat, quit.
roundtrip_check() {
	local vm=$1 exp=$2 min=$3 inc=$4; shift 4
	restore "$vm" "$inc" "$@"
	check_ram "$vm" "$exp"
	check_alive "$vm" "$min"
	vm_quit "$vm"
}

# fvm CMD...: runs fvmsnap, logs the command, dies with its stderr on failure.
fvm() {
	local rc=0
	log "fvmsnap $*"
	timeout 300 "$FVMSNAP" "$@" 2>"$WORK/fvmsnap.err" || rc=$?
	[ $rc -eq 0 ] && return 0
	cat "$WORK/fvmsnap.err" >&2
	[ $rc -eq 124 ] && die "fvmsnap $* timed out (300 s)"
	die "fvmsnap $* failed (exit $rc)"
}

blank_disk() { qemu-img create -q -f qcow2 "$@" >/dev/null || die "qemu-img create $*"; }

# restore_caps VM URI CAP...: -incoming defer, set each capability on, then
# migrate_incoming URI and wait for the load.
restore_caps() {
	local vm=$1 uri=$2 c out; shift 2
	local caps=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do caps+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	vm_start "$vm" -S -incoming defer "$@"
	for c in "${caps[@]}"; do
		out=$(hmp "$vm" "migrate_set_capability $c on" 10)
		[ -z "$out" ] || die "capability $c: $out"
	done
	out=$(hmp "$vm" "migrate_incoming \"$uri\"" 30)
	[ -z "$out" ] || die "migrate_incoming $uri: $out"
	wait_incoming "$vm" 300
}

# set_caps VM CAP...: capabilities on a source before migrate.
set_caps() {
	local vm=$1 c out; shift
	for c in "$@"; do
		out=$(hmp "$vm" "migrate_set_capability $c on" 10)
		[ -z "$out" ] || die "capability $c: $out"
	done
}

# ---- fvmsnap restore --------------------------------------------------------

# qemu_cmd VMDIR: the test guest's QEMU command line as vm_start builds it,
# without -m (restore adds it from the snapshot), one argument per line.
qemu_cmd() {
	local vm=$1 a
	mkdir -p "$vm"
	rm -f "$vm/serial.log" "$vm/mon.sock" "$vm/qemu.pid"
	for a in "$FVM_QEMU" $FVM_QEMU_L -accel tcg -nodefaults -nographic \
		-serial "file:$vm/serial.log" -monitor "unix:$vm/mon.sock,server,nowait" \
		-kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1" -no-reboot -pidfile "$vm/qemu.pid"; do
		printf '%s\n' "$a"
	done
}

# use_qemu10: the QEMU 10.0 that setup-qemu10.sh unpacked into CACHE, for
# the rest of the script (skips when it is not there).
use_qemu10() {
	local q=$CACHE/qemu10
	[ -x "$q/usr/bin/qemu-system-x86_64" ] ||
		skip "QEMU 10.0 not unpacked: run tests/qemu/setup-qemu10.sh $CACHE"
	FVM_QEMU=$q/usr/bin/qemu-system-x86_64
	FVM_QEMU_L="-L $q/usr/share/qemu -L /usr/share/seabios"
	log "using $("$FVM_QEMU" --version | head -n 1)"
}

# run_restore VMDIR SNAP [restore options] -- [extra QEMU args]: fvmsnap
# restore --detach --json of SNAP into a QEMU like vm_start's; stdout to
# VMDIR/restore.out, stderr (the timing line or the refusal) to
# VMDIR/restore.err; returns fvmsnap's exit status.
run_restore() {
	local vm=$1 snap=$2 rc=0; shift 2
	local ropts=() cmd=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do ropts+=("$1"); shift; done
	[ "${1:-}" = -- ] && shift
	mapfile -t cmd < <(qemu_cmd "$vm")
	timeout 300 "$FVMSNAP" restore "$snap" --detach --json "${ropts[@]}" -- "${cmd[@]}" "$@" \
		>"$vm/restore.out" 2>"$vm/restore.err" || rc=$?
	return $rc
}

# restore_qmp VMDIR: the QMP socket of the QEMU fvm_restore started there.
restore_qmp() {
	sed -n 's/.*"qmp":"\([^"]*\)".*/\1/p' "$1/restore.out"
}

# fvm_restore VMDIR SNAP [restore options] -- [extra QEMU args]: run_restore;
# it must succeed, and the QEMU and its directory are registered for cleanup.
fvm_restore() {
	local vm=$1 snap=$2 rc=0 pid qmp
	log "fvmsnap restore $(basename "$snap") ${*:3}"
	run_restore "$@" || rc=$?
	qmp=$(restore_qmp "$vm")
	[ -n "$qmp" ] && RESTORE_DIRS+=("$(dirname "$qmp")")
	[ $rc -eq 0 ] || { cat "$vm/restore.err" >&2; die "fvmsnap restore failed (exit $rc)"; }
	pid=$(cat "$vm/qemu.pid" 2>/dev/null) || die "restore: no QEMU pid file"
	QEMU_PIDS+=("$pid")
	VM_DIRS+=("$vm")
	log "$(tail -n 1 "$vm/restore.err")"
}

# restore_refused VMDIR SNAP PATTERN [restore options] -- [QEMU args]: the
# restore must fail with a non-zero exit and a message matching PATTERN,
# and leave no QEMU running.
restore_refused() {
	local vm=$1 snap=$2 pat=$3 rc=0; shift 3
	run_restore "$vm" "$snap" "$@" || rc=$?
	[ $rc -ne 0 ] || die "restore with $* succeeded; expected a refusal /$pat/"
	grep -qE "$pat" "$vm/restore.err" || { cat "$vm/restore.err" >&2; die "restore refusal without /$pat/"; }
	if [ -s "$vm/qemu.pid" ] && kill -0 "$(cat "$vm/qemu.pid")" 2>/dev/null; then
		die "a refused restore left QEMU $(cat "$vm/qemu.pid") running"
	fi
	log "refused as expected (exit $rc): $(grep -E "$pat" "$vm/restore.err" | head -n 1)"
}

# ---- the patched QEMU (contrib/qemu): -incoming fvm:PATH, QMP x-fvm-save

# use_patched VERSION: FVM_PQEMU/FVM_PQEMU_L name the QEMU VERSION that
# contrib/qemu/build-and-test.sh built with the libfastvm hook (in CACHE).
use_patched() {
	local ver=$1 b=$CACHE/qemu-$1-fvm/build/qemu-system-x86_64
	[ -x "$b" ] || skip "no patched QEMU $ver in $CACHE: run contrib/qemu/build-and-test.sh $ver"
	FVM_PQEMU=$b
	case $ver in
	7.2) FVM_PQEMU_L="-L /usr/share/qemu -L /usr/share/seabios" ;;
	*) [ -d "$CACHE/qemu10/usr/share/qemu" ] ||
		skip "no QEMU 10.0 firmware: run tests/qemu/setup-qemu10.sh $CACHE"
	   FVM_PQEMU_L="-L $CACHE/qemu10/usr/share/qemu -L /usr/share/seabios" ;;
	esac
	log "patched: $("$b" --version | head -n 1) ($b)"
}

# patched CMD...: run a lib.sh command (vm_start, restore, ...) with the
# patched QEMU instead of the stock one.
patched() {
	local oq=$FVM_QEMU ol=$FVM_QEMU_L rc=0
	FVM_QEMU=$FVM_PQEMU
	FVM_QEMU_L=$FVM_PQEMU_L
	"$@" || rc=$?
	FVM_QEMU=$oq
	FVM_QEMU_L=$ol
	return $rc
}

# qmp_exec SOCK JSON: one QMP command; prints its "return", fails on "error".
qmp_exec() {
	python3 - "$1" "$2" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(300)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        m = json.loads(f.readline())
        if "return" in m or "error" in m:
            return m
json.loads(f.readline())  # greeting
f.write('{"execute": "qmp_capabilities"}\n'); f.flush(); reply()
f.write(sys.argv[2] + "\n"); f.flush()
m = reply()
if "error" in m:
    print(m["error"].get("desc", m["error"]), file=sys.stderr)
    sys.exit(1)
print(json.dumps(m["return"]))
PY
}

# fvm_incoming VM URI ARGS...: the patched QEMU restores URI (fvm:PATH,
# fvm-lazy:PATH) paused, with a QMP socket VM/qmp.sock.
fvm_incoming() {
	local vm=$1 uri=$2; shift 2
	log "patched QEMU -incoming $uri $*"
	patched restore "$vm" "$uri" -qmp unix:"$vm/qmp.sock",server=on,wait=off "$@"
}

# fvm_save_qmp VM PATH [stop]: x-fvm-save over the VM's QMP socket.
fvm_save_qmp() {
	local vm=$1 path=$2 stop=${3:-false} key=${4:-}
	qmp_exec "$vm/qmp.sock" "{\"execute\": \"x-fvm-save\", \"arguments\": {\"path\": \"$path\", \"stop\": $stop${key:+, \"key-file\": \"$key\"}}}" \
		>/dev/null || die "x-fvm-save $path on $(basename "$vm") failed"
	log "x-fvm-save $(basename "$path") (stop: $stop${key:+, key-file $(basename "$key")})"
}

# incoming_refused VM URI PATTERN ARGS...: the patched QEMU given URI exits
# with an error matching PATTERN on its stderr; it never runs the guest.
incoming_refused() {
	local vm=$1 uri=$2 pat=$3 rc=0 a=(); shift 3
	mkdir -p "$vm"
	mapfile -t a < <(patched qemu_cmd "$vm")
	timeout 120 "${a[@]}" -m "${FVM_GUEST_MEM:-512M}" -S -incoming "$uri" "$@" \
		>"$vm/qemu.out" 2>&1 </dev/null || rc=$?
	[ $rc -ne 0 ] || die "-incoming $uri $* exited 0; expected a refusal /$pat/"
	[ $rc -ne 124 ] || die "-incoming $uri $* still running after 120 s; expected a refusal"
	grep -qE "$pat" "$vm/qemu.out" || { cat "$vm/qemu.out" >&2; die "-incoming $uri: no /$pat/ in its error"; }
	grep -qa 'HB ' "$vm/serial.log" 2>/dev/null && die "-incoming $uri ran the guest before failing"
	log "refused as expected (exit $rc): $(grep -E "$pat" "$vm/qemu.out" | head -n 1)"
}
