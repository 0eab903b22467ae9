#!/bin/sh
# Builds the small real guest the QEMU integration tests boot: a Debian
# kernel (linux-image from the configured apt sources, unpacked with dpkg -x,
# not installed) and a busybox-static initramfs whose init fills part of
# guest memory with random data and text and prints a heartbeat on ttyS0.
#
# Usage: build-guest.sh CACHEDIR
# Leaves CACHEDIR/vmlinuz and CACHEDIR/initrd.gz. Both are cached: a second
# run downloads nothing. The init script is versioned by its own hash so an
# edit here rebuilds the initramfs but never re-downloads the kernel.
# Exit 0 on success, 77 (skip) when apt-get/dpkg/busybox/cpio are missing.
set -eu

cache=${1:?usage: build-guest.sh CACHEDIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

for t in apt-get apt-cache dpkg cpio gzip; do
	command -v "$t" >/dev/null 2>&1 || { echo "build-guest: $t missing" >&2; exit 77; }
done
# Only a static busybox runs inside an initramfs without libc.
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ! ldd "$busybox" 2>&1 | grep -q 'not a dynamic'; then
	echo "build-guest: busybox-static not installed (/bin/busybox must be static)" >&2
	exit 77
fi

# Serialise concurrent test scripts building the same cache.
exec 9>"$cache/.lock"
flock 9 2>/dev/null || true

# ---- kernel ---------------------------------------------------------------
if [ ! -s "$cache/vmlinuz" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-/{print $2; exit}')
	[ -n "$pkg" ] || { echo "build-guest: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
	dl="$cache/dl"
	rm -rf "$dl"; mkdir -p "$dl"
	# apt warns when root downloads into a folder _apt cannot write: harmless.
	(cd "$dl" && apt-get download "$pkg" >apt.log 2>&1) ||
		{ cat "$dl/apt.log" >&2; echo "build-guest: apt-get download $pkg failed" >&2; exit 1; }
	dpkg -x "$dl"/*.deb "$dl/x"
	k=$(find "$dl/x/boot" -name 'vmlinuz-*' | head -n 1)
	cp "$k" "$cache/vmlinuz.tmp" && mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
	echo "$pkg" > "$cache/vmlinuz.pkg"
	rm -rf "$dl"
fi

# ---- initramfs --------------------------------------------------------------
# The guest's init. RANDOM_MB of random data lands in a tmpfs (i.e. in guest
# RAM) so snapshots carry real, incompressible page content; text files give
# compressible content. Ten times a second it prints "HB <n>" and rewrites a
# small churn file, so guest RAM differs between two snapshots taken seconds
# apart. The heartbeat is the liveness proof after a restore, and its first
# line after `cont` times how soon a restored guest runs (bench/restore.sh,
# bench/hot.sh): at one beat a second every restore waited for the guest's
# own sleep, about a second, whatever the restore did.
init=$(cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /data
mount -t tmpfs -o size=200m tmpfs /data
RANDOM_MB=80
for a in $(cat /proc/cmdline); do
	case "$a" in fvm.random_mb=*) RANDOM_MB=${a#fvm.random_mb=} ;; esac
done
dd if=/dev/urandom of=/data/random.bin bs=1M count=$RANDOM_MB 2>/dev/null
i=0
while [ $i -lt 20000 ]; do
	echo "libfastvm guest text line $i: the quick brown fox jumps over the lazy dog"
	i=$((i + 1))
done > /data/text.txt
echo "FVM-READY random_mb=$RANDOM_MB"
n=0
while true; do
	n=$((n + 1))
	echo "heartbeat $n $(date +%s)" > /data/churn.txt
	dd if=/dev/urandom of=/data/churn.bin bs=4k count=16 2>/dev/null
	echo "HB $n"
	usleep 100000
done
EOF
)
sum=$(printf '%s' "$init" | md5sum | cut -c1-12)
if [ ! -s "$cache/initrd.gz" ] || [ "$(cat "$cache/initrd.sum" 2>/dev/null)" != "$sum" ]; then
	root="$cache/initrd.d"
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
	cp "$busybox" "$root/bin/busybox"
	printf '%s\n' "$init" > "$root/init"
	chmod 755 "$root/init" "$root/bin/busybox"
	(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$cache/initrd.tmp"
	mv "$cache/initrd.tmp" "$cache/initrd.gz"
	echo "$sum" > "$cache/initrd.sum"
	rm -rf "$root"
fi
echo "$cache"
