#!/bin/bash
# Low limits (issue 10, doc/RELIABILITY.md): RLIMIT_MEMLOCK 0 (io_uring
# rings: the kernels that charge them to it refuse the ring, and the load
# must fall back to pread; newer ones charge the memory cgroup and go on
# with io_uring) and RLIMIT_AS from 16 MiB up to 1 GiB for loads (bench
# with each backend, unpack), verify, pack, convert and export of a 64 MiB
# guest. At each limit a command either works (its output whole) or fails
# cleanly: exit code 1-127 with a "fvmsnap CMD: " message, no output under
# the final name (or the old one intact), no temporary left. Prints the
# smallest limit at which each command worked.
#
# Under ASan the RLIMIT_AS part is skipped (its shadow memory needs
# terabytes of address space).
# Usage: limits.sh FVMSNAP   (meson runs it from the build directory)
set -u

FVMSNAP=$(realpath "$1")
CORPUS=$(realpath "$(dirname "$0")/../fuzz/corpus")
STREAM_OF=$(realpath "$(dirname "$0")/stream-of.sh")
W=$(mktemp -d "$PWD/limits-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
export FVM_TEST=1

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fs() { "$FVMSNAP" "$@"; }

# ---- inputs: 64 MiB of RAM, half data; a stream of it for convert
fs sample -q -o ram.img --size 64M --seed 41 --nonzero-share 0.5 || exit 1
fs sample -q -o old.img --size 1M --seed 42 || exit 1
fs pack -q --no-fsync --block pc.ram=old.img -o old.fvm || exit 1
"$STREAM_OF" "$FVMSNAP" ram.img s || exit 1
cp "$CORPUS/stream/synthetic-good.mig" old.mig # an older, different stream

# ---- RLIMIT_MEMLOCK 0: io_uring works or the load falls back to pread
for be in uring inline; do
	out=$( (ulimit -l 0 && fs bench -n 1 --backend $be --json s.fvm) 2>err.log)
	rc=$?
	[ $rc -eq 0 ] || { fail "bench --backend $be with RLIMIT_MEMLOCK 0: exit $rc: $(cat err.log)"; continue; }
	got=$(printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = [x for x in d["results"] if x["config"] != "reference"]
print(" ".join("%s:%s" % (x["backend"], x["fallback_reason"] or "-") for x in r))')
	for b in $got; do
		case $b in
		io_uring:-|pread:*ENOMEM*) ;;
		*) fail "bench --backend $be with RLIMIT_MEMLOCK 0: backend $b" ;;
		esac
	done
	echo "RLIMIT_MEMLOCK 0, bench --backend $be: $got"
done
# unpack loads with the default backend (io_uring, else pread)
(ulimit -l 0 && fs unpack -q s.fvm -o ml) || fail "unpack with RLIMIT_MEMLOCK 0"
cmp -s ml/pc.ram.raw ram.img || fail "unpack with RLIMIT_MEMLOCK 0: pc.ram differs"
rm -rf ml

# ---- RLIMIT_AS
if ldd "$FVMSNAP" 2>/dev/null | grep -q -e libasan -e libtsan; then
	echo "note: sanitizer build: the RLIMIT_AS part is skipped"
else
	# name | output | old | command | check of a good output
	OPS=(
		"bench-uring|||bench -n 1 --backend uring s.fvm|"
		"bench-pread|||bench -n 1 --backend pread s.fvm|"
		"bench-mmap|||bench -n 1 --backend mmap s.fvm|"
		"unpack|outdir||unpack s.fvm -o outdir|cmp -s outdir/pc.ram.raw ram.img"
		"verify|||verify s.fvm|"
		"pack|out.fvm|old.fvm|pack --block pc.ram=ram.img -o out.fvm|fs verify -q out.fvm"
		"convert|out.fvm|old.fvm|convert s.mig -o out.fvm|fs verify -q out.fvm"
		"export|out.mig|old.mig|export s.fvm -o out.mig|cmp -s out.mig s.mig"
	)
	before=$(ls -A | sort)
	for op in "${OPS[@]}"; do
		IFS='|' read -r name out old cmd check <<<"$op"
		# shellcheck disable=SC2086
		set -- $cmd
		first=
		for mib in 16 24 32 48 64 96 128 192 256 384 512 1024; do
			rm -rf "${out:-/nonexistent}"
			[ -n "$old" ] && cp "$old" "$out"
			(ulimit -v $((mib * 1024)) && exec "$FVMSNAP" "$@") >out.log 2>err.log
			rc=$?
			what="$name with RLIMIT_AS $mib MiB"
			if [ $rc -eq 0 ]; then
				if [ -n "$check" ] && ! eval "$check"; then
					fail "$what: exit 0 but the output is not whole"
				fi
				[ -n "$first" ] || first=$mib
			else
				[ $rc -lt 128 ] || fail "$what: killed by signal $((rc - 128))"
				grep -q "^fvmsnap $1: " err.log || fail "$what: exit $rc, message: $(head -c 300 err.log)"
				if [ -n "$out" ]; then
					if [ -n "$old" ]; then
						cmp -s "$out" "$old" || fail "$what: failed and changed $out"
					else
						[ ! -e "$out" ] || [ -d "$out" ] && [ -z "$(ls -A "$out")" ] ||
							fail "$what: failed and left $out"
					fi
				fi
				[ -n "$first" ] && fail "$what: failed after it worked with less ($first MiB)"
			fi
			rm -rf "${out:-/nonexistent}"
			now=$(ls -A | grep -v -x -e out.log -e err.log | sort)
			[ "$now" = "$(echo "$before" | grep -v -x -e out.log -e err.log)" ] ||
				fail "$what: left $(comm -13 <(echo "$before") <(echo "$now") | tr '\n' ' ')"
		done
		echo "RLIMIT_AS: $name works from ${first:-(never, up to 1024)} MiB, fails cleanly below"
		[ -n "$first" ] || fail "$name never worked up to 1 GiB"
	done
fi

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all limit checks passed"
