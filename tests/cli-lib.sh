# shellcheck shell=bash
# Sourced by the fvmsnap command-line tests (cli.sh, auth-cli.sh, clean.sh):
# their failure counter and the exit-code check, in one place.
#   fail MSG          count a failure and say it
#   ok WHAT           "-- done: WHAT"
#   expect RC CMD...  run CMD (stdout to out.log, stderr to err.log) and
#                     fail unless it exits RC; the logs' heads are shown
#   err_has TEXT WHAT fail unless err.log holds TEXT (a fixed string)
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
