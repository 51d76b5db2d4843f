#!/usr/bin/env bash
# One legacy-host build of the test command, in a copy of the tree of its own
# (build-legacy/VARIANT: the tree itself is configured in place, and autotools
# refuse a second configuration next to it). scripts/test-all.sh runs the
# variants side by side and counts what they leave in the artifacts folder.
#
#   bash tests/legacy/run.sh VARIANT          VARIANT: clang | i386 | fallbacks
#
#   clang      clang -std=gnu99, warnings are errors; make check; the stream,
#              publish and keep-conn integration tests on an emulated kernel
#              older than 4.5 (EPOLLEXCLUSIVE silently ignored; oldkernel.c)
#   i386       gcc -m32 on Debian's i386 multiarch libraries, warnings are
#              errors; make check; the whole integration suite, valgrind's
#              x86 tool included
#   fallbacks  ./configure --enable-fallbacks: every feature newer than the
#              support matrix replaced by its fallback; checks that the binary
#              no longer uses them; make check; the whole integration suite
#              with EPOLLEXCLUSIVE trapped
#
# Leaves in $SSEHUB_ARTIFACTS (default tests/artifacts):
#   legacy-VARIANT.tap          the build and the checks (TAP)
#   legacy-VARIANT-unit-NAME.log  each unit test program's TAP (make check)
#   legacy-VARIANT.xml          the integration tests (JUnit)
#   legacy-VARIANT-*.log        build output; integration-VARIANT.log: pytest's
# Exits non-zero when something failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
art=${SSEHUB_ARTIFACTS:-$root/tests/artifacts}
PY=/usr/bin/python3
variant=${1:-}
case "$variant" in
clang | i386 | fallbacks) ;;
*) echo "usage: $0 clang|i386|fallbacks" >&2; exit 2 ;;
esac
b=$root/build-legacy/$variant
tap=$art/legacy-$variant.tap
blog=$art/legacy-$variant-build.log
mkdir -p "$art"
rm -f "$tap" "$art/legacy-$variant"-unit-*.log "$art/legacy-$variant.xml" "$art/legacy-$variant-oldkernel.log"
: >"$blog"

n=0 failed=0
out() { echo "$*" >>"$tap"; }
ok() { n=$((n + 1)); out "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); out "not ok $n - $*"; }
skip() { n=$((n + 1)); out "ok $n - $1 # SKIP $2"; }
finish() { out "1..$n"; [ "$failed" -eq 0 ]; exit; }
# make check's TAP logs (tests/unit/test_*.log) as PREFIX-NAME.log; one
# without a plan line when there are none (test-all.sh counts that a failure)
copy_unit_logs() { # tree prefix
	local f found=0
	for f in "$1"/tests/unit/test_*.log; do
		[ -f "$f" ] || continue
		cp "$f" "$art/$2-$(basename "$f" .log).log"
		found=1
	done
	[ $found -eq 1 ] || echo "# make check left no tests/unit/test_*.log" >"$art/$2-missing.log"
}

# ---- the copy and the build

rm -rf "$b"
mkdir -p "$b"
(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar xf - -C "$b"

case "$variant" in
clang)
	what="clang $(clang -dumpversion) -std=gnu99 build, warnings are errors"
	conf=(CC=clang "CFLAGS=-std=gnu99 -O2 -g")
	;;
i386)
	what="i386 build (gcc -m32, Debian's :i386 libraries), warnings are errors"
	# pkg-config reads the i386 .pc files only; the compiler finds the
	# i386 headers and libraries through Debian's multiarch paths.
	conf=("CC=gcc -m32" "PKG_CONFIG_LIBDIR=/usr/lib/i386-linux-gnu/pkgconfig:/usr/share/pkgconfig")
	;;
fallbacks)
	what="build with every fallback forced (--enable-fallbacks), warnings are errors"
	conf=(--enable-fallbacks)
	;;
esac
if ! (cd "$b" && autoreconf -fi && ./configure --enable-werror "${conf[@]}" && make -j2) >>"$blog" 2>&1; then
	not_ok "$what"
	grep -E 'error|warning' "$blog" | head -30 | sed 's/^/#   /' >>"$tap"
	tail -15 "$blog" | sed 's/^/#   /' >>"$tap"
	finish
fi
ok "$what"

# ---- checks on the binary

# src/ mentions a name (the sources only, not the objects built there)
src_uses() { grep -rqw --include='*.[ch]' -e "$1" "$root/src"; }

# nm's undefined dynamic symbols of the daemon (what it takes from libc and
# the libraries).
imports() { nm -D --undefined-only "$b/src/ssehub" | awk '{print $NF}' | sed 's/@.*//' | sort -u; }

case "$variant" in
clang)
	# libjwt's jansson has two functions with json-c's names; where jansson
	# is linked ahead of json-c (configure.ac) ssehub's own calls to them
	# would reach jansson.
	clash=$(imports | grep -xE 'json_object_get|json_object_iter_next' | tr '\n' ' ')
	if [ -z "$clash" ]; then
		ok "ssehub calls neither json_object_get nor json_object_iter_next (jansson's names too)"
	else
		not_ok "ssehub calls json-c functions whose names jansson shares: $clash"
	fi
	;;
i386)
	if file -L "$b/src/ssehub" | grep -q 'ELF 32-bit.*80386'; then
		ok "the binary is 32-bit i386"
	else
		not_ok "the binary is 32-bit i386: $(file -L "$b/src/ssehub")"
	fi
	;;
fallbacks)
	# Each function newer than the matrix: when the default build uses it
	# and src/ has its HAVE_ macro, the forced build must not import it.
	# While src/ has no fallback yet the check is skipped, with the reason.
	defaults=$(nm -D --undefined-only "$root/src/ssehub" 2>/dev/null | awk '{print $NF}' | sed 's/@.*//' | sort -u)
	forced=$(imports)
	for pair in explicit_bzero:HAVE_EXPLICIT_BZERO accept4:HAVE_ACCEPT4 pipe2:HAVE_PIPE2 eventfd:HAVE_EVENTFD \
		json_tokener_get_parse_end:HAVE_JSON_TOKENER_GET_PARSE_END; do
		fn=${pair%%:*} macro=${pair#*:}
		# explicit_bzero may come in as its _FORTIFY_SOURCE variant
		pat="^_*${fn}(_chk)?\$"
		if ! src_uses "$fn" && ! grep -qE "$pat" <<<"$defaults"; then
			ok "fallback for $fn: src/ does not use $fn"
		elif ! src_uses "$macro"; then
			skip "fallback for $fn" "src/ uses $fn and has no fallback yet (no $macro in src/)"
		elif grep -qE "$pat" <<<"$forced"; then
			not_ok "fallback for $fn: the forced build still imports $fn"
		else
			ok "fallback for $fn: the forced build does not import it"
		fi
	done
	for pair in EPOLLEXCLUSIVE:HAVE_DECL_EPOLLEXCLUSIVE; do
		name=${pair%%:*} macro=${pair#*:}
		if ! src_uses "$name"; then
			ok "fallback for $name: src/ does not use it"
		elif ! src_uses "$macro"; then
			skip "fallback for $name" "src/ uses $name and has no fallback yet (no $macro in src/)"
		else
			ok "fallback for $name: src/ tests $macro (EPOLLEXCLUSIVE is also trapped at run time below)"
		fi
	done
	;;
esac

# ---- unit tests

if (cd "$b" && timeout 600 make check) >>"$blog" 2>&1; then :; fi
copy_unit_logs "$b" "legacy-$variant-unit"

# ---- integration tests (from the tree itself: one node_modules, one harness)

run_pytest() { # pytest args...
	(cd "$root" && SSEHUB_BIN="$b/src/ssehub" timeout 1500 "$PY" -m pytest -q -p no:cacheprovider -rs \
		--junitxml="$art/legacy-$variant.xml" "$@") >"$art/integration-$variant.log" 2>&1
}

shim=$b/oldkernel.so
build_shim() {
	if cc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$shim" "$here/oldkernel.c" -ldl >>"$blog" 2>&1; then
		return 0
	fi
	not_ok "oldkernel.c (the LD_PRELOAD shim) builds"
	return 1
}
ok_log=$art/legacy-$variant-oldkernel.log

case "$variant" in
clang)
	# A kernel before 4.5 ignores EPOLLEXCLUSIVE: every loop wakes for each
	# new connection and all but one find nothing to accept.
	if build_shim; then
		LD_PRELOAD=$shim SSEHUB_OLDKERNEL=ignore SSEHUB_OLDKERNEL_LOG=$ok_log run_pytest \
			tests/integration/test_stream.py tests/integration/test_publish.py tests/integration/test_keepconn.py
		uses=$(grep -c ' ignore$' "$ok_log" 2>/dev/null || true)
		if ! src_uses EPOLLEXCLUSIVE; then
			skip "emulated kernel < 4.5 (EPOLLEXCLUSIVE ignored)" "src/ does not use EPOLLEXCLUSIVE yet"
		elif [ "${uses:-0}" -gt 0 ]; then
			ok "emulated kernel < 4.5: EPOLLEXCLUSIVE dropped $uses times (the tests above say how ssehub fared)"
		else
			not_ok "emulated kernel < 4.5: src/ uses EPOLLEXCLUSIVE but the shim never saw it"
		fi
	fi
	;;
i386)
	run_pytest tests/integration
	;;
fallbacks)
	if build_shim; then
		LD_PRELOAD=$shim SSEHUB_OLDKERNEL=trap SSEHUB_OLDKERNEL_LOG=$ok_log run_pytest tests/integration
		if [ -s "$ok_log" ]; then
			not_ok "the forced build never asks for EPOLLEXCLUSIVE: it did $(wc -l <"$ok_log") times"
		else
			ok "the forced build never asked for EPOLLEXCLUSIVE during the integration tests"
		fi
	fi
	;;
esac
finish
