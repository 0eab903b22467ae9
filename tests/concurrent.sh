#!/bin/bash
# Writers racing for one path (issue 10, concurrency): in each round several
# fvmsnap processes write different content to the same path at once --
# pack (fvm_writer_open_path: O_TMPFILE, linkat, rename), convert (the same
# writer, from a migration stream) and export (tools/cli.c cli_atomic_*).
# Afterwards the path holds exactly one of the complete candidates (byte
# for byte: SOURCE_DATE_EPOCH pins the metadata value created), fvmsnap
# verify accepts it, every writer exited 0, and no temporary is left.
# With the fault shim (tests/fault/fault.c) as a second argument, the pack
# and export races run once more on a file system without O_TMPFILE (the
# shim refuses it): the writers' named temporaries (.NAME.XXXXXX, O_EXCL)
# race instead.
# Usage: concurrent.sh /path/to/fvmsnap [SHIM]; FVM_CONCURRENT_ROUNDS (25)
set -u

FVMSNAP=$(realpath "$1")
SHIM=${2:-}
[ -z "$SHIM" ] || SHIM=$(realpath "$SHIM")
ROUNDS=${FVM_CONCURRENT_ROUNDS:-25}
# Under ASan the shim cannot come after the runtime in the library list.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
SRC=$(dirname "$(realpath "$0")")/..
STREAMS=$SRC/fuzz/corpus/stream
W=$(mktemp -d "${TMPDIR:-/tmp}/fvm-concurrent.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
mkdir cand race
export SOURCE_DATE_EPOCH=1700000000

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# race NAME OUT CMD_1 ... CMD_k: each CMD_i a string run by bash, writing to
# race/OUT; its candidate is cand/NAME.i, made beforehand by the same
# command writing alone. ROUNDS rounds, all k writers started at once.
race() {
	local name=$1 out=$2 n i r rc hit left
	shift 2
	n=$#
	i=0
	for c in "$@"; do
		i=$((i + 1))
		rm -f "race/$out"
		bash -c "$c" >/dev/null 2>"cand/$name.err" || { fail "$name: writer $i alone: $(cat "cand/$name.err")"; return; }
		mv "race/$out" "cand/$name.$i"
	done
	for ((i = 2; i <= n; i++)); do
		cmp -s "cand/$name.1" "cand/$name.$i" && { fail "$name: candidates 1 and $i are equal"; return; }
	done
	declare -A seen=()
	for ((r = 1; r <= ROUNDS; r++)); do
		local pids=()
		i=0
		for c in "$@"; do
			i=$((i + 1))
			bash -c "$c" >/dev/null 2>"race/err.$i" &
			pids+=($!)
		done
		i=0
		for p in "${pids[@]}"; do
			i=$((i + 1))
			wait "$p"
			rc=$?
			[ "$rc" = 0 ] || fail "$name round $r: writer $i exit $rc: $(cat "race/err.$i")"
		done
		rm -f race/err.*
		hit=
		for ((i = 1; i <= n; i++)); do
			cmp -s "race/$out" "cand/$name.$i" && hit=$i
		done
		if [ -z "$hit" ]; then
			fail "$name round $r: race/$out is none of the $n candidates ($(stat -c %s "race/$out" 2>&1))"
			return
		fi
		seen[$hit]=1
		case $out in
		*.fvm) "$FVMSNAP" verify -q "race/$out" || fail "$name round $r: verify refuses the result" ;;
		esac
		left=$(cd race && ls -A | grep -vx "$out")
		[ -z "$left" ] || { fail "$name round $r: left behind: $left"; return; }
	done
	echo "-- $name: $ROUNDS rounds of $n writers, winners seen: ${!seen[*]}"
	rm -f "race/$out"
}

head -c 3M /dev/urandom >a.img
head -c 3M /dev/urandom >b.img
head -c 1M /dev/zero >>b.img
head -c 2M /dev/urandom >c.img
P="'$FVMSNAP' pack -q --segment-size 256K"
race pack x.fvm \
	"$P --block ram=a.img -o race/x.fvm" \
	"$P --block ram=b.img --block rom=c.img -o race/x.fvm" \
	"$P --no-fsync --compress none --block ram=c.img --max-run 64K -o race/x.fvm"
if "$FVMSNAP" pack -q --compress zstd --block ram=c.img -o zstd-probe.fvm 2>/dev/null; then
	race pack-zstd x.fvm \
		"$P --compress zstd:1 --block ram=a.img -o race/x.fvm" \
		"$P --compress zstd:1 --block ram=b.img -o race/x.fvm"
fi

CV="'$FVMSNAP' convert -q"
race convert x.fvm \
	"$CV '$STREAMS/synthetic-good.mig' -o race/x.fvm" \
	"$CV '$STREAMS/synthetic-shared.mig' -o race/x.fvm" \
	"$CV --no-crc '$STREAMS/synthetic-postcopy.mig' -o race/x.fvm" \
	"$CV '$STREAMS/synthetic-mapped-ram.mig' -o race/x.fvm"

# export's output goes through cli_atomic_* (tools/cli.c)
for s in good shared postcopy; do
	"$FVMSNAP" convert -q --no-fsync "$STREAMS/synthetic-$s.mig" -o "$s.fvm" ||
		fail "convert of synthetic-$s.mig"
done
race export x.mig \
	"'$FVMSNAP' export -q good.fvm -o race/x.mig" \
	"'$FVMSNAP' export -q shared.fvm -o race/x.mig" \
	"'$FVMSNAP' export -q postcopy.fvm -o race/x.mig"

# no O_TMPFILE: named temporaries in the target's directory race. Not under
# ThreadSanitizer: its runtime and an LD_PRELOAD shim wrapping libc calls do
# not mix (a deadly signal at start); the plain and ASan runs cover it.
if [ -n "$SHIM" ] && ldd "$FVMSNAP" 2>/dev/null | grep -q libtsan; then
	echo "-- pack-named, export-named: left out under ThreadSanitizer (the fault shim)"
	SHIM=
fi
if [ -n "$SHIM" ]; then
	NT="LD_PRELOAD='$SHIM' FVM_FAULT_DIR='$W/race' FVM_FAULT=count FVM_FAULT_NO_TMPFILE=1"
	# the shim really refuses O_TMPFILE: a writer that used it would fail here
	race pack-named x.fvm \
		"$NT $P --block ram=a.img -o race/x.fvm" \
		"$NT $P --block ram=b.img --block rom=c.img -o race/x.fvm" \
		"$NT $P --no-fsync --compress none --block ram=c.img --max-run 64K -o race/x.fvm"
	race export-named x.mig \
		"$NT '$FVMSNAP' export -q good.fvm -o race/x.mig" \
		"$NT '$FVMSNAP' export -q shared.fvm -o race/x.mig" \
		"$NT '$FVMSNAP' export -q postcopy.fvm -o race/x.mig"
fi

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all writers' races ended with one complete file"
