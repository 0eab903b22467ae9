#!/bin/bash
# The state of this machine that moves load times by more than the
# targets allow (doc/BENCHMARKS.md 9), shown, quieted and put back:
#  - autogroup scheduling (kernel.sched_autogroup_enabled=1): each session
#    is its own scheduling group, so another session's `nice -n 19` build
#    still takes half the CPUs;
#  - free page reporting to a hypervisor (page_reporting, virtio-balloon):
#    the host takes back pages the kernel has freed, and the first touch of
#    such a page is a host fault, 3-10 us instead of 1 us. A fresh 1 GiB
#    destination then costs 1-3 s instead of 0.25 s, on the CPUs that
#    decode: a compressed load on the 137 MB/s device went from 1.73 to
#    2.0-2.1 s, whenever the load's pages had been reported.
# Neither exists on the seed's tablet (bare metal, no other session).
#
# Usage: bench/machine.sh show [FIRST_TOUCH]
#        bench/machine.sh quiet [FIRST_TOUCH]
#        bench/machine.sh restore
#   show     key=value lines: autogroup, page_reporting (on, off or absent),
#            page_reporting_order, reported_mib (so far), and with
#            FIRST_TOUCH (the build's bench/first_touch) first_touch_us, the
#            cost per page of three fresh 512 MiB mappings
#   quiet    autogroup off and page reporting off (order 11: no free block
#            is that large), the old values saved in $STATE; with
#            FIRST_TOUCH, then touches the free memory (all but 1 GiB) once,
#            so that the pages the host had taken back are resident again
#            (about 10 s per 4 GiB here); root only
#   restore  the values saved by quiet, back; root only
# Exit 0; 1 on a failure; 2 on a usage error.
set -u
STATE=${FVM_MACHINE_STATE:-/run/fvm-bench-machine}
AG=/proc/sys/kernel/sched_autogroup_enabled
PR=/sys/module/page_reporting/parameters
die() { echo "bench/machine.sh: $*" >&2; exit 1; }
usage() { sed -n '/^# Usage:/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

show() {
	local ft=${1:-} o
	if [ -r $AG ]; then echo "autogroup=$(cat $AG)"; else echo "autogroup=absent"; fi
	if [ -r $PR/page_reporting_order ]; then
		o=$(cat $PR/page_reporting_order)
		# no free block is larger than order 10 (MAX_PAGE_ORDER)
		if [ "$o" -gt 10 ]; then echo "page_reporting=off"; else echo "page_reporting=on"; fi
		echo "page_reporting_order=$o"
		[ -r $PR/reported_kib ] && echo "reported_mib=$(($(cat $PR/reported_kib) / 1024))"
	else
		echo "page_reporting=absent"
	fi
	if [ -n "$ft" ]; then
		[ -x "$ft" ] || die "$ft: not built"
		"$ft" 512 3 | awk '{ v = v (v ? "," : "") $3 } END { print "first_touch_us=" v }'
	fi
}

need_root() { [ "$(id -u)" = 0 ] || die "$1 changes kernel settings: run as root"; }

quiet() {
	local ft=${1:-} free
	need_root quiet
	if ! [ -e "$STATE" ]; then
		{
			[ -w $AG ] && echo "autogroup=$(cat $AG)"
			[ -w $PR/page_reporting_order ] &&
				echo "page_reporting_order=$(cat $PR/page_reporting_order)"
		} >"$STATE.tmp" || die "cannot save the settings in $STATE"
		mv "$STATE.tmp" "$STATE" || die "cannot save the settings in $STATE"
	fi
	if [ -w $AG ]; then echo 0 >$AG || die "cannot turn autogroup off"; fi
	if [ -w $PR/page_reporting_order ]; then
		echo 11 >$PR/page_reporting_order || die "cannot turn page reporting off"
	fi
	if [ -n "$ft" ] && [ -r $PR/page_reporting_order ]; then
		[ -x "$ft" ] || die "$ft: not built"
		free=$(awk '/^MemFree:/ { print int($2 / 1024) - 1024 }' /proc/meminfo)
		if [ "$free" -gt 0 ]; then
			echo "touching $free MiB of free memory once" >&2
			"$ft" "$free" >/dev/null || die "touching the free memory failed"
		fi
	fi
	echo "quiet; bench/machine.sh restore puts back: $(tr '\n' ' ' <"$STATE")" >&2
}

restore() {
	local k v
	need_root restore
	[ -e "$STATE" ] || die "nothing saved in $STATE (bench/machine.sh quiet saves)"
	while IFS='=' read -r k v; do
		case $k in
		autogroup) echo "$v" >$AG || die "cannot set autogroup to $v" ;;
		page_reporting_order) echo "$v" >$PR/page_reporting_order ||
			die "cannot set page_reporting_order to $v" ;;
		*) die "$STATE: unknown setting '$k'" ;;
		esac
	done <"$STATE"
	rm -f "$STATE"
	echo "restored: autogroup=$(cat $AG 2>/dev/null)" \
		"page_reporting_order=$(cat $PR/page_reporting_order 2>/dev/null)" >&2
}

case ${1:-} in
show) [ $# -le 2 ] || usage; show "${2:-}" ;;
quiet) [ $# -le 2 ] || usage; quiet "${2:-}" ;;
restore) [ $# = 1 ] || usage; restore ;;
*) usage ;;
esac
