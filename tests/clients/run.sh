#!/usr/bin/env bash
# Tests of the clients: the npm package clients/js (types, npm pack), the
# client in Node against ssehub behind nginx (events, backoff, resume after a
# restart, close, token refresh), the publishers of examples/publishers (PHP,
# Python, Node, Go, shell), and in Debian's headless Chromium: token refresh,
# the React and Vue examples, 10 streams over HTTP/1.1 and over HTTP/2.
# Prints TAP (node's test runner) and exits non-zero when a test failed or
# could not run.
#
#   bash tests/clients/run.sh [test files...]   (default: every *.test.mjs)
#
# The stack is scripts/demo.sh in a state directory of its own, on free
# ports, HTTPS included, with --jwt-leeway 0 (tokens that expire after 2 s
# expire then) and a history file (resume across a restart). npm packages
# come from the lockfiles here and in examples/react, examples/vue (npm ci,
# no install scripts); nothing downloads a browser or a toolchain.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
art=$repo/tests/artifacts
PY=/usr/bin/python3
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$art"

bail() { # reason...: one failed TAP line, then exit 1
	echo "not ok 1 - client tests could not run: $*"
	echo "1..1"
	exit 1
}

for prog in node npm nginx curl openssl php go "$CHROMIUM"; do
	command -v "$prog" >/dev/null 2>&1 || bail "$prog not found (bash scripts/deps.sh test installs it)"
done
php -r 'exit(function_exists("curl_init") ? 0 : 1);' || bail "php has no curl extension (php-curl)"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	bail "node $(node --version) is older than 20"

# Pinned by the lockfiles; --ignore-scripts: no install step runs, none
# downloads anything (esbuild's binary comes in its npm package).
for dir in "$here" "$repo/examples/react" "$repo/examples/vue"; do
	if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
		if ! (cd "$dir" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund) >>"$art/clients-npm.log" 2>&1; then
			tail -20 "$art/clients-npm.log" | sed 's/^/# /'
			bail "npm ci failed in ${dir#"$repo"/} (log: $art/clients-npm.log)"
		fi
	fi
done

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

state=$(mktemp -d /tmp/ssehub-clients.XXXXXX)
: > "$art/clients-demo.log"
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
	SSEHUB_DEMO_DIR=$state bash "$repo/scripts/demo.sh" stop >>"$art/clients-demo.log" 2>&1
	cp "$state/ssehub.log" "$art/clients-ssehub.log" 2>/dev/null
	cp "$state/nginx/logs/error.log" "$art/clients-nginx-error.log" 2>/dev/null
	cp "$state/examples-build.log" "$art/clients-examples-build.log" 2>/dev/null
	rm -rf "$state"
}
trap cleanup EXIT

# A port found free may be taken before nginx binds it (other tests run on
# this machine): three tries, new ports each time.
started=0
for _ in 1 2 3; do
	port=$(free_port)
	tls_port=$(free_port)
	if SSEHUB_DEMO_DIR=$state SSEHUB_DEMO_PORT=$port SSEHUB_DEMO_TLS_PORT=$tls_port \
		SSEHUB_DEMO_ARGS="--ping-interval 2 --jwt-leeway 0 --history-file $state/history.jsonl" \
		timeout 300 bash "$repo/scripts/demo.sh" start >>"$art/clients-demo.log" 2>&1; then
		started=1
		break
	fi
	grep -q 'Address already in use' "$state/nginx/logs/error.log" 2>/dev/null || break
	: > "$state/nginx/logs/error.log"
done
if [ "$started" -ne 1 ]; then
	tail -20 "$art/clients-demo.log" | sed 's/^/# /'
	bail "scripts/demo.sh start failed (log: $art/clients-demo.log)"
fi
for ex in react vue; do
	[ -f "$state/web/$ex/index.html" ] || bail "the $ex example was not built (log: $art/clients-examples-build.log)"
done

cd "$here" || bail "no $here"
if [ $# -eq 0 ]; then set -- ./*.test.mjs; fi
SSEHUB_STATE=$state BASE_URL=http://127.0.0.1:$port TLS_URL=https://127.0.0.1:$tls_port \
	ARTIFACTS=$art CHROMIUM=$CHROMIUM \
	timeout 600 node --test --test-reporter=tap --test-concurrency=1 --test-timeout=120000 "$@"
rc=$?
[ $rc -eq 124 ] && echo "not ok 999 - the client tests did not finish within 600 s"
exit $rc
