#!/bin/sh
# The section 3 man pages (doc/man3/) against the public header:
#  - every page renders without a groff warning (nroff and troff devices);
#  - every function declared FVM_API in include/fastvm/*.h has doc/man3/NAME.3,
#    a page or a `.so man3/PAGE.3` alias, whose NAME or SYNOPSIS names it;
#  - every FVM_E* code a page names (in ERRORS or anywhere) is in enum fvm_error;
#  - every page has the sections of a function page, .so targets and SEE ALSO
#    references to section 3 exist, and doc/man3/meson.build installs each file;
#  - the EXAMPLES programs compile against the header (when a C compiler exists).
# Usage: man3.sh SOURCE_ROOT. Exits 77 when neither groff nor man is installed.
set -eu
src=$(cd "${1:?usage: man3.sh SOURCE_ROOT}" && pwd)
man3=$src/doc/man3
headers="$src/include/fastvm/fastvm.h"
[ -f "$src/include/fastvm/experimental.h" ] && headers="$headers $src/include/fastvm/experimental.h"
[ -d "$man3" ] || { echo "FAIL: no $man3" >&2; exit 1; }

if command -v groff >/dev/null 2>&1; then
	render=groff
elif command -v man >/dev/null 2>&1; then
	render=man
else
	echo "SKIP: neither groff nor man is installed"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fvm-man3.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
errors=0
fail() { echo "FAIL: $*" >&2; errors=$((errors + 1)); }

# Lines of section $2 (".SH NAME" up to the next .SH) of page $1.
section() {
	awk -v want="$2" '
		/^\.SH[ \t]/ { s = $0; sub(/^\.SH[ \t]+/, "", s); gsub(/"/, "", s); on = (s == want); next }
		on { print }' "$1"
}

# Roff escapes used in the pages, turned back into plain text.
unroff() {
	sed -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\(aq/'"'"'/g' -e 's/\\(dq/"/g' \
	    -e 's/\\e/\\/g' -e 's/\\~/ /g' -e 's/\\f[BIRP]//g'
}

# The page an alias points to (itself when it is not one).
target() {
	so=$(sed -n '1s/^\.so[ \t]\{1,\}man3\/\(.*\)$/\1/p' "$1")
	if [ -n "$so" ]; then echo "$man3/$so"; else echo "$1"; fi
}

# Function names declared FVM_API, comments and preprocessor lines removed.
api_functions() {
	awk '
		cont { cont = /\\$/; next }
		{
			line = $0; out = ""
			while (length(line)) {
				if (inc) {
					i = index(line, "*/")
					if (!i) { line = ""; break }
					line = substr(line, i + 2); inc = 0
				} else {
					i = index(line, "/*")
					if (!i) { out = out line; line = "" }
					else { out = out substr(line, 1, i - 1) " "; line = substr(line, i + 2); inc = 1 }
				}
			}
			if (out ~ /^[ \t]*#/) { cont = /\\$/; next }
			printf "%s ", out
		}' "$@" | tr ';' '\n' |
		sed -n 's/.*FVM_API[^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)[ \t]*(.*/\1/p'
}

# ---- 1. rendering (.so resolves against doc/, the man hierarchy root)
cd "$src/doc"
pages=0
for f in man3/*.3; do
	pages=$((pages + 1))
	if [ "$render" = groff ]; then
		out=$( (groff -man -ww -z -t "$f"; groff -man -ww -z -t -Tutf8 "$f") 2>&1 | sort -u) || true
	else
		out=$(man --warnings -E UTF-8 -l "$f" 2>&1 >/dev/null) || true
	fi
	[ -z "$out" ] || fail "$f: $render warns: $out"
done

# ---- 2. every FVM_API function has a page naming it in NAME or SYNOPSIS
api_functions $headers | sort -u > "$tmp/api"
[ -s "$tmp/api" ] || fail "no FVM_API function found in $headers"
nfunc=0
while read -r fn; do
	nfunc=$((nfunc + 1))
	page=$man3/$fn.3
	if [ ! -f "$page" ]; then
		fail "$fn is declared FVM_API but has no doc/man3/$fn.3 (a page or a '.so man3/PAGE.3' alias)"
		continue
	fi
	t=$(target "$page")
	if [ ! -f "$t" ]; then
		fail "doc/man3/$fn.3: .so target ${t#"$src"/} does not exist"
		continue
	fi
	{ section "$t" NAME; section "$t" SYNOPSIS; } | unroff | grep -qw -- "$fn" ||
		fail "${t#"$src"/}: NAME and SYNOPSIS do not name $fn"
done < "$tmp/api"

# ---- 3. error codes named by the pages exist
sed -n 's/^[ \t]*\(FVM_E[A-Z0-9_]*\)[ \t]*=[ \t]*-[0-9].*/\1/p' "$src/include/fastvm/fastvm.h" |
	sort -u > "$tmp/codes"
[ -s "$tmp/codes" ] || fail "no FVM_E* code found in enum fvm_error"

# ---- 4. page structure, aliases, SEE ALSO, install list, examples
cc=${CC:-cc}
command -v "$cc" >/dev/null 2>&1 || cc=
nex=0
for f in "$man3"/*.3; do
	rel=${f#"$src"/}
	base=$(basename "$f")
	grep -q "'$base'" "$man3/meson.build" 2>/dev/null ||
		fail "$rel is not installed by doc/man3/meson.build"
	t=$(target "$f")
	if [ "$t" != "$f" ]; then
		[ -f "$t" ] || fail "$rel: .so target ${t#"$src"/} does not exist"
		[ "$(wc -l < "$f")" -eq 1 ] || fail "$rel: an alias page holds only its .so line"
		continue
	fi
	for s in NAME LIBRARY SYNOPSIS DESCRIPTION "RETURN VALUE" ERRORS "SEE ALSO"; do
		[ -n "$(section "$f" "$s")" ] || fail "$rel: no (or an empty) $s section"
	done
	section "$f" ERRORS | grep -o 'FVM_E[A-Z][A-Z0-9_]*' | sort -u > "$tmp/errors"
	[ -s "$tmp/errors" ] || [ -n "$(section "$f" ERRORS | grep -i 'do not fail')" ] ||
		fail "$rel: ERRORS names no FVM_E* code (nor says the functions do not fail)"
	for code in $(grep -o 'FVM_E[A-Z][A-Z0-9_]*' "$f" | sort -u); do
		grep -qx "$code" "$tmp/codes" && continue
		if grep -qx "$code" "$tmp/errors"; then
			fail "$rel: ERRORS names $code, which enum fvm_error does not define"
		else
			fail "$rel: names $code, which enum fvm_error does not define"
		fi
	done
	for ref in $(section "$f" "SEE ALSO" | sed -n 's/^\.BR[ \t]\{1,\}\([A-Za-z0-9_]*\)[ \t]\{1,\}(3).*/\1/p'); do
		case $ref in fvm_* | libfastvm) ;; *) continue ;; esac # system pages
		[ -f "$man3/$ref.3" ] || fail "$rel: SEE ALSO names $ref(3), which has no page"
	done
	# each .EX block of EXAMPLES that includes the header is a translation unit
	[ -n "$cc" ] || continue
	section "$f" EXAMPLES | awk -v dir="$tmp" -v base="${base%.3}" '
		/^\.EX/ { n++; file = dir "/" base "-" n ".c"; on = 1; next }
		/^\.EE/ { on = 0; close(file); next }
		on { print > file }'
	for c in "$tmp/${base%.3}"-*.c; do
		[ -f "$c" ] || continue
		unroff < "$c" > "$c.plain"
		if grep -q '#include <fastvm/' "$c.plain"; then
			nex=$((nex + 1))
			mv "$c.plain" "$c"
			"$cc" -std=gnu11 -Wall -Wextra -Werror -fsyntax-only -I"$src/include" -x c "$c" \
				> "$c.log" 2>&1 || fail "$rel: an example does not compile: $(cat "$c.log")"
		fi
		rm -f "$c" "$c.plain" "$c.log"
	done
done

if [ "$errors" -ne 0 ]; then
	echo "man3: $errors problem(s)" >&2
	exit 1
fi
echo "ok: $pages pages render without warnings ($render), $nfunc FVM_API functions documented," \
	"$(wc -l < "$tmp/codes") error codes, ${nex} examples compile${cc:+ with $cc}"
