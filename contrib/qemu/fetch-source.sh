#!/bin/sh
# Fetches Debian's QEMU source package (Debian's patches applied) into
# CACHEDIR/qemu-VERSION-src and prints that directory. VERSION is 7.2 (Debian
# 12, bookworm) or 10.0 (bookworm-backports). Adds the deb-src entries (as
# root) when they are missing; installs nothing else. Idempotent.
# Usage: fetch-source.sh VERSION CACHEDIR
set -eu
ver=${1:?usage: fetch-source.sh 7.2|10.0 CACHEDIR}
cache=${2:?usage: fetch-source.sh 7.2|10.0 CACHEDIR}
case $ver in
7.2) suite=bookworm; pkgver='1:7.2+dfsg-7+deb12u*' ;;
10.0) suite=bookworm-backports; pkgver='1:10.0*' ;;
*) echo "fetch-source: unknown QEMU version '$ver' (7.2 or 10.0)" >&2; exit 2 ;;
esac
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
dest=$cache/qemu-$ver-src
if [ -f "$dest/.fetched" ]; then
	echo "$dest"
	exit 0
fi

srcfile=/etc/apt/sources.list.d/fvm-deb-src.sources
if ! apt-cache showsrc qemu 2>/dev/null | grep -q "^Version: 1:$ver"; then
	[ "$(id -u)" = 0 ] || { echo "fetch-source: no deb-src entry for QEMU $ver and not root" >&2; exit 1; }
	uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[ -n "$uri" ] || uri=$(awk '/^deb / && / bookworm / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$uri" ] || uri=http://deb.debian.org/debian
	cat > "$srcfile" <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm bookworm-updates bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq
fi
# the newest source of that series
full=$(apt-cache showsrc qemu | awk '/^Version:/ {print $2}' | grep "^1:$ver" | sort -V | tail -n 1)
[ -n "$full" ] || { echo "fetch-source: apt knows no QEMU $ver source" >&2; exit 1; }
dl=$cache/qemu-$ver-dl
rm -rf "$dl" "$dest"
mkdir -p "$dl"
note=
if ! (cd "$dl" && apt-get source -q "qemu=$full") >"$dl/apt.log" 2>&1; then
	# Some mirrors serve the upstream tarball of a backport but not its
	# .dsc and Debian diff (404): apt checked the tarball's hash against
	# the Sources index, so build upstream's source, and say so.
	orig=$(find "$dl" -maxdepth 1 -name 'qemu_*.orig.tar.*' | head -n 1)
	if [ -z "$orig" ] || ! grep -q '404' "$dl/apt.log"; then
		tail -n 30 "$dl/apt.log" >&2
		exit 1
	fi
	echo "fetch-source: the Debian packaging of qemu $full is not on the mirror" \
		"(404); using its upstream tarball $(basename "$orig") without Debian's patches" >&2
	(cd "$dl" && tar xf "$orig")
	note=" (upstream tarball only: $(grep -m1 '^E:.*404' "$dl/apt.log" | cut -c1-160))"
fi
d=$(find "$dl" -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -n 1)
[ -n "$d" ] && [ -f "$d/VERSION" ] || { echo "fetch-source: no unpacked tree in $dl" >&2; exit 1; }
mv "$d" "$dest"
echo "$full$note" > "$dest/.fetched"
rm -rf "$dl"
echo "$dest"
