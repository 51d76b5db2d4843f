#!/usr/bin/env bash
# Browser tests: Debian's headless Chromium (driven by playwright-core) on the
# demo page, with ssehub and nginx started by scripts/demo.sh on a free port
# in a state directory of their own. Prints TAP ("ok N - ...") and exits
# non-zero when a test failed or could not run.
#
#   bash tests/browser/run.sh
#
# Needs node (>= 20), npm, chromium, nginx, curl and python3-jwt (scripts/deps.sh
# test installs them); runs `npm ci` here when node_modules is missing. Logs
# and screenshots go to tests/artifacts/ (browser*.png, browser-*.log).
#
# Besides the demo's nginx (the page's own origin) it serves the demo's web
# root (examples/web with the client package at ssehub-client/) from a second
# port with python's http.server: that origin is added to nginx's
# CORS allowlist (the generated copy of examples/nginx/ssehub.conf), and the
# same server reached as "localhost" is an origin the allowlist does not hold.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
art=$repo/tests/artifacts
PY=/usr/bin/python3
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
mkdir -p "$art"

n_bail=0
bail() { # reason...: one failed TAP line, then exit 1
	n_bail=$((n_bail + 1))
	echo "not ok $n_bail - browser tests could not run: $*"
	echo "1..$n_bail"
	exit 1
}

for prog in node npm nginx curl "$CHROMIUM"; do
	command -v "$prog" >/dev/null 2>&1 || bail "$prog not found (bash scripts/deps.sh test installs it)"
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
	bail "node $(node --version) is older than 20"

if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
	# package-lock.json pins playwright-core; it downloads no browser.
	if ! (cd "$here" && timeout 300 npm ci --no-audit --no-fund) >"$art/browser-npm.log" 2>&1; then
		tail -20 "$art/browser-npm.log" | sed 's/^/# /'
		bail "npm ci failed (log: $art/browser-npm.log)"
	fi
fi

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

state=$(mktemp -d /tmp/ssehub-browser.XXXXXX)
other_pid=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
	SSEHUB_DEMO_DIR=$state bash "$repo/scripts/demo.sh" stop >>"$art/browser-demo.log" 2>&1
	if [ -n "$other_pid" ]; then kill "$other_pid" 2>/dev/null; wait "$other_pid" 2>/dev/null; fi
	cp "$state/ssehub.log" "$art/browser-ssehub.log" 2>/dev/null
	cp "$state/nginx/logs/error.log" "$art/browser-nginx-error.log" 2>/dev/null
	rm -rf "$state"
}
trap cleanup EXIT

: > "$art/browser-demo.log"
# Short pings so that the test sees them; --history-file so that a restarted
# hub knows the ids the clients resume from. A port found free may be taken
# before nginx binds it (other tests run on this machine): three tries.
started=0
for _ in 1 2 3; do
	port=$(free_port)
	if SSEHUB_DEMO_DIR=$state SSEHUB_DEMO_PORT=$port SSEHUB_DEMO_TLS_PORT=off \
		SSEHUB_DEMO_ARGS="--ping-interval 2 --history-file $state/history.jsonl" \
		timeout 300 bash "$repo/scripts/demo.sh" start >>"$art/browser-demo.log" 2>&1; then
		started=1
		break
	fi
	grep -q 'Address already in use' "$state/nginx/logs/error.log" 2>/dev/null || break
	: > "$state/nginx/logs/error.log"
done
if [ "$started" -ne 1 ]; then
	tail -20 "$art/browser-demo.log" | sed 's/^/# /'
	bail "scripts/demo.sh start failed (log: $art/browser-demo.log)"
fi

other_port=$(free_port)
"$PY" -m http.server --bind 127.0.0.1 --directory "$state/web" "$other_port" \
	>"$art/browser-other-origin.log" 2>&1 &
other_pid=$!
other_origin="http://127.0.0.1:$other_port"
for _ in $(seq 50); do
	curl -fsS -o /dev/null --max-time 1 "$other_origin/index.html" 2>/dev/null && break
	sleep 0.1
done

# Allow the second origin in the demo's copy of the CORS map, then reload.
conf=$state/nginx/ssehub.conf
sed -i "s|^map \$http_origin \$ssehub_cors_origin {|&\n    \"$other_origin\" \$http_origin;|" "$conf"
grep -qF "\"$other_origin\" \$http_origin;" "$conf" ||
	bail "examples/nginx/ssehub.conf has no 'map \$http_origin \$ssehub_cors_origin {' line"
nginx -p "$state/nginx/" -c "$state/nginx/nginx.conf" -e "$state/nginx/logs/error.log" -s reload ||
	bail "nginx reload failed"
sleep 0.5

SSEHUB_STATE=$state BASE_URL=http://127.0.0.1:$port OTHER_ORIGIN=$other_origin \
	DENIED_ORIGIN=http://localhost:$other_port ARTIFACTS=$art CHROMIUM=$CHROMIUM \
	timeout 300 node "$here/test.mjs"
rc=$?
[ $rc -eq 124 ] && echo "not ok 99 - the browser tests did not finish within 300 s"
exit $rc
