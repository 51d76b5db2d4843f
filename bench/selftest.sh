#!/bin/bash
# selftest.sh: checks sseload's HTTP/SSE parsing and ssepub against testsrv.py
# (no ssehub needed). Each case runs the awkward test server in one framing
# mode, opens streams, publishes, and compares sseload's summary with what the
# server must have delivered. Bounded: every process has a timeout.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/sseload-selftest.XXXXXX)
SRV_PID=
cleanup() {
	[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -Wall -Wextra -o "$TMP/sseload" "$HERE/sseload.c" || exit 1
printf 'tok-a\ntok-b\ntok+c/d\n' >"$TMP/tokens"   # cycled; + and / get %-encoded

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

fails=0
# check NAME FILE key=value...: every key in FILE must have that value
check() {
	local name=$1 file=$2 kv k v got ok=1
	shift 2
	for kv in "$@"; do
		k=${kv%%=*} v=${kv#*=}
		got=$(sed -n "s/^$k=//p" "$file")
		if [ "$got" != "$v" ]; then
			echo "FAIL $name: $k=$got, want $v"
			ok=0
		fi
	done
	if [ $ok = 1 ]; then echo "ok   $name"; else fails=$((fails + 1)); sed 's/^/     /' "$TMP/load.err" | tail -n 15; fi
}

# run_case NAME N MSGS "server args" "sseload args"
run_case() {
	local name=$1 n=$2 msgs=$3 sargs=$4 largs=$5 port i
	port=$(free_port)
	timeout 120 $PY "$HERE/testsrv.py" --port "$port" $sargs >"$TMP/srv.log" 2>&1 &
	SRV_PID=$!
	for i in $(seq 50); do
		curl -fs "http://127.0.0.1:$port/api/sse/health" >/dev/null && break
		sleep 0.1
	done
	rm -f "$TMP/ready"
	timeout 90 "$TMP/sseload" -p "$port" -n "$n" -r 500 -R "$TMP/ready" -w 60 -d 20 \
		-i 0 $largs >"$TMP/load.out" 2>"$TMP/load.err" &
	local lpid=$!
	for i in $(seq 300); do [ -e "$TMP/ready" ] && break; sleep 0.1; done
	if [ "$msgs" -gt 0 ]; then
		timeout 60 $PY "$HERE/ssepub.py" --url "http://127.0.0.1:$port" --token admin \
			-m "$msgs" -i 100 >"$TMP/pub.out" 2>&1 || echo "     (publisher reported failures)"
	fi
	wait $lpid
	kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; SRV_PID=
	cp "$TMP/load.out" "$TMP/$name.out"
}

run_case chunked-split 200 5 "--mode chunked --split --line-endings mix --pings --fail-every 10" "-T $TMP/tokens -e 900"
check chunked-split "$TMP/load.out" streams_open=180 connect_errors=20 http_errors=20 http_status_503=20 \
	events_connected=180 messages_delivered=900 latency_samples=900 seq_errors=0 protocol_errors=0 \
	other_events=0 stop_reason=expected
grep -q '^recipients_total=900$' "$TMP/pub.out" && echo "ok   ssepub recipients" || { echo "FAIL ssepub"; cat "$TMP/pub.out"; fails=$((fails+1)); }

run_case chunked-crlf-header 100 4 "--mode chunked --line-endings crlf" "-t tok -a -e 400"
check chunked-crlf-header "$TMP/load.out" streams_open=100 connect_errors=0 messages_delivered=400 \
	seq_errors=0 protocol_errors=0 stop_reason=expected

run_case eof-cr 100 3 "--mode eof --split --line-endings cr" "-t tok -e 300"
check eof-cr "$TMP/load.out" streams_open=100 messages_delivered=300 seq_errors=0 protocol_errors=0 \
	stop_reason=expected

run_case length 50 0 "--mode length --split --line-endings mix --length-messages 3" "-t tok"
check length "$TMP/load.out" streams_open=0 streams_opened_total=50 streams_closed=50 streams_ended_clean=50 \
	messages_delivered=150 seq_errors=0 protocol_errors=0 stop_reason=all_closed

run_case no-token 20 0 "--mode chunked" ""
check no-token "$TMP/load.out" streams_open=0 connect_errors=20 http_status_401=20 stop_reason=all_closed

# nobody listening: every attempt refused, retried, then counted as an error
port=$(free_port)
timeout 30 "$TMP/sseload" -p "$port" -n 10 -t tok -x 2 -b 10 -i 0 -w 10 >"$TMP/load.out" 2>"$TMP/load.err"
check refused "$TMP/load.out" connect_errors=10 connect_retries=20 retries_econnrefused=20 stop_reason=all_closed

[ $fails = 0 ] && echo "selftest: all passed" || echo "selftest: $fails failed"
exit $((fails > 0))
