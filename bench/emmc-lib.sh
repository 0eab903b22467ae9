# shellcheck shell=bash
# Sourced by bench/emmc.sh and bench/run.sh: an emulated eMMC-class device.
# qemu-storage-daemon exports files through FUSE behind one throttle group
# (bytes and read IOPS per second, shared by every file of the export, as
# one flash chip is), reading the backing files with O_DIRECT
# (cache.direct=on) so that the host page cache of the backing file never
# serves a read. A FUSE export has the size of a block device, the file's
# size rounded up to 512 bytes, and a snapshot's footer must be its last 32
# bytes: emmc_pack_padded pads a snapshot to a multiple of 512 bytes with
# tiny metadata records (fvm.bench.padN=1, 8 index bytes each) instead of
# appending bytes.
#
# Functions (callers set -u; each returns non-zero with a message on stderr):
#   emmc_check                      qemu-storage-daemon and /dev/fuse usable
#   emmc_pack_padded FVMSNAP OUT PACK_ARGS...   fvmsnap pack ... -o OUT, padded
#   emmc_start DIR BPS IOPS FILE...  one daemon, FILE i exported read-only on
#                                   DIR/view.i (EMMC_VIEWS[i]); waits until
#                                   each view has its file's size
#   emmc_stop                       stops the daemon, unmounts every view
#   emmc_prime BPS VIEW             uses up the throttle's initial burst
# State: EMMC_QSD_PID, EMMC_VIEWS (array), EMMC_LOG. Call emmc_stop from the
# caller's EXIT trap.

EMMC_QSD_PID=
EMMC_VIEWS=()
EMMC_LOG=

emmc_check() {
	command -v qemu-storage-daemon >/dev/null ||
		{ echo "no qemu-storage-daemon (apt-get install qemu-system-x86)" >&2; return 1; }
	[ -c /dev/fuse ] || { echo "no /dev/fuse: FUSE export impossible here" >&2; return 1; }
	[ -r /dev/fuse ] && [ -w /dev/fuse ] ||
		{ echo "/dev/fuse not accessible (run as root)" >&2; return 1; }
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
	if [ -n "$EMMC_QSD_PID" ]; then
		kill "$EMMC_QSD_PID" 2>/dev/null
		wait "$EMMC_QSD_PID" 2>/dev/null
		EMMC_QSD_PID=
	fi
	# The daemon unmounts on SIGTERM; a killed one leaves the mounts.
	for v in "${EMMC_VIEWS[@]}"; do
		emmc_mounted "$v" && umount "$v" 2>/dev/null
		emmc_mounted "$v" && umount -l "$v" 2>/dev/null
	done
	return 0
}

emmc_start() {
	local dir=$1 bps=$2 iops=$3 i k ok f
	local args=()
	shift 3
	EMMC_VIEWS=()
	EMMC_LOG=$dir/qsd.log
	i=0
	for f in "$@"; do
		[ $(($(stat -c %s "$f") % 512)) = 0 ] ||
			{ echo "$f: size not a multiple of 512 (emmc_pack_padded)" >&2; return 1; }
		EMMC_VIEWS+=("$dir/view.$i")
		: >"$dir/view.$i"
		args+=(--blockdev "driver=file,node-name=f$i,filename=$f,read-only=on,cache.direct=on"
			--blockdev "driver=throttle,node-name=t$i,file=f$i,throttle-group=tg0,read-only=on"
			--export "type=fuse,id=e$i,node-name=t$i,mountpoint=$dir/view.$i")
		i=$((i + 1))
	done
	qemu-storage-daemon \
		--object "throttle-group,id=tg0,x-bps-read=$bps,x-iops-read=$iops" \
		"${args[@]}" >"$EMMC_LOG" 2>&1 &
	EMMC_QSD_PID=$!
	for ((k = 0; k < 100; k++)); do
		kill -0 "$EMMC_QSD_PID" 2>/dev/null || {
			EMMC_QSD_PID=
			cat "$EMMC_LOG" >&2
			echo "qemu-storage-daemon exited (FUSE export impossible?)" >&2
			return 1
		}
		ok=1
		i=0
		for f in "$@"; do
			emmc_mounted "${EMMC_VIEWS[$i]}" &&
				[ "$(stat -c %s "${EMMC_VIEWS[$i]}" 2>/dev/null)" = "$(stat -c %s "$f")" ] ||
				ok=0
			i=$((i + 1))
		done
		[ $ok = 1 ] && return 0
		sleep 0.1
	done
	cat "$EMMC_LOG" >&2
	echo "the views in $dir did not get their files' sizes within 10 s" >&2
	return 1
}

# A fresh throttle group lets its first BPS/10 bytes through at full speed;
# that credit would go to whichever run comes first (the reference), so use
# it up with a read that leaves no page cache behind.
emmc_prime() {
	local bps=$1 view=$2
	dd if="$view" of=/dev/null bs=1M count=$((bps / 10 / 1048576 + 1)) \
		iflag=direct status=none 2>/dev/null ||
		dd if="$view" of=/dev/null bs=1M count=$((bps / 10 / 1048576 + 1)) \
			iflag=nocache status=none
}
