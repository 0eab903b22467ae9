#!/bin/sh
# Unpacks QEMU 10.0 from Debian's bookworm-backports beside the installed 7.2,
# for scenario 6 of the QEMU suite (s6-qemu10.sh). Nothing is installed: the
# three packages are fetched with apt-get download and unpacked with dpkg -x
# into CACHEDIR/qemu10 (CACHEDIR as FVM_QEMU_CACHE, default BUILD/qemu-cache).
# Adds the bookworm-backports apt source (as root) when it is missing.
# Usage: setup-qemu10.sh CACHEDIR     (.ci/run calls it; idempotent)
set -eu
cache=${1:?usage: setup-qemu10.sh CACHEDIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
dest="$cache/qemu10"
if [ -x "$dest/usr/bin/qemu-system-x86_64" ]; then
	echo "$dest"
	exit 0
fi

if ! apt-cache policy qemu-system-x86 2>/dev/null | grep -q bookworm-backports; then
	[ "$(id -u)" = 0 ] || { echo "setup-qemu10: bookworm-backports not in apt sources and not root" >&2; exit 1; }
	# the same mirror the machine already uses for bookworm
	uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	[ -n "$uri" ] || uri=$(awk '/^deb / && / bookworm / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$uri" ] || { echo "setup-qemu10: no bookworm apt source found to derive backports from" >&2; exit 1; }
	cat > /etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	apt-get update -qq
fi

dl="$cache/qemu10.dl"
rm -rf "$dl" "$dest.tmp"
mkdir -p "$dl" "$dest.tmp"
(cd "$dl" && apt-get download -q \
	qemu-system-x86/bookworm-backports \
	qemu-system-common/bookworm-backports \
	qemu-system-data/bookworm-backports) 2>"$dl/apt.err" ||
	{ cat "$dl/apt.err" >&2; exit 1; }
for d in "$dl"/*.deb; do
	dpkg -x "$d" "$dest.tmp"
done
"$dest.tmp/usr/bin/qemu-system-x86_64" --version | head -n 1
rm -rf "$dest" && mv "$dest.tmp" "$dest"
rm -rf "$dl"
echo "$dest"
