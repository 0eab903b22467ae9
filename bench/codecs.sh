#!/bin/bash
# Issue 9's codec measurement on its three inputs, in one command:
#   1. the real-content guest (bench/real-guest.sh: 1 GiB, Debian files),
#   2. the test guest of tests/qemu (512 MiB, 80 MiB from /dev/urandom),
#      booted with tests/qemu/lib.sh, stopped, migrated to a file, converted,
#   3. a synthetic 512 MiB image (fvmsnap sample, seed 1).
# For each, bench/codecs (the build's) writes OUTDIR/<input>.md and .json.
# Usage: bench/codecs.sh CACHEDIR OUTDIR [BUILDDIR]
# Exit 77 when QEMU or the guest's tools are missing (see real-guest.sh).
set -eu
set -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: codecs.sh CACHEDIR OUTDIR [BUILDDIR]}
outdir=${2:?usage: codecs.sh CACHEDIR OUTDIR [BUILDDIR]}
build=$(cd "${3:-$here/../build}" && pwd)
FVMSNAP=$build/tools/fvmsnap
CODECS=$build/bench/codecs
[ -x "$CODECS" ] || { echo "codecs.sh: $CODECS not built (libzstd-dev, liblz4-dev?)" >&2; exit 77; }
mkdir -p "$cache" "$outdir"
cache=$(cd "$cache" && pwd)

rc=0
raw=$("$here/real-guest.sh" "$cache" "$FVMSNAP") || rc=$?
[ $rc -eq 0 ] || exit $rc

# The test guest, saved as tests/qemu/s2-migration-stream.sh saves it.
tg=$cache/testguest
if [ ! -s "$tg/test.fvm" ]; then
	mkdir -p "$tg"
	(
		export FVM_BUILD_DIR=$build FVM_QEMU_CACHE=${FVM_QEMU_CACHE:-$cache}
		. "$here/../tests/qemu/lib.sh"
		fvm_init codecs-testguest "$FVMSNAP"
		boot_guest "$WORK/src"
		vm_stop "$WORK/src"
		migrate_out "$WORK/src" "exec:cat > $WORK/test.mig"
		vm_quit "$WORK/src"
		fvm convert "$WORK/test.mig" -o "$tg/test.fvm" --quiet
	) || exit $?
fi

[ -s "$cache/sample-512M.img" ] ||
	"$FVMSNAP" sample -o "$cache/sample-512M.img" --size 512M --seed 1 --quiet

for pair in "real-guest:$raw" "test-guest:$tg/test.fvm" "sample-512M:$cache/sample-512M.img"; do
	name=${pair%%:*}
	in=${pair#*:}
	echo "codecs.sh: $name ($in)" >&2
	"$CODECS" -q -j "$outdir/$name.json" "$in" > "$outdir/$name.md.tmp"
	mv "$outdir/$name.md.tmp" "$outdir/$name.md"
	cat "$outdir/$name.md"
done
