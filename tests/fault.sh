#!/bin/bash
# Injected I/O faults at every call site of fvmsnap and the library
# (issue 10, doc/RELIABILITY.md). tests/fault/fault.c, preloaded, first
# counts the calls each command makes on files in the work directory
# (FVM_FAULT=count), then fails each counted call in turn: reads with EIO
# and a short transfer, writes with EIO, ENOSPC, EDQUOT and a short
# transfer, fsync/fdatasync/msync/ftruncate/fallocate/rename/linkat with
# EIO, open with EIO and EOPNOTSUPP (O_TMPFILE refused: the named
# fallback). Commands: pack, convert of a migration stream and of a qcow2
# snapshot, export, unpack, sample, verify, inspect, list of a qcow2 image,
# and loads (bench with the pread and mmap backends and with io_uring, whose own reads are the kernel's: see
# test_uring_fault.c).
#
# After each run: exit code below 128 and no sanitizer report; an injected
# error gives a non-zero exit with a "fvmsnap CMD: " message naming the
# error; a short transfer is retried, so the command succeeds and its
# output verifies (or it fails as above). On failure the output path holds
# its old content byte for byte, or nothing if it had none, and no other
# file appears in the directory (no temporary left). A failure reported
# after the rename committed the new file (a directory fsync) may leave the
# new file, which must then verify.
#
# Sampling: every call of the first FVM_FAULT_FIRST (4) of each kind,
# then a stride that keeps each kind near 8 points (most kinds have fewer
# calls than that, so are covered call by call; reads and writes of the
# payload are strided); the summary line of each command says how many
# call sites were tried. About 18 s of CPU for 911 faulted runs.
#
# Usage: fault.sh FVMSNAP SHIM CORPUS   (exit 77 without python3 or the shim)
set -u

FVMSNAP=$(realpath "$1")
SHIM=$(realpath "$2")
CORPUS=$(realpath "$3")
FIRST=${FVM_FAULT_FIRST:-4}
[ -f "$SHIM" ] || { echo "SKIP: fault shim $SHIM not built"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 needed"; exit 77; }
W=$(mktemp -d "$PWD/fault-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
W=$(pwd -P)
LOG=$W.log
trap 'rm -rf "$W" "$LOG"' EXIT
export FVM_TEST=1
# fsync returns at once but for the one failed (durability is not checked
# here; a thousand real fsyncs would take most of the time)
export FVM_FAULT_NOSYNC=1
# standard input spooled to a temporary file goes to the faulted directory
export TMPDIR=$W
# Under ASan the shim cannot come after the runtime in the library list.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0:detect_leaks=1
export UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fs() { "$FVMSNAP" "$@"; }

# ---- inputs, in in/: under the faulted directory, so their reads fail too
mkdir in
fs sample -q -o in/a.img --size 1M --seed 21 --nonzero-share 0.5 || exit 1
fs sample -q -o in/b.img --size 256K --seed 22 || exit 1
fs sample -q -o in/v.img --size 4M --seed 23 --nonzero-share 0.3 || exit 1
printf 'cpu state bytes' > in/ds.bin
cp "$CORPUS/stream/synthetic-good.mig" in/s.mig
# a qcow2 image with a vmstate snapshot: QEMU's savevm (none in the corpus
# converts: their vmstates are cut or synthetic)
QEMU=${QEMU:-qemu-system-x86_64}
have_qcow2=0
if command -v qemu-img >/dev/null && command -v "$QEMU" >/dev/null; then
	qemu-img create -q -f qcow2 in/q.qcow2 1M &&
		printf 'savevm s1\nquit\n' | timeout 60 "$QEMU" -nodefaults -M pc -m 16M \
			-display none -S -monitor stdio \
			-drive file=in/q.qcow2,format=qcow2,if=none,id=d0 >/dev/null 2>&1 &&
		have_qcow2=1
fi
[ $have_qcow2 = 1 ] || echo "note: no qemu-img/$QEMU: the qcow2 convert cases are skipped"
fs convert -q --no-fsync in/s.mig -o in/good.fvm || exit 1
fs pack -q --no-fsync --block pc.ram=in/b.img --block rom=in/b.img -o in/old.fvm || exit 1
cp in/s.mig in/old.mig # a valid stream unlike export's of good.fvm
fs unpack -q in/old.fvm -o in/oldunpack || exit 1

# OPS: name | output (relative; "" for none, "-" for standard output) | old
# content ("" for none) | command | standard input: a file | a file through a pipe
OPS=(
	"pack|out.fvm|in/old.fvm|pack --block pc.ram=in/a.img --block vga=in/v.img,pagesize=2M --devstate cpu=in/ds.bin -o out.fvm"
	"pack-new|new.fvm||pack --block pc.ram=in/a.img -o new.fvm"
	"convert-stream|out.fvm|in/old.fvm|convert in/s.mig -o out.fvm"
	"convert-qcow2|new.fvm||convert in/q.qcow2 --snapshot s1 -o new.fvm"
	"export|out.mig|in/old.mig|export in/good.fvm -o out.mig"
	"unpack|outdir|in/oldunpack|unpack in/good.fvm -o outdir"
	"sample|out.img|in/b.img|sample -q -o out.img --size 1M --seed 5"
	"verify|||verify in/good.fvm"
	"inspect|-||inspect --runs in/good.fvm"
	"list-qcow2|-||list in/q.qcow2"
	"load-pread|||bench -n 1 --backend pread --verify in/good.fvm"
	"load-uring|||bench -n 1 --backend uring in/good.fvm"
	"load-mmap|||bench -n 1 --backend mmap in/good.fvm"
	# standard input: a file (read where it is) and a pipe (stream mode, or
	# spooled to TMPDIR, here the work directory)
	"verify-stdin|||verify -|in/good.fvm"
	"verify-pipe|||verify -||in/good.fvm"
	"inspect-pipe|-||inspect -||in/good.fvm"
	"unpack-pipe|outdir|in/oldunpack|unpack - -o outdir||in/good.fvm"
	"convert-pipe|out.fvm|in/old.fvm|convert - -o out.fvm||in/s.mig"
	"export-pipe|out.mig|in/old.mig|export - -o out.mig||in/good.fvm"
)

kinds_of() {
	case $1 in
	read|pread|preadv|splice) echo "EIO short" ;;
	write|writev|pwrite|pwritev) echo "EIO ENOSPC EDQUOT short" ;;
	open) echo "EIO EOPNOTSUPP" ;;
	linkat) echo "EIO EIO+" ;; # EIO+: this and every later linkat (the fallback too)
	*) echo "EIO" ;;
	esac
}
strerr() { # sets errstr (no subshell: this runs a thousand times)
	case $1 in
	EIO|EIO+) errstr="Input/output error" ;;
	ENOSPC) errstr="No space left on device" ;;
	EDQUOT) errstr="Disk quota exceeded" ;;
	EOPNOTSUPP) errstr="Operation not supported" ;;
	*) errstr= ;;
	esac
}

# listing OUT: the directory's names but the logs and OUT, without a fork
shopt -s dotglob nullglob
listing() {
	local f l=
	for f in *; do
		[ "$f" = out.log ] || [ "$f" = err.log ] || [ "$f" = "$1" ] || l="$l $f"
	done
	echo "$l"
}

# restore OUT OLD: put the old content back (or remove the output)
restore() {
	[ -n "$1" ] || return 0
	[ -e "$1" ] && rm -rf "$1"
	[ -n "$2" ] && cp -a "$2" "$1"
	return 0
}

# same OUT OLD: the output is as it was
same() {
	if [ -z "$2" ]; then
		[ ! -e "$1" ]
	elif [ -d "$2" ]; then
		diff -r -q "$1" "$2" >/dev/null 2>&1
	else
		cmp -s "$1" "$2"
	fi
}

# as_ref OUT: the output has the content of the clean run's (ref/out, or
# ref/unpacked for a snapshot: its blocks, device state and lists, the
# creation time aside)
as_ref() {
	local r
	case $1 in
	*.fvm)
		rm -rf chk
		fs unpack -q "$1" -o chk >/dev/null 2>&1 &&
			diff -r -q -x meta.txt chk ref/unpacked >/dev/null 2>&1
		r=$?
		rm -rf chk
		return $r ;;
	*) diff -r -q "$1" ref/out >/dev/null 2>&1 ;;
	esac
}

# mixed_ok OUT OLD: unpack commits file by file, so a failure between two
# renames leaves each file the old or the new one, none missing or extra.
mixed_ok() {
	local f
	[ -d "$1" ] || return 1
	for f in "$1"/* "$2"/*; do
		f=${f##*/}
		cmp -s "$1/$f" "$2/$f" || cmp -s "$1/$f" "ref/out/$f" || return 1
	done
	return 0
}

total=0
SUMMARY=()
for op in "${OPS[@]}"; do
	IFS='|' read -r name out old cmd stdin pipe <<<"$op"
	stdout_cmp=0
	# run ENV...: the command with the environment given, its input as the op says
	run() {
		if [ -n "$pipe" ]; then
			env "$@" FVM_FAULT_STDIN=1 "$FVMSNAP" "${args[@]}" < <(cat "$pipe")
		elif [ -n "$stdin" ]; then
			env "$@" FVM_FAULT_STDIN=1 "$FVMSNAP" "${args[@]}" < "$stdin"
		else
			env "$@" "$FVMSNAP" "${args[@]}" < /dev/null
		fi
	}
	case $name in *qcow2*) [ $have_qcow2 = 1 ] || continue ;; esac
	# FVM_FAULT_ONLY=NAME: that command alone (by hand, to look into one)
	[ -n "${FVM_FAULT_ONLY:-}" ] && [ "$name" != "$FVM_FAULT_ONLY" ] && continue
	# shellcheck disable=SC2086
	set -- $cmd
	args=("$@")
	restore "$out" "$old"
	rm -f "$LOG"
	run LD_PRELOAD="$SHIM" FVM_FAULT_DIR="$W" FVM_FAULT=count FVM_FAULT_LOG="$LOG" \
		>out.log 2>err.log || { fail "$name: clean run failed"; cat err.log; continue; }
	[ -s "$LOG" ] || { fail "$name: the shim counted no call"; continue; }
	rm -rf ref
	if [ "$out" = - ]; then
		mkdir ref && cp out.log ref/stdout
		out=
		stdout_cmp=1
	fi
	if [ -n "$out" ] && [ -n "$old" ] && same "$out" "$old"; then
		fail "$name: the old output equals the new one: the test would prove nothing"
	fi
	if [ -n "$out" ]; then
		mkdir ref && cp -a "$out" ref/out
		case $out in *.fvm) fs unpack -q "$out" -o ref/unpacked || fail "$name: unpack of the clean output" ;; esac
	fi
	RECOVERED=()
	before=$(listing "$out")
	recovered=0
	runs=0 sites=0 counts=""
	while read -r call count; do
		counts="$counts $call=$count"
		ns=$(python3 -c "c=$count;f=$FIRST;s=max(1,(c-f)//4 or 1);print(*sorted(set(list(range(1,min(c,f)+1))+list(range(f+1,c+1,s))+[c])))")
		for n in $ns; do
			sites=$((sites + 1))
			for kind in $(kinds_of "$call"); do
				restore "$out" "$old"
				rm -f "$LOG"
				run LD_PRELOAD="$SHIM" FVM_FAULT_DIR="$W" FVM_FAULT_LOG="$LOG" \
					FVM_FAULT="call=$call,nth=$n${kind//[A-Z]/},err=${kind%+}" >out.log 2>err.log
				rc=$?
				runs=$((runs + 1))
				what="$name: $call #$n $kind"
				if [ $rc -ge 128 ]; then
					fail "$what: killed by a signal (exit $rc)"; sed 's/^/  | /' err.log | head -5
				fi
				errtext=
				read -r -d '' errtext < err.log
				if [[ $errtext == *Sanitizer* || $errtext == *"runtime error:"* ]]; then
					fail "$what: sanitizer report"; sed 's/^/  | /' err.log | head -20
				fi
				note=
				[ -f "$LOG" ] && read -r note < "$LOG"
				[[ $note == injected* ]] || { fail "$what: not injected"; continue; }
				cmdname=$1
				if [ $rc -eq 0 ]; then
					# success is right only with the output of a clean run: a
					# retried short transfer, a fallback (no O_TMPFILE, the
					# second linkat), a read of the summary after the commit
					if [ "$stdout_cmp" = 1 ]; then
						# a probe that tolerates a failed read (the input's
						# format), then the real reads: the clean run's output
						cmp -s out.log ref/stdout || fail "$what: exit 0 but its output differs from a clean run's"
						[ "$kind" != short ] && recovered=$((recovered + 1)) && RECOVERED+=("$call#$n:$kind")
					elif [ -z "$out" ] && [ "$kind" != short ]; then
						fail "$what: exit 0 after an injected error"
					elif [ -n "$out" ] && ! as_ref "$out"; then
						fail "$what: exit 0 but $out differs from a clean run's"
					elif [ "$kind" != short ]; then
						recovered=$((recovered + 1))
						RECOVERED+=("$call#$n:$kind")
					fi
				else
					msg=${errtext%%$'\n'*}
					case $msg in
					"fvmsnap $cmdname: "*) ;;
					*) fail "$what: exit $rc, message: '$msg'" ;;
					esac
					# libqcow (the qcow2 reader) keeps errno to itself: "I/O error"
					strerr "$kind"
					if [ "$kind" != short ] && [[ $errtext != *"$errstr"* ]] &&
						! [[ $name == *qcow2 && $errtext == *"in/q.qcow2: I/O error: libqcow"* ]]; then
						fail "$what: message does not say '$errstr': $msg"
					fi
					if [ -n "$out" ] && ! same "$out" "$old"; then
						if [[ $name == unpack* ]] && mixed_ok "$out" "$old"; then
							: # committed file by file: each old or new
						elif [ "${note% dir}" != "$note" ] && as_ref "$out"; then
							: # committed, then the directory's fsync failed
						else
							fail "$what: failed and $out is neither its old content nor whole"
							[ -d "$out" ] && diff -r -q "$out" "$old" | head -3
						fi
					fi
				fi
				now=$(listing "$out")
				[ "$now" = "$before" ] || fail "$what: left or removed files: now '$now', before '$before'"
			done
		done
	done < <(sort "$LOG")
	total=$((total + runs))
	SUMMARY+=("$name: $sites call sites, $runs faulted runs ($recovered recovered with a clean run's output); calls:$counts")
	[ $recovered -gt 0 ] && SUMMARY+=("  recovered: ${RECOVERED[*]}")
done
echo "---- summary (call counts of a clean run; every counted call up to $FIRST, then a stride)"
printf '%s\n' "${SUMMARY[@]}"
echo "$total faulted runs"
if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all fault checks passed"
