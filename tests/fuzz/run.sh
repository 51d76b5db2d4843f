#!/usr/bin/env bash
# Builds every libFuzzer target in tests/fuzz (fuzz_*.c) with
# clang -fsanitize=fuzzer,address,undefined against the project's src/*.c
# (all but main.c) and runs each one for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]     (SECONDS per target, default 60;
#                                                0 = build, then run the seeds once)
#
# Prints, per target, the inputs executed and the crashes found; exits 1 when
# any target crashed (or failed to build). A crashing input is kept as
# tests/fuzz/crashes/<target>-crash-<sha1> (also leak-, timeout-, oom-).
# Build output and the growing corpora live in $FUZZ_OUT (default
# /tmp/ssehub-fuzz); the checked-in seeds in tests/fuzz/corpus are only read.
# Environment: CC (default clang), FUZZ_OUT, FUZZ_JOBS (parallel builds).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SECS=${1:-60}
shift || true
CC=${CC:-clang}
OUT=${FUZZ_OUT:-/tmp/ssehub-fuzz}
CRASHES="$HERE/crashes"

case "$SECS" in
''|*[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
if ! command -v "$CC" >/dev/null; then
	echo "run.sh: $CC not found (Debian: apt-get install clang-14; libFuzzer ships with it)" >&2
	exit 2
fi
if ! pkg-config --exists json-c libjwt uuid; then
	echo "run.sh: pkg-config cannot find json-c libjwt uuid" >&2
	exit 2
fi

if [ $# -gt 0 ]; then
	TARGETS=("$@")
else
	TARGETS=()
	for f in "$HERE"/fuzz_*.c; do
		TARGETS+=("$(basename "$f" .c)")
	done
fi

JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$OUT/bin" "$OUT/corpus" "$OUT/log" "$CRASHES"

# ---- build: the project's own build, ./configure CC=clang --enable-fuzzing,
# in a copy of the tree (the tree itself may be configured for gcc)
echo "== building into $OUT (CC=$CC, ./configure --enable-fuzzing)"
tree="$OUT/tree"
rm -rf "$tree"
mkdir -p "$tree"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar xf - -C "$tree"
else
	tar -C "$ROOT" --exclude=./build-asan -cf - . | tar xf - -C "$tree"
	(cd "$tree" && { [ ! -f Makefile ] || make distclean >/dev/null 2>&1; })
fi
if ! (cd "$tree" && autoreconf -fi && ./configure -q CC="$CC" --enable-fuzzing && make -j"$JOBS") \
	>"$OUT/log/build.log" 2>&1; then
	tail -30 "$OUT/log/build.log" >&2
	echo "run.sh: cannot build the fuzz targets (log: $OUT/log/build.log)" >&2
	exit 1
fi
for t in "${TARGETS[@]}"; do
	if [ ! -x "$tree/tests/fuzz/$t" ]; then
		echo "run.sh: no target $t" >&2
		exit 2
	fi
	cp "$tree/tests/fuzz/$t" "$OUT/bin/$t"
done

# ---- run
max_len() {
	case "$1" in
	fuzz_admin_api) echo 4096 ;;          # the fuzz config caps bodies at 2048
	fuzz_query_cookie) echo 32768 ;;
	fuzz_token) echo 8300 ;;
	fuzz_sse_encode) echo 8192 ;;
	fuzz_fastcgi_input) echo 100000 ;;
	fuzz_json) echo 16384 ;;             # deep nesting and long strings fit
	*) echo 4096 ;;
	esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
summary=()
for t in "${TARGETS[@]}"; do
	corpus="$OUT/corpus/$t"
	log="$OUT/log/$t.log"
	mkdir -p "$corpus"
	cp -n "$HERE/corpus/$t"/* "$corpus"/ 2>/dev/null || true
	dict=()
	[ -f "$HERE/dict/$t.dict" ] && dict=("-dict=$HERE/dict/$t.dict")
	before=$(find "$CRASHES" -maxdepth 1 -name "$t-*" | wc -l)
	echo "== $t: ${SECS}s"
	if [ "$SECS" -eq 0 ]; then
		budget=(-runs=0)
	else
		budget=(-max_total_time="$SECS")
	fi
	"$OUT/bin/$t" "${budget[@]}" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
		"${dict[@]}" -artifact_prefix="$CRASHES/$t-" -print_final_stats=1 "$corpus" >"$log" 2>&1
	rc=$?
	after=$(find "$CRASHES" -maxdepth 1 -name "$t-*" | wc -l)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	[ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
	crashes=$((after - before))
	if [ $rc -ne 0 ] && [ $crashes -eq 0 ]; then
		crashes=1 # died without writing an artifact: count it, the log says why
	fi
	line=$(printf '%-22s runs: %-10s crashes: %d' "$t" "${runs:-?}" "$crashes")
	summary+=("$line")
	echo "$line"
	if [ $crashes -ne 0 ]; then
		status=1
		echo "   log: $log"
		grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|FUZZ CHECK FAILED' "$log" | sed 's/^/   /'
		find "$CRASHES" -maxdepth 1 -name "$t-*" -newer "$OUT/bin/$t" | sed 's/^/   input: /'
	fi
done

echo "== summary (${SECS}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
