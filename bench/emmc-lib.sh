# shellcheck shell=bash
# Sourced by bench/emmc.sh, bench/run.sh, bench/hot.sh and
# bench/first-touch-ab.sh: an emulated eMMC-class device holding a
# filesystem. The files are copied into an ext4 image, every block written;
# qemu-storage-daemon exports the image
# through FUSE behind one throttle group (bytes and read IOPS per second,
# as one flash chip has), reading it with O_DIRECT (cache.direct=on) so
# that the host page cache of the image never serves a read; a read-only
# loop device over the export (direct I/O, so the FUSE file caches
# nothing) is mounted, and the files are read from there, through ext4's
# page cache and the block layer's readahead (EMMC_RA_KB, default 128 KiB:
# a block device's default, as an mmcblk device has), as on a tablet.
#
# Why not the FUSE file itself, as before 2026-12-02 (doc/BENCHMARKS.md 5,
# 9): qemu-storage-daemon's FUSE export reports a new mtime at every
# attribute refresh (1 s), and the kernel then invalidates the file's page
# cache in the middle of reads (fuse_file_read_iter -> fuse_do_getattr ->
# invalidate_inode_pages2_range): pages read ahead but not yet copied, and
# pages a lazy load had mapped, were read again. An eager load with 16 MiB
# in flight read 1.10x the file's bytes from the device; one read() at a
# time lost almost nothing, so the loaders were measured 1.05-1.5x slower
# than the device on that emulation only.
#
# The files inside the image can have any size. emmc_pack_padded (a
# snapshot padded to a multiple of 512 bytes with tiny metadata records)
# was needed when each file was a FUSE export (a block device's size);
# bench/run.sh still pads, so that its inputs stay the bytes of earlier runs.
#
# Functions (callers set -u; each returns non-zero with a message on stderr):
#   emmc_check                      qemu-storage-daemon, /dev/fuse, loop
#                                   devices, mkfs.ext4 and mount usable
#   emmc_pack_padded FVMSNAP OUT PACK_ARGS...   fvmsnap pack ... -o OUT, padded
#   emmc_start DIR BPS IOPS FILE...  the device in DIR (its image, export,
#                                   loop device and mount); FILE i is
#                                   EMMC_VIEWS[i] on it, read-only
#   emmc_stop                       unmounts, detaches the loop device, stops
#                                   the daemon, removes the image
#   emmc_prime BPS VIEW             uses up the throttle's initial burst
# State: EMMC_QSD_PID, EMMC_VIEWS (array), EMMC_LOG, EMMC_LOOP, EMMC_DIR.
# Call emmc_stop from the caller's EXIT trap.

EMMC_QSD_PID=
EMMC_VIEWS=()
EMMC_LOG=
EMMC_LOOP=
EMMC_DIR=

emmc_check() {
	local c
	command -v qemu-storage-daemon >/dev/null ||
		{ echo "no qemu-storage-daemon (apt-get install qemu-system-x86)" >&2; return 1; }
	[ -c /dev/fuse ] || { echo "no /dev/fuse: FUSE export impossible here" >&2; return 1; }
	[ -r /dev/fuse ] && [ -w /dev/fuse ] ||
		{ echo "/dev/fuse not accessible (run as root)" >&2; return 1; }
	for c in losetup mkfs.ext4 mount umount; do
		command -v $c >/dev/null ||
			{ echo "no $c (apt-get install util-linux e2fsprogs mount)" >&2; return 1; }
	done
	[ -w /dev/loop-control ] || { echo "no loop devices (/dev/loop-control)" >&2; return 1; }
}

emmc_pack_padded() {
	local fvmsnap=$1 out=$2 size pad i n
	local meta=()
	shift 2
	# Adding records moves nothing but the index and footer; two tries
	# suffice, a third catches a record that changed the alignment.
	for _ in 1 2 3; do
		"$fvmsnap" pack -q "$@" "${meta[@]}" -o "$out" || return 1
		size=$(stat -c %s "$out")
		pad=$(((512 - size % 512) % 512))
		[ "$pad" = 0 ] && return 0
		n=$((${#meta[@]} / 2))
		for ((i = n; i < n + pad / 8; i++)); do
			meta+=(--meta "fvm.bench.pad$i=1")
		done
	done
	echo "could not pad $out to a multiple of 512 bytes ($size)" >&2
	return 1
}

emmc_mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; }

emmc_stop() {
	local v
	if [ -n "$EMMC_DIR" ]; then
		emmc_mounted "$EMMC_DIR/mnt" && { umount "$EMMC_DIR/mnt" || umount -l "$EMMC_DIR/mnt"; }
	fi
	[ -n "$EMMC_LOOP" ] && losetup -d "$EMMC_LOOP" 2>/dev/null
	EMMC_LOOP=
	if [ -n "$EMMC_QSD_PID" ]; then
		kill "$EMMC_QSD_PID" 2>/dev/null
		wait "$EMMC_QSD_PID" 2>/dev/null
		EMMC_QSD_PID=
	fi
	if [ -n "$EMMC_DIR" ]; then
		# The daemon unmounts on SIGTERM; a killed one leaves the mount.
		v=$EMMC_DIR/dev
		emmc_mounted "$v" && umount "$v" 2>/dev/null
		emmc_mounted "$v" && umount -l "$v" 2>/dev/null
		rm -f "$EMMC_DIR/emmc.img"
	fi
	EMMC_DIR=
	return 0
}

emmc_start() {
	local dir=$1 bps=$2 iops=$3 i k f size=0 img
	shift 3
	EMMC_VIEWS=()
	EMMC_DIR=$dir
	EMMC_LOG=$dir/qsd.log
	img=$dir/emmc.img
	mkdir -p "$dir/mnt" || return 1
	for f in "$@"; do
		EMMC_VIEWS+=("$dir/mnt/${#EMMC_VIEWS[@]}.${f##*/}")
		size=$((size + $(stat -c %s "$f")))
	done
	# room for ext4's metadata (no journal: the device is read-only)
	size=$(((size * 105 / 100 / 1048576 + 64) / 4 * 4))
	mkfs.ext4 -q -F -b 4096 -m 0 -O ^has_journal "$img" "${size}M" >"$dir/mkfs.log" 2>&1 ||
		{ cat "$dir/mkfs.log" >&2; return 1; }
	# Filled through a loop device of its own, every block written: mkfs's
	# -d would leave all-zero blocks as holes, which the device never reads
	# (a snapshot's 2 MiB pages hold many), and a tablet's file has none.
	EMMC_LOOP=$(losetup -f --show "$img") || { echo "losetup of $img failed" >&2; return 1; }
	mount -t ext4 "$EMMC_LOOP" "$dir/mnt" || { echo "mount of $img failed" >&2; return 1; }
	i=0
	for f in "$@"; do
		cp --sparse=never "$f" "${EMMC_VIEWS[$i]}" || return 1
		i=$((i + 1))
	done
	umount "$dir/mnt" && losetup -d "$EMMC_LOOP" || { echo "cannot release $img" >&2; return 1; }
	EMMC_LOOP=
	sync "$img"
	: >"$dir/dev"
	qemu-storage-daemon \
		--object "throttle-group,id=tg0,x-bps-read=$bps,x-iops-read=$iops" \
		--blockdev "driver=file,node-name=f0,filename=$img,read-only=on,cache.direct=on" \
		--blockdev "driver=throttle,node-name=t0,file=f0,throttle-group=tg0,read-only=on" \
		--export "type=fuse,id=e0,node-name=t0,mountpoint=$dir/dev" >"$EMMC_LOG" 2>&1 &
	EMMC_QSD_PID=$!
	for ((k = 0; k < 100; k++)); do
		kill -0 "$EMMC_QSD_PID" 2>/dev/null || {
			EMMC_QSD_PID=
			cat "$EMMC_LOG" >&2
			echo "qemu-storage-daemon exited (FUSE export impossible?)" >&2
			return 1
		}
		emmc_mounted "$dir/dev" && [ "$(stat -c %s "$dir/dev")" = "$(stat -c %s "$img")" ] && break
		sleep 0.1
	done
	[ $k -lt 100 ] || { cat "$EMMC_LOG" >&2; echo "the export $dir/dev did not come up in 10 s" >&2; return 1; }
	EMMC_LOOP=$(losetup -f --show -r --direct-io=on "$dir/dev") ||
		{ echo "losetup of $dir/dev failed" >&2; return 1; }
	echo "${EMMC_RA_KB:-128}" >"/sys/block/${EMMC_LOOP#/dev/}/queue/read_ahead_kb" ||
		{ echo "cannot set $EMMC_LOOP's read_ahead_kb" >&2; return 1; }
	mount -t ext4 -o ro,noload "$EMMC_LOOP" "$dir/mnt" ||
		{ echo "mount of $EMMC_LOOP on $dir/mnt failed" >&2; return 1; }
	i=0
	for f in "$@"; do
		[ "$(stat -c %s "${EMMC_VIEWS[$i]}")" = "$(stat -c %s "$f")" ] ||
			{ echo "${EMMC_VIEWS[$i]}: not the size of $f" >&2; return 1; }
		i=$((i + 1))
	done
}

# A throttle group lets BPS/10 bytes through at full speed after a pause
# (QEMU's leaky bucket drains at BPS while idle, and with no bps-max its
# size is BPS/10); that credit would go to whichever run comes first (the
# reference, as every fvmsnap bench begins with it), so use it up with a
# read that leaves no page cache behind: of the loop device (O_DIRECT, at
# least 64 MiB), or of VIEW where there is none. bench/run.sh does so
# before every run.
emmc_prime() {
	local bps=$1 view=$2 n
	n=$((bps / 10 / 1048576 + 1))
	[ -n "$EMMC_LOOP" ] && view=$EMMC_LOOP
	dd if="$view" of=/dev/null bs=1M count=$n iflag=direct status=none 2>/dev/null ||
		dd if="$view" of=/dev/null bs=1M count=$n iflag=nocache status=none
}
