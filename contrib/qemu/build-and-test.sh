#!/bin/bash
# Builds QEMU VERSION (7.2: Debian 12's source; 10.0: bookworm-backports')
# with the libfastvm hook of contrib/qemu/VERSION/*.patch, linked against the
# libfastvm of the build directory, and runs the end-to-end test
# tests/qemu/s8-hook.sh with it:
#   1. libfastvm installed from FVM_BUILD_DIR (default: build) into
#      CACHE/fvm-root, its pkg-config file pointing there;
#   2. the source fetched with apt (fetch-source.sh), copied to
#      CACHE/qemu-VERSION-fvm and patched (again whenever the series changes);
#   3. configured for x86_64 system emulation, TCG only, no docs, and
#      qemu-system-x86_64 built (2-3 minutes on 2 cores; kept between runs);
#   4. checked to be linked to that libfastvm, then the test.
# CACHE is FVM_QEMU_CACHE (default BUILD/qemu-cache), shared with the QEMU
# suite. Needs root for apt the first time (deb-src entries, build deps).
# Exit 77 (skip) when it cannot get its build dependencies (not root).
# Usage: contrib/qemu/build-and-test.sh 7.2|10.0 [--build-only]
set -euo pipefail
ver=${1:?usage: build-and-test.sh 7.2|10.0 [--build-only]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${FVM_BUILD_DIR:-$root/build}" && pwd)
cache=${FVM_QEMU_CACHE:-$build/qemu-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
log() { printf '[build-and-test %s %4ds] %s\n' "$ver" "$SECONDS" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[ -d "$here/$ver" ] || die "no patch series for QEMU '$ver' (contrib/qemu/7.2, contrib/qemu/10.0)"
series=("$here/$ver"/*.patch)

# build dependencies of a minimal QEMU (Debian 12 packages)
deps=(libglib2.0-dev libpixman-1-dev libfdt-dev flex bison python3-venv ninja-build pkg-config gcc
	dpkg-dev bzip2 xz-utils patch)
missing=()
for p in "${deps[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		log "SKIP: missing build dependencies: ${missing[*]} (apt-get install them as root)"
		exit 77
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# 1. the libfastvm just built, installed into the cache
ninja -C "$build" >/dev/null
inst=$cache/fvm-root
rm -rf "$inst"
DESTDIR=$inst meson install -C "$build" --no-rebuild --quiet
pc=$(find "$inst" -name libfastvm.pc | head -n 1)
[ -n "$pc" ] || die "meson install put no libfastvm.pc into $inst"
prefix=$(sed -n 's/^prefix=//p' "$pc")
sed -i "s|^prefix=.*|prefix=$inst$prefix|" "$pc"
export PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
libdir=$(pkg-config --variable=libdir libfastvm)
log "libfastvm $(pkg-config --modversion libfastvm) in $libdir"

# QEMU 10.0 needs meson >= 1.5 and pycotap; Debian 12 has meson 1.0 and no
# pycotap, bookworm-backports has both (meson 1.7): unpacked into the cache,
# not installed, and put first on PATH and PYTHONPATH.
if [ "$ver" = 10.0 ]; then
	mroot=$cache/meson-bpo
	if [ ! -x "$mroot/usr/bin/meson" ] || [ ! -d "$mroot/usr/lib/python3/dist-packages/pycotap" ]; then
		log "fetching meson and python3-pycotap from bookworm-backports"
		rm -rf "$mroot.dl" "$mroot"
		mkdir -p "$mroot.dl"
		for p in meson python3-pycotap; do
			(cd "$mroot.dl" && apt-get download -q "$p/bookworm-backports" >/dev/null 2>&1) ||
				die "apt-get download $p/bookworm-backports failed (is bookworm-backports in the apt sources? tests/qemu/setup-qemu10.sh adds it)"
		done
		for d in "$mroot.dl"/*.deb; do
			dpkg -x "$d" "$mroot"
		done
		rm -rf "$mroot.dl"
	fi
	export PATH=$mroot/usr/bin:$PATH
	export PYTHONPATH=$mroot/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}
	log "meson $(meson --version) for QEMU 10.0"
fi

# 2. the source, patched
src=$("$here/fetch-source.sh" "$ver" "$cache") || {
	rc=$?
	[ "$(id -u)" = 0 ] || { log "SKIP: cannot fetch the QEMU $ver source (not root)"; exit 77; }
	exit $rc
}
log "source $(cat "$src/.fetched")"
tree=$cache/qemu-$ver-fvm
stamp=$(cat "${series[@]}" | sha256sum | cut -c1-16)
if [ "$(cat "$tree/.series" 2>/dev/null || true)" != "$stamp" ]; then
	log "patching a copy of the source with ${#series[@]} patches"
	rm -rf "$tree" "$tree.tmp"
	cp -a "$src" "$tree.tmp"
	for p in "${series[@]}"; do
		patch -d "$tree.tmp" -p1 --batch --forward --quiet <"$p" ||
			die "$(basename "$p") does not apply to $(cat "$src/.fetched")"
	done
	# Debian's repacked source lacks the EDK2 firmware blobs, which QEMU's
	# pc-bios/meson.build unpacks whenever bzip2 is installed: empty
	# stand-ins let it configure (the tests use Debian's firmware, -L)
	for f in $(sed -n '/fds = \[/,/\]/p' "$tree.tmp/pc-bios/meson.build" | grep -o "edk2-[a-z0-9_-]*\.fd"); do
		[ -e "$tree.tmp/pc-bios/$f.bz2" ] || bzip2 -c </dev/null >"$tree.tmp/pc-bios/$f.bz2"
	done
	echo "$stamp" >"$tree.tmp/.series"
	mv "$tree.tmp" "$tree"
fi

# 3. configure (once) and build
if [ ! -f "$tree/build/build.ninja" ]; then
	log "configuring"
	mkdir -p "$tree/build"
	(cd "$tree/build" && ../configure --target-list=x86_64-softmmu \
		--without-default-features --enable-tcg --disable-docs --disable-werror \
		--disable-install-blobs --extra-ldflags="-Wl,-rpath,$libdir") \
		>"$tree/configure.log" 2>&1 || { tail -n 30 "$tree/configure.log" >&2; die "configure failed"; }
fi
grep -q 'libfastvm snapshots *: YES' "$tree/configure.log" ||
	die "configure did not find libfastvm (see $tree/configure.log)"
log "building qemu-system-x86_64"
ninja -C "$tree/build" qemu-system-x86_64 >"$tree/build.log" 2>&1 ||
	{ grep -E 'error|FAILED' "$tree/build.log" | head -n 30 >&2; die "build failed (see $tree/build.log)"; }
bin=$tree/build/qemu-system-x86_64

# 4. linked to this libfastvm, then the end-to-end test (grep reads all of ldd:
# with -q it may stop first, and pipefail then sees ldd killed by SIGPIPE)
ldd "$bin" | grep "libfastvm.so.0 => $libdir/" >/dev/null ||
	die "$bin is not linked to $libdir/libfastvm.so.0: $(ldd "$bin" | grep fastvm)"
log "$("$bin" --version | head -n 1) built, linked to $libdir/libfastvm.so.0"
[ "${2:-}" = --build-only ] && exit 0
FVM_QEMU_CACHE=$cache FVM_BUILD_DIR=$build FVM_S8_VERSION=$ver \
	"$root/tests/qemu/s8-hook.sh" "$build/tools/fvmsnap"
