#!/usr/bin/env bash
# README command 2: installs what is missing, builds ssehub (warnings are
# errors), and runs every test: C unit tests, the integration suite against
# real nginx/lighttpd/spawn-fcgi, the same again under ASan+UBSan, the
# legacy-host builds (tests/legacy/: clang gnu99, i386, forced fallbacks,
# Debian 11 in a chroot), and a benchmark smoke run. Ends with one line: "N passed, N failed[, N skipped]".
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
art="$root/tests/artifacts"
rm -rf "$art"
mkdir -p "$art"
PY=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
passed=0 failed=0 skipped=0
skip_notes=()

count_tap() { # file label -> adds to totals
	local p f s
	p=$(grep -c '^ok ' "$1" 2>/dev/null || true)
	f=$(grep -c '^not ok ' "$1" 2>/dev/null || true)
	s=$(grep -ci '^ok .*# skip' "$1" 2>/dev/null || true)
	p=$((p - s))
	if [ "$s" -gt 0 ]; then
		skipped=$((skipped + s))
		skip_notes+=("$2: $s skipped: $(grep -i '^ok .*# skip' "$1" | sed 's/.*# [Ss][Kk][Ii][Pp] *//' | sort -u | tr '\n' ';')")
	fi
	# A program that died before its plan line failed, whatever it printed.
	if ! grep -q '^1\.\.[0-9]' "$1" 2>/dev/null || grep -q 'exit status: [1-9]' "$1" 2>/dev/null; then
		[ "$f" -eq 0 ] && f=1
		echo "   $2: crashed or ended early (see $1)"
	fi
	passed=$((passed + p)); failed=$((failed + f))
	echo "   $2: $p passed, $f failed, $s skipped"
}

count_junit() { # junit.xml label
	local line p f s
	if [ ! -s "$1" ]; then
		echo "   $2: no result file (the runner crashed)"; failed=$((failed + 1)); return
	fi
	line=$($PY - "$1" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else r.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
s = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - s, f, s)
PYEOF
)
	read -r p f s <<<"$line"
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	echo "   $2: $p passed, $f failed, $s skipped"
	if [ "$s" -gt 0 ]; then
		skip_notes+=("$2: $s skipped (reasons in $art/$2.log, 'SKIPPED' lines)")
	fi
}

stage() { echo; echo "== $*"; }

stage "dependencies"
bash scripts/deps.sh test || { echo "0 passed, 1 failed"; exit 1; }

stage "build (warnings are errors)"
if ! { autoreconf -fi && ./configure -q --enable-werror && make -j"$JOBS"; } >"$art/build.log" 2>&1; then
	tail -40 "$art/build.log"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "   built src/ssehub"

stage "C unit tests"
make -j"$JOBS" check >"$art/make-check.log" 2>&1
count_tap tests/unit/test_unit.log unit
count_tap tests/unit/test_strict.log unit-strict

run_pytest() { # label binary [pytest args...]
	local label=$1 bin=$2
	shift 2
	SSEHUB_BIN="$bin" timeout 1500 $PY -m pytest -q -p no:cacheprovider -rs \
		--junitxml="$art/$label.xml" "$@" tests/integration >"$art/$label.log" 2>&1
	grep -E '^(FAILED|ERROR) |^SKIPPED|[0-9]+ (passed|failed)' "$art/$label.log" | tail -25 | sed 's/^/   | /'
	count_junit "$art/$label.xml" "$label"
}

stage "integration tests (nginx, lighttpd, Apache httpd, spawn-fcgi)"
run_pytest integration "$root/src/ssehub"

run_tap() { # label script
	timeout 600 bash "$2" >"$art/$1.log" 2>&1
	local rc=$?
	grep -A12 '^not ok ' "$art/$1.log" | sed 's/^/   | /'
	count_tap "$art/$1.log" "$1"
	if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$art/$1.log"; then
		echo "   $1: exited $rc without a failed test"; failed=$((failed + 1))
	fi
}

stage "browser tests (headless Chromium, demo page behind nginx)"
run_tap browser tests/browser/run.sh

stage "client tests (clients/js in Node and Chromium, React, Vue, HTTP/2, publishers)"
run_tap clients tests/clients/run.sh

stage "install tests (make install DESTDIR, init script, systemd units)"
run_tap install tests/install/run.sh

stage "make distcheck (the tarball builds, tests and installs out of tree)"
if timeout 900 make -j"$JOBS" distcheck >"$art/distcheck.log" 2>&1; then
	passed=$((passed + 1)); echo "   ok"
else
	failed=$((failed + 1)); echo "   FAILED"; tail -30 "$art/distcheck.log" | sed 's/^/   | /'
	# the harness keeps a failing test's own lines in the left-over tree
	grep -h -A2 '^not ok' ssehub-*/_build/sub/tests/unit/*.log 2>/dev/null | head -20 | sed 's/^/   | /'
fi

stage "ASan + UBSan build: unit and integration tests again"
# A copy of the sources of its own: the tree above is configured in place,
# and autotools refuse a second, out-of-tree configuration next to it.
san="$root/build-asan"
rm -rf "$san"; mkdir -p "$san"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar xf - -C "$san"
if (cd "$san" && autoreconf -fi && ./configure -q --enable-werror --enable-asan --enable-ubsan && make -j"$JOBS") >"$art/build-asan.log" 2>&1; then
	export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$art/asan"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$art/ubsan"
	(cd "$san" && make -j"$JOBS" check) >"$art/make-check-asan.log" 2>&1
	count_tap "$san/tests/unit/test_unit.log" unit-asan
	count_tap "$san/tests/unit/test_strict.log" unit-strict-asan
	# (valgrind runs on the plain build above; it cannot run an ASan binary)
	run_pytest integration-asan "$san/src/ssehub" --deselect tests/integration/test_valgrind.py
	unset ASAN_OPTIONS UBSAN_OPTIONS
	if compgen -G "$art/asan.*" >/dev/null || compgen -G "$art/ubsan.*" >/dev/null; then
		echo "   sanitizer reports:"; head -50 "$art"/asan.* "$art"/ubsan.* 2>/dev/null | sed 's/^/   | /'
		failed=$((failed + 1))
	else
		echo "   no sanitizer report"; passed=$((passed + 1))
	fi
else
	tail -30 "$art/build-asan.log"; failed=$((failed + 1))
fi

stage "legacy builds started in the background (tests/legacy/: clang gnu99, i386, forced fallbacks, Debian 11 chroot)"
# They run while the fuzzers below keep one core busy: their own builds and
# integration suites wait on sockets more than they compute. Results are
# counted after fuzzing.
legacy_pids=()
for v in clang i386 fallbacks; do
	bash tests/legacy/run.sh "$v" >"$art/legacy-$v.out" 2>&1 &
	legacy_pids+=($!)
done
# Debian 11: the chroot comes from the archive the first time (or after a
# change of its package list), from /var/cache/ssehub-test/ after that.
timeout 2400 bash tests/legacy/debian11.sh all >"$art/debian11.tap" 2>"$art/debian11.err" &
legacy_pids+=($!)
legacy_t0=$SECONDS
echo "   pids ${legacy_pids[*]}"

stage "fuzzing (libFuzzer + ASan/UBSan, ${FUZZ_SECONDS:-30} s per target; longer: tests/fuzz/run.sh SECONDS)"
# one test per target: it passes when it ran and found no crash
timeout 900 bash tests/fuzz/run.sh "${FUZZ_SECONDS:-30}" >"$art/fuzz.log" 2>&1
fuzz_rc=$?
fz_ok=$(sed -n '/^== summary/,$p' "$art/fuzz.log" | grep -cE '^fuzz_.*crashes: 0$' || true)
fz_bad=$(sed -n '/^== summary/,$p' "$art/fuzz.log" | grep -E '^fuzz_' | grep -cvE 'crashes: 0$' || true)
sed -n '/^== summary/,$p' "$art/fuzz.log" | sed 's/^/   | /'
if [ "$fuzz_rc" -ne 0 ] && [ "$fz_bad" -eq 0 ]; then
	fz_bad=1; echo "   fuzzing failed to build or run (exit $fuzz_rc)"; tail -20 "$art/fuzz.log" | sed 's/^/   | /'
fi
passed=$((passed + fz_ok)); failed=$((failed + fz_bad))
echo "   fuzz: $fz_ok passed, $fz_bad failed"

stage "legacy builds: results"
wait "${legacy_pids[@]}"
echo "   done $((SECONDS - legacy_t0)) s after they started"
for v in clang i386 fallbacks; do
	grep -E '^not ok|# SKIP' "$art/legacy-$v.tap" 2>/dev/null | sed 's/^/   | /'
	count_tap "$art/legacy-$v.tap" "legacy-$v"
	# the unit and integration results exist once the build passed
	for f in "$art/legacy-$v"-unit-*.log; do
		[ -f "$f" ] && count_tap "$f" "$(basename "$f" .log)"
	done
	if compgen -G "$art/legacy-$v-unit-*.log" >/dev/null; then
		grep -E '^(FAILED|ERROR) |[0-9]+ (passed|failed)' "$art/integration-$v.log" 2>/dev/null | tail -15 |
			sed 's/^/   | /'
		count_junit "$art/legacy-$v.xml" "integration-$v"
	fi
done
grep -E '^(not )?ok|^# versions' "$art/debian11.tap" | sed 's/^/   | /'
count_tap "$art/debian11.tap" debian11
for f in "$art"/debian11-unit-*.log "$art"/debian11-clang-unit-*.log; do
	[ -f "$f" ] && count_tap "$f" "$(basename "$f" .log)"
done
if compgen -G "$art/debian11-unit-*.log" >/dev/null; then
	grep -E '^(FAILED|ERROR) |[0-9]+ (passed|failed)' "$art/integration-debian11.log" 2>/dev/null | tail -15 |
		sed 's/^/   | /'
	count_junit "$art/debian11-integration.xml" integration-debian11
fi

if [ -x bench/run.sh ]; then
	stage "benchmark smoke run (bench/run.sh --quick)"
	if timeout 300 bash bench/run.sh --quick >"$art/bench-quick.log" 2>&1; then
		passed=$((passed + 1)); echo "   ok"; tail -12 "$art/bench-quick.log" | sed 's/^/   | /'
	else
		failed=$((failed + 1)); echo "   FAILED"; tail -30 "$art/bench-quick.log" | sed 's/^/   | /'
	fi
fi

echo
for n in "${skip_notes[@]+"${skip_notes[@]}"}"; do echo "skipped: $n"; done
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
