#!/bin/bash
# check-abi.sh can fail: libraries built here, at test time, from the 0.1
# header copy (tests/abi/v0.1) by gen-stub.py, each compared with the
# committed baseline:
#   same        every 0.1 function, 0.1 map          must pass (no change)
#   removed     fvm_verify left out                  must fail
#   moved       fvm_reader_info only in LIBFASTVM_0.2 must fail
#   changed     fvm_write_options grown in place     must fail
#   added       fvm_reader_info@LIBFASTVM_0 plus a new default
#               @@LIBFASTVM_0.2, one new function    must pass
#   new-soname  "removed" with SONAME libfastvm.so.1 must pass
#
#   tests/abi/check-abi-selftest.sh SOURCE_DIR WORK_DIR     (CC: the C compiler)
set -euo pipefail

src=$1
work=$2
here=$src/tests/abi
cc=${CC:-cc}
for t in abidw abidiff python3; do
	if ! command -v "$t" >/dev/null; then
		echo "SKIP: $t not found (Debian: apt-get install abigail-tools python3)"
		exit 77
	fi
done
rm -rf "$work"
mkdir -p "$work/changed/fastvm"
hdr=$here/v0.1/fastvm/fastvm.h
map=$here/v0.1/libfastvm.map

# build NAME HEADER_DIR MAP SONAME [gen-stub.py mode and name]
build() {
	local name=$1 inc=$2 vmap=$3 so=$4
	shift 4
	python3 "$here/gen-stub.py" "$inc/fastvm/fastvm.h" "$work/$name.c" "$@"
	$cc -g -O2 -fPIC -shared -fvisibility=hidden -Wno-unused-parameter -I"$inc" \
		-Wl,-soname,"$so" -Wl,--version-script="$vmap" -o "$work/$name.so" "$work/$name.c"
}

# every 0.1 function in LIBFASTVM_0 but `moved`, which is in LIBFASTVM_0.2 only
{
	echo 'LIBFASTVM_0 {'
	echo '  global:'
	python3 "$here/gen-stub.py" "$hdr" --list | grep -vx fvm_reader_info | sed 's/.*/    &;/'
	echo '  local:'
	echo '    *;'
	echo '};'
	echo 'LIBFASTVM_0.2 { global: fvm_reader_info; } LIBFASTVM_0;'
} >"$work/moved.map"
printf '%s\n' 'LIBFASTVM_0 {' '  global:' '    fvm_*;' '  local:' '    *;' '};' \
	'LIBFASTVM_0.2 { global: fvm_abi_selftest_new; } LIBFASTVM_0;' >"$work/added.map"
sed 's/^\tuint64_t max_run_bytes;/\tuint32_t inserted;\n&/' "$hdr" >"$work/changed/fastvm/fastvm.h"
grep -q inserted "$work/changed/fastvm/fastvm.h"

build same "$here/v0.1" "$map" libfastvm.so.0
build removed "$here/v0.1" "$map" libfastvm.so.0 --omit fvm_verify
build moved "$here/v0.1" "$work/moved.map" libfastvm.so.0
build changed "$work/changed" "$map" libfastvm.so.0
build added "$here/v0.1" "$work/added.map" libfastvm.so.0 --new-version fvm_reader_info
build new-soname "$here/v0.1" "$map" libfastvm.so.1 --omit fvm_verify

fail=0
expect() {
	local want=$1 name=$2 inc=$3 rc=0
	echo
	echo "######## $name: check-abi.sh must $want"
	"$here/check-abi.sh" --headers "$inc/fastvm" "$work/$name.so" "$src" || rc=$?
	if { [ "$want" = pass ] && [ "$rc" != 0 ]; } || { [ "$want" = fail ] && [ "$rc" != 1 ]; }; then
		echo "######## $name: WRONG: check-abi.sh exited $rc, expected to $want"
		fail=1
	else
		echo "######## $name: ok (exit $rc)"
	fi
}
expect pass same "$here/v0.1"
expect fail removed "$here/v0.1"
expect fail moved "$here/v0.1"
expect fail changed "$work/changed"
expect pass added "$here/v0.1"
expect pass new-soname "$here/v0.1"
echo
[ "$fail" = 0 ] && echo "check-abi.sh accepts and rejects what it should"
exit "$fail"
