#!/bin/bash
# run.sh: one-command fan-out benchmark of ssehub behind nginx.
# Builds sseload, starts ssehub (unix socket, fresh HS256 secret) and nginx
# (2 workers) in a temp dir on a free loopback port, opens N streams, publishes
# M broadcasts and reports delivery, latency, memory, threads and CPU.
# Cleans up everything it started; a watchdog bounds the total run time.
# Usage: bench/run.sh [--quick] [-n N] [-m M] [-i MS] [-r RATE] [--pad B] [--shared-token]
#                     [--no-reuseport] [--stop-hub-first] [-o FILE] [--keep]
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
N=10000
MSGS=20
INTERVAL_MS=250
RATE=2000
PAD=150
SHARED=0
REUSEPORT=1
KEEP=0
STOP_FIRST=0
OUT_FILE=
SSEHUB_BIN=${SSEHUB_BIN:-$HERE/../src/ssehub}
SSEHUB_ARGS=${SSEHUB_ARGS:-}

usage() {
	cat <<EOF
usage: $0 [options]
  --quick          smoke run: 500 streams, 5 broadcasts
  -n N             streams (10000)
  -m M             broadcasts (20)
  -i MS            interval between broadcasts (250)
  -r RATE          stream connects per second (2000)
  --pad BYTES      size of the pad string in each message (150)
  --shared-token   one user for every stream (default: one user per stream)
  --no-reuseport   let the 2 nginx workers share one listening socket
  --stop-hub-first SIGTERM ssehub while the streams are still open (shutdown
                   time with N streams; every stream must end cleanly)
  -o FILE          also write the results as key=value lines to FILE
  --keep           keep the temp dir (configs, logs, raw outputs)
env: SSEHUB_BIN (default ../src/ssehub from this script), SSEHUB_ARGS (extra options)
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) N=500; MSGS=5 ;;
	-n) N=$2; shift ;;
	-m) MSGS=$2; shift ;;
	-i) INTERVAL_MS=$2; shift ;;
	-r) RATE=$2; shift ;;
	--pad) PAD=$2; shift ;;
	--shared-token) SHARED=1 ;;
	--no-reuseport) REUSEPORT=0 ;;
	--stop-hub-first) STOP_FIRST=1 ;;
	-o) OUT_FILE=$2; shift ;;
	--keep) KEEP=1 ;;
	-h|--help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
case "$N$MSGS$INTERVAL_MS$RATE$PAD" in *[!0-9]*) usage >&2; exit 2 ;; esac

die() { echo "run.sh: $*" >&2; exit 2; }
[ -x "$SSEHUB_BIN" ] || die "no ssehub binary at $SSEHUB_BIN (build it, or set SSEHUB_BIN)"
SSEHUB_BIN=$(cd "$(dirname "$SSEHUB_BIN")" && pwd)/$(basename "$SSEHUB_BIN")
for t in nginx gcc curl; do command -v $t >/dev/null || die "$t not found"; done
[ -r /etc/nginx/fastcgi_params ] || die "/etc/nginx/fastcgi_params not found"

# every stream costs one fd here and in ssehub, two in nginx
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((N + 100)) ] ||
	die "open-file limit $(ulimit -n) is too low for $N streams"

# time budget (seconds): opening, delivering, and the whole run
OPEN_S=$((N / RATE + 60))
DELIVER_S=$((MSGS * INTERVAL_MS / 1000 + 30))
TOTAL_S=$((OPEN_S + DELIVER_S + 120))

TMP=$(mktemp -d /tmp/ssehub-bench.XXXXXX) || die "mktemp failed"
chmod 755 "$TMP"        # nginx workers (user nobody) must reach the socket
HUB_PID= NGINX_PID= LOAD_PID= WATCHDOG_PID=

stop_pid() {  # stop_pid PID SIGNAL SECONDS: signal, wait, then SIGKILL
	local pid=$1 sig=$2 secs=$3 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -"$sig" "$pid" 2>/dev/null
	for i in $(seq $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "run.sh: pid $pid ignored SIG$sig for ${secs}s, killing it" >&2
	kill -KILL "$pid" 2>/dev/null
}

cleanup() {
	trap - EXIT INT TERM
	[ -n "$LOAD_PID" ] && stop_pid "$LOAD_PID" TERM 5
	[ -n "$NGINX_PID" ] && stop_pid "$NGINX_PID" TERM 10
	[ -n "$HUB_PID" ] && stop_pid "$HUB_PID" TERM 10
	[ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
	wait 2>/dev/null
	if [ "$KEEP" = 1 ]; then echo "run.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: stopped (time budget of ${TOTAL_S}s exceeded?)" >&2; exit 124' TERM

# watchdog: TERM this script when the budget is spent
(
	trap 'kill $sp 2>/dev/null; exit 0' TERM
	sleep "$TOTAL_S" & sp=$!
	wait $sp && kill -TERM $$ 2>/dev/null
) &
WATCHDOG_PID=$!

log() { echo "run.sh: $*" >&2; }

rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status" 2>/dev/null || echo 0; }
threads() { sed -n 's/^Threads:[[:space:]]*//p' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
sys_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
sys_irq() { awk '/^cpu / { print $7 + $8; exit }' /proc/stat; }
sys_steal() { awk '/^cpu / { print $9; exit }' /proc/stat; }
proc_snapshot() {  # pid ticks comm, for every process
	local f line
	for f in /proc/[0-9]*/stat; do
		read -r line <"$f" 2>/dev/null && echo "$line"
	done | awk '{ c = $0; sub(/^[0-9]+ \(/, "", c); sub(/\) .*$/, "", c); gsub(/ /, "_", c)
		r = $0; sub(/^.*\) /, "", r); split(r, a, " "); print $1, a[12] + a[13], c }'
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
nginx_workers() { ps -o pid= --ppid "$NGINX_PID" | tr -d ' '; }
sum_workers() {  # sum_workers FUNC: FUNC over every nginx worker
	local p s=0
	for p in $(nginx_workers); do s=$((s + $($1 "$p"))); done
	echo $s
}
alive() { kill -0 "$1" 2>/dev/null; }
kv() { sed -n "s/^$1=//p" "$2" | tail -n 1; }
stat_clients() {
	curl -s -m 5 -H "Authorization: Bearer $(cat "$TMP/admin.tok")" \
		"http://127.0.0.1:$PORT/api/sse/stats" |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["data"]["total_clients"])' 2>/dev/null ||
		echo "?"
}

# 1. tools, secret, tokens
log "building sseload"
gcc -O2 -Wall -Wextra -o "$TMP/sseload" "$HERE/sseload.c" || die "sseload build failed"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/secret"
chmod 600 "$TMP/secret"
TOKEN_ARGS=
[ "$SHARED" = 1 ] && TOKEN_ARGS=--shared
$PY "$HERE/mktokens.py" --secret-file "$TMP/secret" -n "$N" --out "$TMP/users.tok" \
	--admin-out "$TMP/admin.tok" $TOKEN_ARGS || die "token generation failed"

# 2. ssehub on a unix socket
log "starting $SSEHUB_BIN"
# shellcheck disable=SC2086
"$SSEHUB_BIN" --listen "unix:$TMP/ssehub.sock" --socket-mode 0666 \
	--jwt-secret-file "$TMP/secret" --shutdown-spread 0 --log-level warn \
	$SSEHUB_ARGS >"$TMP/ssehub.log" 2>&1 &
HUB_PID=$!
HUB_PID_SAVED=$HUB_PID
for i in $(seq 100); do
	[ -S "$TMP/ssehub.sock" ] && break
	alive "$HUB_PID" || { cat "$TMP/ssehub.log" >&2; die "ssehub exited at startup"; }
	sleep 0.1
done
[ -S "$TMP/ssehub.sock" ] || die "ssehub did not create its socket in 10 s"

# 3. nginx, 2 workers, on a free port
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LISTEN_OPTS="backlog=4096"
[ "$REUSEPORT" = 1 ] && LISTEN_OPTS="reuseport $LISTEN_OPTS"
# examples/nginx/ssehub.conf as users copy it, rendered for this socket and
# port; only the private prefix and the worker sizes are added around it
NGX=$TMP/nginx
NGINX_CONF=$($PY "$HERE/../tests/integration/frontconf.py" nginx "$NGX" \
	--upstream "unix:$TMP/ssehub.sock" --listen "127.0.0.1:$PORT $LISTEN_OPTS" \
	--workers 2 --connections 20000 --nofile 20000 --error-log-level warn --no-access-log) ||
	die "could not render examples/nginx/ssehub.conf"
log "starting nginx on 127.0.0.1:$PORT"
nginx -p "$NGX/" -c "$NGINX_CONF" -e "$NGX/error.log" &
NGINX_PID=$!
ok=0
for i in $(seq 100); do
	alive "$NGINX_PID" || { cat "$NGX/error.log" >&2; die "nginx exited at startup"; }
	if curl -fs -m 2 "http://127.0.0.1:$PORT/api/sse/health" >/dev/null; then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { tail -n 5 "$NGX/error.log" "$TMP/ssehub.log" >&2; die "health check through nginx failed"; }

# 4. idle figures
sleep 0.5
HUB_RSS0=$(rss_kb "$HUB_PID")
HUB_THREADS0=$(threads "$HUB_PID")
NGX_RSS0=$(sum_workers rss_kb)

# 5. open the streams
log "opening $N streams at $RATE/s"
LOAD_STOP="-e $((N * MSGS))"
[ "$STOP_FIRST" = 1 ] && LOAD_STOP=  # run until the hub ends every stream
# shellcheck disable=SC2086
"$TMP/sseload" -p "$PORT" -n "$N" -T "$TMP/users.tok" -r "$RATE" -R "$TMP/ready" \
	$LOAD_STOP -W "$OPEN_S" -d $((DELIVER_S + 15)) -w $((OPEN_S + DELIVER_S + 30)) \
	-c 60 -i 2 -S >"$TMP/load.out" 2>"$TMP/load.err" &
LOAD_PID=$!
while [ ! -e "$TMP/ready" ] && alive "$LOAD_PID"; do sleep 0.2; done
[ -e "$TMP/ready" ] || { tail -n 20 "$TMP/load.err" >&2; die "sseload ended before READY"; }
log "$(cat "$TMP/ready")"
sleep 1  # let the last hand-offs settle
HUB_RSS1=$(rss_kb "$HUB_PID")
HUB_THREADS1=$(threads "$HUB_PID")
NGX_RSS1=$(sum_workers rss_kb)
NGX_WORKERS=$(nginx_workers | wc -l)
STATS_CLIENTS=$(stat_clients)
HUB_CPU0=$(cpu_ticks "$HUB_PID")
NGX_CPU0=$(sum_workers cpu_ticks)
SYS_BUSY0=$(sys_busy) SYS_IRQ0=$(sys_irq) SYS_STEAL0=$(sys_steal) T_PUB0=$(now_ms)
proc_snapshot >"$TMP/procs0"

# 6. publish
log "publishing $MSGS broadcasts, one every $INTERVAL_MS ms"
timeout $((MSGS * INTERVAL_MS / 1000 + 60)) $PY "$HERE/ssepub.py" --url "http://127.0.0.1:$PORT" \
	--token-file "$TMP/admin.tok" -m "$MSGS" -i "$INTERVAL_MS" --pad "$PAD" >"$TMP/pub.out" 2>&1
PUB_RC=$?
[ $PUB_RC = 0 ] || { log "publisher failed (rc $PUB_RC):"; tail -n 5 "$TMP/pub.out" >&2; }

# 7. wait for delivery (sseload stops at N*M messages or after its -d),
# 8. check that the hub forgets every stream once the clients are gone,
# 9. stop ssehub and time it (--stop-hub-first: while the streams are open)
stop_hub() {
	local t0 i rc
	t0=$(date +%s%N)
	kill -TERM "$HUB_PID"
	for i in $(seq 500); do alive "$HUB_PID" || break; sleep 0.02; done
	if alive "$HUB_PID"; then
		HUB_STOP="did not exit within 10 s of SIGTERM"
		kill -KILL "$HUB_PID"
		wait "$HUB_PID" 2>/dev/null
	else
		wait "$HUB_PID"
		rc=$?
		HUB_STOP="exit $rc after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	fi
	HUB_PID=
}
wait_load() {  # wait_load SECONDS: wait for sseload to exit, then stop it
	local i
	for i in $(seq $(($1 * 5))); do alive "$LOAD_PID" || break; sleep 0.2; done
	alive "$LOAD_PID" && stop_pid "$LOAD_PID" TERM 5
	wait "$LOAD_PID" 2>/dev/null
	LOAD_PID=
}
sample_after_publish() {  # CPU, processes, RSS and threads at the end of the publish phase
	HUB_CPU1=$(cpu_ticks "$HUB_PID")
	NGX_CPU1=$(sum_workers cpu_ticks)
	SYS_BUSY1=$(sys_busy) SYS_IRQ1=$(sys_irq) SYS_STEAL1=$(sys_steal) T_PUB1=$(now_ms)
	proc_snapshot >"$TMP/procs1"
	HUB_RSS2=$(rss_kb "$HUB_PID")
	HUB_THREADS2=$(threads "$HUB_PID")
}
if [ "$STOP_FIRST" = 1 ]; then
	sleep 3  # delivery of the last broadcast
	sample_after_publish
	HUB_RSS3=n/a
	LEFT=n/a
	stop_hub
	HUB_STOP="$HUB_STOP, with $STATS_CLIENTS streams open"
	wait_load 30
else
	wait_load $((DELIVER_S + 30))
	sample_after_publish
	LEFT="?"
	for i in $(seq 50); do
		LEFT=$(stat_clients)
		[ "$LEFT" = 0 ] && break
		sleep 0.2
	done
	HUB_RSS3=$(rss_kb "$HUB_PID")
	stop_hub
fi

# 10. report
L=$TMP/load.out
OPEN=$(kv streams_open "$L")
OPENED=$(kv streams_opened_total "$L")
CLOSED=$(kv streams_closed "$L")
DELIVERED=$(kv messages_delivered "$L")
EXPECTED=$((N * MSGS))
TICK=$(getconf CLK_TCK)
per_stream() { awk -v a="$1" -v b="$2" -v n="${OPENED:-0}" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1024 / n; else print "n/a" }'; }
cpu_us() { awk -v a="$1" -v b="$2" -v t="$TICK" -v d="$DELIVERED" \
	'BEGIN { if (d > 0) printf "%.2f", (b - a) / t * 1e6 / d; else print "n/a" }'; }
HUB_PER=$(per_stream "$HUB_RSS0" "$HUB_RSS1")
NGX_PER=$(per_stream "$NGX_RSS0" "$NGX_RSS1")
HUB_CPU_US=$(cpu_us "$HUB_CPU0" "$HUB_CPU1")
NGX_CPU_US=$(cpu_us "$NGX_CPU0" "$NGX_CPU1")
RECIP=$(kv recipients_total "$TMP/pub.out")
# CPU seconds in the publish phase: whole machine vs the processes measured
CPU_LINE=$(awk -v t="$TICK" -v ncpu="$(nproc)" -v wall="$((T_PUB1 - T_PUB0))" \
	-v sys="$((SYS_BUSY1 - SYS_BUSY0))" -v steal="$((SYS_STEAL1 - SYS_STEAL0))" \
	-v irq="$((SYS_IRQ1 - SYS_IRQ0))" \
	-v hub="$((HUB_CPU1 - HUB_CPU0))" -v ngx="$((NGX_CPU1 - NGX_CPU0))" \
	-v cli="$(kv client_cpu_after_ready_s "$L")" 'BEGIN {
		all = sys / t; h = hub / t; n = ngx / t; q = irq / t; o = all - h - n - cli - q
		if (o < 0) o = 0
		printf "%.2f s busy of %.2f s (%d cores x %.2f s): ssehub %.2f, nginx %.2f, sseload %.2f, irq/softirq %.2f, rest %.2f; steal %.2f",
			all, ncpu * wall / 1000, ncpu, wall / 1000, h, n, cli, q, o, steal / t
		printf "\n%.2f %.2f", o, steal / t
	}')
CPU_OTHER=$(echo "$CPU_LINE" | tail -n 1 | cut -d' ' -f1)
CPU_STEAL=$(echo "$CPU_LINE" | tail -n 1 | cut -d' ' -f2)
CPU_LINE=$(echo "$CPU_LINE" | head -n 1)
# other processes' CPU in that phase (ours excluded by pid; sseload by name)
OURS=" $HUB_PID_SAVED $NGINX_PID $(nginx_workers | tr '\n' ' ') "
awk -v t="$TICK" -v ours="$OURS" 'NR == FNR { a[$1] = $2; next }
	index(ours, " " $1 " ") == 0 && $3 != "sseload" { d = ($2 - a[$1]) / t; if (d > 0) printf "%.2f %s\n", d, $3 }' \
	"$TMP/procs0" "$TMP/procs1" | sort -rn >"$TMP/others"
OTHERS_SUM=$(awk '{ s += $1 } END { printf "%.2f", s }' "$TMP/others")
CPU_OTHER=$(awk -v a="$OTHERS_SUM" -v b="$CPU_OTHER" 'BEGIN { print (a > b ? a : b) }')
TOP_OTHER=$(awk '$1 >= 0.05' "$TMP/others" | head -n 4 | awk '{ printf "%s%s %s s", (NR > 1 ? ", " : ""), $2, $1 }')

cat <<EOF

ssehub fan-out benchmark: $N streams, $MSGS broadcasts (pad $PAD B) every $INTERVAL_MS ms
  streams open           $OPENED / $N  (connect errors $(kv connect_errors "$L"), retries $(kv connect_retries "$L"), HTTP errors $(kv http_errors "$L"); all open after $(kv open_time_s "$L") s; hub stats total_clients $STATS_CLIENTS)
  messages delivered     $DELIVERED / $EXPECTED  (recipients reported by the hub: ${RECIP:-?}; duplicates/out of order $(kv seq_errors "$L"))
  fan-out latency        p50 $(kv latency_p50_ms "$L") ms, p99 $(kv latency_p99_ms "$L") ms, max $(kv latency_max_ms "$L") ms
  ssehub RSS             idle $HUB_RSS0 kB, $N streams $HUB_RSS1 kB -> $HUB_PER B per stream (after broadcasts $HUB_RSS2 kB, after clients left $HUB_RSS3 kB)
  ssehub threads         $HUB_THREADS1  (idle $HUB_THREADS0, after broadcasts $HUB_THREADS2)
  nginx RSS ($NGX_WORKERS workers)  idle $NGX_RSS0 kB, $N streams $NGX_RSS1 kB -> $NGX_PER B per stream
  CPU per delivered msg  ssehub $HUB_CPU_US us, nginx $NGX_CPU_US us (publish phase)
  machine CPU            $CPU_LINE
  other processes        $OTHERS_SUM CPU-s (${TOP_OTHER:-none over 0.05 s})
  clients left           hub total_clients afterwards: $LEFT
  ssehub SIGTERM         $HUB_STOP
  streams ended early    $CLOSED  (by the server before the client left: $(kv streams_ended_clean "$L") cleanly, $(kv streams_ended_abrupt "$L") cut off; protocol errors $(kv protocol_errors "$L"), other events $(kv other_events "$L"))
  load client            cpu $(kv client_cpu_s "$L") s, stop reason $(kv stop_reason "$L")
EOF
if [ -n "$OUT_FILE" ]; then
	{
		echo "broadcasts=$MSGS"
		grep -E '^[a-z0-9_]+=' "$L"
		echo "recipients_reported=${RECIP:-}"
		echo "stats_total_clients=$STATS_CLIENTS"
		echo "hub_rss_idle_kb=$HUB_RSS0"
		echo "hub_rss_streams_kb=$HUB_RSS1"
		echo "hub_rss_per_stream_bytes=$HUB_PER"
		echo "hub_threads=$HUB_THREADS1"
		echo "nginx_rss_idle_kb=$NGX_RSS0"
		echo "nginx_rss_streams_kb=$NGX_RSS1"
		echo "nginx_rss_per_stream_bytes=$NGX_PER"
		echo "hub_cpu_us_per_delivery=$HUB_CPU_US"
		echo "nginx_cpu_us_per_delivery=$NGX_CPU_US"
		echo "other_cpu_s=$CPU_OTHER"
		echo "steal_cpu_s=$CPU_STEAL"
		echo "clients_left=$LEFT"
		echo "hub_stop=$HUB_STOP"
	} >"$OUT_FILE"
fi
if awk -v o="$CPU_OTHER" 'BEGIN { exit !(o > 0.5) }'; then
	log "warning: other processes used $CPU_OTHER CPU-s during the publish phase; latency and CPU figures are disturbed"
fi
if grep -q . "$TMP/ssehub.log"; then
	log "ssehub log (last lines):"
	tail -n 10 "$TMP/ssehub.log" >&2
fi
if grep -qE '\[(alert|crit|emerg|error)\]' "$NGX/error.log"; then
	log "nginx errors (first lines):"
	grep -E '\[(alert|crit|emerg|error)\]' "$NGX/error.log" | head -n 5 >&2
fi
if [ "$STOP_FIRST" = 1 ]; then
	[ "$OPENED" = "$N" ] && [ "$(kv streams_ended_clean "$L")" = "$N" ] && [ "$DELIVERED" = "$EXPECTED" ] &&
		[ "$(kv protocol_errors "$L")" = 0 ]
else
	[ "$OPEN" = "$N" ] && [ "$DELIVERED" = "$EXPECTED" ]
fi
