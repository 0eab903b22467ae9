#!/bin/bash
# The arrows point one way (doc/LIBRARY.md): every #include "..." in lib/
# names a header of a lower layer, or the file's own header. A newcomer
# reads the seekable load top to bottom in load.c, plan.c and exec_uring.c;
# this keeps anything from calling back up. Tools include only the public
# headers, and tools/stock nothing of the fvmsnap command layer above it.
# usage: layers.sh SOURCE_ROOT
set -euo pipefail
src=$1
cd "$src"

# layer of each lib module (file name without .c/.h)
declare -A rank=(
	[array]=0 [crc]=0 [error]=0 [codec]=0 [pool]=0
	[io]=1 [abi]=1 [version]=0
	[format]=2 [zeroscan]=2
	[extents]=3 [frames]=3 [auth]=3
	[unframe]=4
	[model]=4 [record]=4
	[walk]=5
	[reader]=6 [plan]=6
	[exec]=7 [exec_pread]=7 [exec_mmap]=7 [exec_uring]=7 [exec_frames]=7 [uffd]=7
	[load]=8 [stream_load]=8 [prefetch]=8 [verify]=8 [writer]=8
	[compat]=9 [disk]=9
)
# a layer's shared header, usable by every file of that layer
declare -A layer_header=([exec]=7 [load]=8)
bad=0

for f in lib/*.c lib/*.h; do
	mod=$(basename "${f%.*}")
	[ -n "${rank[$mod]+x}" ] || { echo "FAIL: $f has no layer in tests/layers.sh"; bad=1; continue; }
	r=${rank[$mod]}
	while read -r h; do
		case $h in fastvm/*) continue ;; esac
		hm=${h%.h}
		[ -n "${rank[$hm]+x}" ] || { echo "FAIL: $f includes unknown $h"; bad=1; continue; }
		hr=${rank[$hm]}
		if [ "$hm" = "$mod" ]; then
			continue
		fi
		if [ "$hr" -lt "$r" ]; then
			continue
		fi
		if [ "${layer_header[$hm]:-x}" = "$r" ]; then
			continue
		fi
		echo "FAIL: $f (layer $r) includes $h (layer $hr): arrows point down only"
		bad=1
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done

libheaders=$(cd lib && ls *.h)
for f in $(find tools -name '*.[ch]'); do
	for h in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f"); do
		for l in $libheaders; do
			if [ "$(basename "$h")" = "$l" ] && [ ! -e "$(dirname "$f")/$h" ]; then
				echo "FAIL: $f includes the library's internal $h"
				bad=1
			fi
		done
	done
done
for f in $(find tools/stock tools/common -name '*.[ch]' 2>/dev/null); do
	if grep -n '^#include "\.\./\(cli\|commands\|cmd_\)' "$f"; then
		echo "FAIL: $f reaches up into the fvmsnap command layer"
		bad=1
	fi
done
[ "$bad" = 0 ] && echo "ok: every include points down"
exit "$bad"
