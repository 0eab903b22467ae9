# shellcheck shell=bash
# Sourced by the fvmsnap command-line tests (cli.sh, auth-cli.sh, clean.sh,
# save.sh): their failure counter and the exit-code check, in one place.
#   fail MSG          count a failure and say it
#   ok WHAT           "-- done: WHAT"
#   expect RC CMD...  run CMD (stdout to out.log, stderr to err.log) and
#                     fail unless it exits RC; the logs' heads are shown
#   err_has TEXT WHAT fail unless err.log holds TEXT (a fixed string)
#   catching PID      wait (up to 10 s) until process PID catches SIGTERM:
#                     a signal sent before fvmsnap installed its handlers
#                     kills it (exit 143) instead of interrupting it; under
#                     ASan on a busy machine that took over 0.1 s
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "-- done: $*"; }
expect() {
	local want=$1 rc
	shift
	"$@" >out.log 2>err.log
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		fail "exit $rc, expected $want: $*"
		sed 's/^/  | /' err.log out.log | head -8
	fi
	return 0
}
err_has() { grep -qF -- "$1" err.log || fail "$2: stderr lacks '$1': $(head -3 err.log)"; }
catching() {
	local m _
	for _ in $(seq 1000); do
		m=$(awk '/^SigCgt:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
		[ -n "$m" ] && (((0x$m >> 14) & 1)) && return 0
		sleep 0.01
	done
	return 1
}
