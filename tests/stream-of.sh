#!/bin/bash
# A QEMU migration stream of a RAM image, for the tests that kill, starve
# or fill the disk under fvmsnap convert (kill.sh, limits.sh, fulldisk.sh):
# the device state of the synthetic corpus stream, its RAM section made to
# declare the image's size, packed with the image as pc.ram and exported.
# usage: stream-of.sh FVMSNAP RAM_IMAGE OUT   (writes OUT.fvm and OUT.mig)
set -u
fvmsnap=$1 img=$2 out=$3
corpus=$(realpath "$(dirname "$0")/../fuzz/corpus")
t=$(mktemp -d "${out}.stream-of.XXXXXX") || exit 1
trap 'rm -rf "$t"' EXIT
"$fvmsnap" convert -q --no-fsync "$corpus/stream/synthetic-good.mig" -o "$t/syn.fvm" &&
	"$fvmsnap" unpack -q "$t/syn.fvm" -o "$t/syn" || exit 1
python3 - "$t" "$(stat -c %s "$img")" <<'PY' || exit 1
import sys
t, size = sys.argv[1], int(sys.argv[2])
d = bytearray(open(t + "/syn/devstate-1-qemu.ram-section.bin", "rb").read())
i = d.index(b"\x06pc.ram") + 7   # idstr, then the block's length (be64)
d[i:i + 8] = size.to_bytes(8, "big")
open(t + "/ramsect.bin", "wb").write(d)
PY
"$fvmsnap" pack -q --no-fsync --block pc.ram="$img" --block rom="$t/syn/rom.raw" \
	--devstate qemu.pre-ram="$t/syn/devstate-0-qemu.pre-ram.bin" \
	--devstate qemu.ram-section="$t/ramsect.bin" \
	--devstate qemu.ram-mid="$t/syn/devstate-2-qemu.ram-mid.bin" \
	--devstate qemu.post-ram="$t/syn/devstate-3-qemu.post-ram.bin" \
	--meta machine=pc-i440fx-7.2 -o "$out.fvm" &&
	"$fvmsnap" export -q "$out.fvm" -o "$out.mig"
