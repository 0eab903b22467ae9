#!/bin/bash
# The real-content guest of issue 9: guest RAM that holds what real guests
# hold (libraries, programs, documentation, locale data, an interpreter's
# heap, page cache), not the random bytes of the test guest, as the input of
# the codec measurement (bench/codecs.c) and of the load benchmarks.
#
# Built like tests/qemu/build-guest.sh, from Debian packages only: the same
# Debian kernel (dpkg -x, not installed) and a busybox-static initramfs that
# also carries every file of the packages in PKGS below, copied from this
# Debian host (dpkg -L of each installed package: they are those packages'
# files as installed). The initramfs is an uncompressed newc cpio: under TCG
# the kernel unpacks it about as fast as it copies, a gzip'd one of this
# size takes far longer (the boot time is printed). The guest's init moves
# the tree into a tmpfs, runs real programs from it in a chroot (the
# dynamic loader, sort, gzip, md5sum, find, perl, python3.11 with json,
# sqlite3 and zlib) and then prints "HB n" every second on ttyS0, as the
# test guest does.
#
# Then: boot with 1 GiB of RAM under the stock qemu-system-x86_64 (TCG),
# wait for the heartbeat, stop the VM, save a migration stream
# (migrate "exec:cat > real.mig"), convert it with the build's fvmsnap
# (real.fvm) and unpack its RAM to a raw image (pc.ram.raw), printing sizes,
# non-zero pages and the time of each step.
#
# Usage: bench/real-guest.sh CACHEDIR [FVMSNAP]
#   CACHEDIR  kernel, initramfs and the outputs: CACHEDIR/real/{vmlinuz,
#             initrd-real.cpio, pkgs.txt, real.mig, real.fvm, ram/pc.ram.raw,
#             boot.txt}. Cached: the kernel is taken from CACHEDIR/vmlinuz,
#             else from $FVM_QEMU_CACHE/vmlinuz, else build-guest.sh
#             downloads it; the initramfs is rebuilt only when this script's
#             package list or init changes; the snapshot only when the
#             initramfs is newer (FVM_REAL_REBOOT=1 forces a new one).
#   FVMSNAP   default: build/tools/fvmsnap beside this checkout.
# Exit 0, 77 when a tool is missing (qemu, socat, cpio, dpkg, busybox-static,
# fvmsnap), 1 on failure.
set -eu
set -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cache=${1:?usage: real-guest.sh CACHEDIR [FVMSNAP]}
FVMSNAP=${2:-$top/build/tools/fvmsnap}

# The tests' QEMU helpers (hmp, wait_serial, migrate_out, cleanup).
# shellcheck source=../tests/qemu/lib.sh
. "$top/tests/qemu/lib.sh"
set -e
# shellcheck disable=SC2034  # read by lib.sh's log
TEST_NAME=real-guest

for t in "$FVM_QEMU" socat cpio dpkg dpkg-query md5sum python3; do
	command -v "$t" >/dev/null 2>&1 || skip "$t not installed"
done
case "$(ldd /bin/busybox 2>&1 || true)" in *"not a dynamic"*) ;; *) false ;; esac ||
	skip "busybox-static not installed (/bin/busybox must be static)"
# el T0 T1: seconds from T0 to T1 (date +%s.%N).
el() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
[ -x "$FVMSNAP" ] || skip "fvmsnap not built at $FVMSNAP"

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
R=$cache/real
mkdir -p "$R"
exec 8>"$R/.lock"
flock 8 2>/dev/null || true

# ---- kernel -----------------------------------------------------------------
if [ ! -s "$R/vmlinuz" ]; then
	if [ -s "$cache/vmlinuz" ]; then
		cp "$cache/vmlinuz" "$R/vmlinuz"
	elif [ -n "${FVM_QEMU_CACHE:-}" ] && [ -s "$FVM_QEMU_CACHE/vmlinuz" ]; then
		cp "$FVM_QEMU_CACHE/vmlinuz" "$R/vmlinuz"
		cp "$FVM_QEMU_CACHE/vmlinuz.pkg" "$R/vmlinuz.pkg" 2>/dev/null || true
	else
		rc=0
		"$top/tests/qemu/build-guest.sh" "$cache" >/dev/null || rc=$?
		[ $rc -eq 77 ] && skip "cannot build the guest kernel (build-guest.sh)"
		[ $rc -eq 0 ] || die "build-guest.sh failed ($rc)"
		cp "$cache/vmlinuz" "$R/vmlinuz"
	fi
	[ -s "$cache/vmlinuz.pkg" ] && cp "$cache/vmlinuz.pkg" "$R/vmlinuz.pkg"
fi

# ---- content ----------------------------------------------------------------
# Debian 12 packages whose installed files the guest carries: a chroot that
# runs (libc6 ... tzdata), python3.11 and its standard library, perl, and
# large real content: LLVM 14 and ICU libraries, the GCC 12 compiler
# proper, vim's runtime files, ISO code tables and translations, locale
# sources. About 400 MiB; packages not installed here are skipped and
# listed in pkgs.txt as missing.
PKGS="libc6 libgcc-s1 libstdc++6 coreutils gzip bash sed grep findutils
libtinfo6 libselinux1 libpcre2-8-0 libacl1 libattr1 libgmp10 libcap2 zlib1g
libzstd1 liblzma5 libbz2-1.0 libcrypt1 libssl3 libffi8 libexpat1
libsqlite3-0 libuuid1 libreadline8 libncursesw6 libdb5.3 libnsl2 libtirpc3
tzdata python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
python3.11 perl-base perl-modules-5.36 libperl5.36 libllvm14 libicu72
gcc-12 vim-runtime iso-codes locales tar"

# The guest's init. rootfstype=ramfs: a tmpfs rootfs (the default) is
# capped at half the RAM, too small for the unpacked initramfs.
# The initramfs (rootfs, in RAM) holds /pkg, the package
# tree; init moves it into a tmpfs (so the bytes are copied once more
# through the page cache, as a real guest reads files), runs programs from
# it, keeps their output in the tmpfs, and ticks.
init=$(cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
up() { cut -d' ' -f1 /proc/uptime; }
echo "FVM-REAL unpacked at $(up) s"
mkdir -p /data
mount -t tmpfs -o size=900m tmpfs /data
mkdir -p /data/root /data/out
# GNU tar from the tree itself removes each file once archived, so the
# bytes are never held twice (mv of a directory across filesystems would
# copy it whole first: 2 x 400 MiB does not fit in 1 GiB).
cd /pkg
set -- *
chroot /pkg /usr/bin/tar --remove-files -C / -cf - "$@" | tar -xf - -C /data/root
cd /
mkdir -p /data/root/dev /data/root/proc /data/root/tmp
mount -o bind /dev /data/root/dev
mount -t proc proc /data/root/proc
echo "FVM-REAL moved $(du -sm /data/root | cut -f1) MiB into tmpfs at $(up) s"
c() { chroot /data/root "$@"; }
c /lib64/ld-linux-x86-64.so.2 --list /usr/bin/python3.11 > /data/out/ldd.txt
c /usr/bin/find /usr -type f > /data/root/tmp/files.txt
cp /data/root/tmp/files.txt /data/out/files.txt
c /usr/bin/sort /tmp/files.txt -o /tmp/files.sorted
c /usr/bin/sort -r /tmp/files.txt -o /tmp/files.rev
c /usr/bin/md5sum /usr/lib/x86_64-linux-gnu/libicudata.so.72 > /data/out/md5.txt
c /bin/gzip -6 -c /usr/share/iso-codes/json/iso_639-3.json > /data/out/iso.json.gz
c /usr/bin/perl -e 'my %h; while (<STDIN>) { chomp; my @p = split m{/}; $h{$p[-1]}++ } printf "%d names\n", scalar keys %h' < /data/out/files.txt > /data/out/perl.txt
c /usr/bin/python3.11 -c '
import json, sqlite3, zlib, collections
names = [l.strip() for l in open("/tmp/files.txt")]
db = sqlite3.connect(":memory:")
db.execute("create table f (path text, dir text, ext text)")
db.executemany("insert into f values (?, ?, ?)",
  [(n, n.rsplit("/", 1)[0], n.rsplit(".", 1)[-1]) for n in names])
top = db.execute("select ext, count(*) c from f group by ext order by c desc limit 20").fetchall()
iso = json.load(open("/usr/share/iso-codes/json/iso_639-3.json"))
z = zlib.compress(json.dumps(iso).encode(), 6)
cnt = collections.Counter(n.split("/")[2] for n in names if n.count("/") > 2)
open("/tmp/py.json", "w").write(json.dumps({"top": top, "z": len(z), "dirs": cnt.most_common(10)}))
print(len(names), "files,", len(z), "bytes of zlib")' > /data/out/py.txt
echo "FVM-REAL programs done at $(up) s: $(cat /data/out/py.txt); $(cat /data/out/perl.txt)"
free -m | sed -n 2p
echo "FVM-READY real"
n=0
while true; do
	n=$((n + 1))
	echo "heartbeat $n $(date +%s)" > /data/churn.txt
	echo "HB $n"
	sleep 1
done
EOF
)
sum=$( { printf '%s\n' "$PKGS"; printf '%s' "$init"; } | md5sum | cut -c1-12)
cpio_out=$R/initrd-real.cpio
if [ ! -s "$cpio_out" ] || [ "$(cat "$R/initrd.sum" 2>/dev/null)" != "$sum" ]; then
	log "building the initramfs (packages: $(printf "%s\n" $PKGS | wc -l))"
	root=$R/initrd.d
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/pkg"
	cp /bin/busybox "$root/bin/busybox"
	printf '%s\n' "$init" > "$root/init"
	chmod 755 "$root/init" "$root/bin/busybox"
	# Merged /usr, as on the host: /bin, /lib, /lib64, /sbin are links.
	mkdir -p "$root/pkg/usr/bin" "$root/pkg/usr/lib" "$root/pkg/usr/lib64" "$root/pkg/usr/sbin"
	for l in bin lib lib64 sbin; do ln -s "usr/$l" "$root/pkg/$l"; done
	list=$R/files.list
	: > "$list.raw"
	: > "$R/pkgs.txt.tmp"
	for p in $PKGS; do
		if ! v=$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null) || [ -z "$v" ]; then
			echo "missing $p" >> "$R/pkgs.txt.tmp"
			continue
		fi
		echo "$p $v" >> "$R/pkgs.txt.tmp"
		dpkg -L "$p" >> "$list.raw"
	done
	# Regular files and links (not links to directories: /lib64 and the
	# like are made above), each directory resolved as on the host
	# (/lib/x -> usr/lib/x), relative to /.
	python3 - "$list.raw" > "$list" <<'PY'
import os, sys
for f in open(sys.argv[1], encoding="utf-8", errors="surrogateescape"):
    f = f.rstrip("\n")
    if not f.startswith("/") or not os.path.lexists(f):
        continue
    if os.path.isdir(f) or not os.access(f, os.R_OK):
        continue
    d = os.path.realpath(os.path.dirname(f))
    print(os.path.join(d, os.path.basename(f)).lstrip("/"))
PY
	rm -f "$list.raw"
	sort -u "$list" -o "$list"
	(cd / && cpio -pdm --quiet "$root/pkg" < "$list")
	mv "$R/pkgs.txt.tmp" "$R/pkgs.txt"
	du -sm "$root/pkg" | cut -f1 > "$R/content.mib"
	(cd "$root" && find . | cpio -o -H newc --quiet) > "$cpio_out.tmp"
	mv "$cpio_out.tmp" "$cpio_out"
	echo "$sum" > "$R/initrd.sum"
	rm -rf "$root" "$list"
	rm -f "$R/real.mig"
fi
log "initramfs $(($(stat -c %s "$cpio_out") >> 20)) MiB, content $(cat "$R/content.mib") MiB from $(grep -vc '^missing' "$R/pkgs.txt") packages ($(grep -c '^missing' "$R/pkgs.txt" || true) missing)"

# ---- boot and save -----------------------------------------------------------
WORK=$R/work
rm -rf "$WORK"
mkdir -p "$WORK"
trap fvm_cleanup EXIT
trap 'exit 130' INT TERM
V=$WORK/vm

if [ ! -s "$R/real.mig" ] || [ "${FVM_REAL_REBOOT:-0}" = 1 ]; then
	mkdir -p "$V"
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086
	"$FVM_QEMU" $FVM_QEMU_L -accel tcg -m 1G -nodefaults -nographic \
		-serial file:"$V/serial.log" \
		-monitor unix:"$V/mon.sock",server,nowait \
		-kernel "$R/vmlinuz" -initrd "$cpio_out" \
		-append "console=ttyS0 quiet panic=-1 rootfstype=ramfs" -no-reboot \
		-pidfile "$V/qemu.pid" >"$V/qemu.out" 2>&1 &
	QEMU_PIDS+=("$!")
	VM_DIRS+=("$V")
	wait_serial "$V" 'FVM-REAL unpacked' 600
	t1=$(date +%s.%N)
	wait_serial "$V" 'FVM-READY' 900
	t2=$(date +%s.%N)
	wait_serial "$V" 'HB 2' 120
	grep -a 'FVM-REAL\|Mem:' "$V/serial.log" | sed 's/.*FVM-REAL/FVM-REAL/' >&2
	vm_stop "$V"
	hb=$(last_hb "$V")
	t3=$(date +%s.%N)
	migrate_out "$V" "exec:cat > $R/real.mig.tmp"
	t4=$(date +%s.%N)
	vm_quit "$V"
	mv "$R/real.mig.tmp" "$R/real.mig"
	{
		echo "qemu: $("$FVM_QEMU" --version | head -n 1)"
		echo "kernel: $(cat "$R/vmlinuz.pkg" 2>/dev/null || echo unknown)"
		printf 'boot to init (kernel + initramfs unpack, wall): %.1f s\n' "$(el "$t0" "$t1")"
		printf 'init to FVM-READY (move to tmpfs, programs): %.1f s\n' "$(el "$t1" "$t2")"
		printf 'migrate to file (stopped, heartbeat %s): %.1f s\n' "$hb" "$(el "$t3" "$t4")"
		grep -a 'FVM-REAL' "$V/serial.log" | sed 's/.*FVM-REAL/FVM-REAL/' | tr -d '\r'
	} > "$R/boot.txt"
	rm -f "$R/real.fvm"
fi
cat "$R/boot.txt" >&2
log "stream real.mig: $(stat -c %s "$R/real.mig") bytes"

if [ ! -s "$R/real.fvm" ] || [ "$R/real.mig" -nt "$R/real.fvm" ]; then
	t0=$(date +%s.%N)
	"$FVMSNAP" convert "$R/real.mig" -o "$R/real.fvm" --quiet
	t1=$(date +%s.%N)
	log "$(printf 'fvmsnap convert: %.2f s' "$(el "$t0" "$t1")")"
	rm -rf "$R/ram"
	t0=$(date +%s.%N)
	"$FVMSNAP" unpack "$R/real.fvm" -o "$R/ram" --quiet
	t1=$(date +%s.%N)
	log "$(printf 'fvmsnap unpack: %.2f s' "$(el "$t0" "$t1")")"
fi
log "real.fvm: $(stat -c %s "$R/real.fvm") bytes"
"$FVMSNAP" inspect "$R/real.fvm" 2>&1 | grep -E '^(blocks|data|zero):|pc\.ram' >&2 || true
raw=$R/ram/pc.ram.raw
[ -s "$raw" ] || die "no $raw after unpack"
log "pc.ram.raw: $(stat -c %s "$raw") bytes, $(du -k "$raw" | cut -f1) KiB allocated (non-zero pages, sparse file)"
echo "$raw"
