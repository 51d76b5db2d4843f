#!/usr/bin/env bash
# ssehub demo: build ssehub, run it behind a private nginx instance that serves
# the demo page (examples/web), mint demo tokens and print how to use them.
#
#   scripts/demo.sh [start]   install what is missing (as root), build, (re)start
#   scripts/demo.sh stop      stop what the demo started
#   scripts/demo.sh status
#
# Environment:
#   SSEHUB_DEMO_DIR   state directory (default /tmp/ssehub-demo): secret, tokens,
#                     socket, logs, the generated nginx.conf
#   SSEHUB_DEMO_HOST  address nginx listens on (default 127.0.0.1)
#   SSEHUB_DEMO_PORT  port (default: 8080, or the next free one up to 8099)
#   SSEHUB_DEMO_ARGS  extra ssehub options, e.g. "--ping-interval 5 --log-level debug"
#
# The system nginx is not touched: the demo runs its own nginx master with its
# own prefix, pid file and config, generated from examples/nginx/ssehub.conf.
# Running it again stops the previous demo first; the secret is kept.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${SSEHUB_DEMO_DIR:-/tmp/ssehub-demo}
HOST=${SSEHUB_DEMO_HOST:-127.0.0.1}
RUN_DIR=$STATE/run
SOCK=$RUN_DIR/ssehub.sock
SECRET=$STATE/jwt.secret
SSEHUB_PID=$STATE/ssehub.pid
SSEHUB_LOG=$STATE/ssehub.log
NGX=$STATE/nginx
NGINX_CONF=$NGX/nginx.conf
NGINX_PID=$NGX/nginx.pid
NGINX_ERR=$NGX/logs/error.log
WEB=$REPO/examples/web
BIN=$REPO/src/ssehub
PYTHON=/usr/bin/python3
TOKEN_TTL=86400

PACKAGES=(build-essential autoconf automake libtool pkg-config libfcgi-dev
          libjson-c-dev libjwt-dev uuid-dev nginx python3-jwt curl)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

nginx_bin() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } ||
        die "nginx not found"
}

# True if pid $1 is alive and its command line contains $2. Guards every kill:
# a stale pid file may name a pid that now belongs to someone else.
pid_matches() {
    local pid=$1 pattern=$2
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

read_pid() { if [ -s "$1" ]; then tr -dc '0-9' < "$1"; fi; }

# Sends $2 to pid $1, then waits up to $3 seconds for it to exit.
stop_pid() {
    local pid=$1 sig=$2 wait_s=$3 i
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

port_busy() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null
    fi
}

# ---- stop ----------------------------------------------------------------

do_stop() {
    local pid stopped=0
    pid=$(read_pid "$NGINX_PID")
    if [ -n "$pid" ] && pid_matches "$pid" "$NGINX_CONF"; then
        say "stopping nginx (pid $pid)"
        # TERM, not QUIT: a graceful stop would wait for open streams.
        stop_pid "$pid" TERM 10 || stop_pid "$pid" KILL 2 || die "nginx (pid $pid) does not stop"
        stopped=1
    fi
    rm -f "$NGINX_PID"

    pid=$(read_pid "$SSEHUB_PID")
    if [ -n "$pid" ] && pid_matches "$pid" "$SOCK"; then
        say "stopping ssehub (pid $pid)"
        stop_pid "$pid" TERM 15 || { say "ssehub ignored SIGTERM for 15 s; killing it"; stop_pid "$pid" KILL 2; } ||
            die "ssehub (pid $pid) does not stop"
        stopped=1
    fi
    rm -f "$SSEHUB_PID" "$SOCK"
    [ "$stopped" -eq 1 ] || say "nothing was running"
}

do_status() {
    local pid rc=0
    pid=$(read_pid "$SSEHUB_PID")
    if [ -n "$pid" ] && pid_matches "$pid" "$SOCK"; then
        echo "ssehub: running (pid $pid), socket $SOCK"
    else
        echo "ssehub: not running"; rc=1
    fi
    pid=$(read_pid "$NGINX_PID")
    if [ -n "$pid" ] && pid_matches "$pid" "$NGINX_CONF"; then
        echo "nginx:  running (pid $pid), $(cat "$STATE/url" 2>/dev/null)"
    else
        echo "nginx:  not running"; rc=1
    fi
    return $rc
}

# ---- start ---------------------------------------------------------------

install_missing() {
    local pkg missing=()
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]})"
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${missing[@]}"
}

build() {
    local log=$STATE/build.log
    say "building ssehub in $REPO (log: $log)"
    (
        cd "$REPO"
        if [ ! -f Makefile ]; then
            autoreconf -fi && ./configure
        fi
        make -j"$(nproc)"
    ) > "$log" 2>&1 || { tail -n 30 "$log" >&2; die "build failed (full log: $log)"; }
    [ -x "$BIN" ] || die "build did not produce $BIN"
}

prepare_state() {
    # Refuse a state directory that someone else owns (it lives in /tmp).
    if [ -e "$STATE" ] || [ -L "$STATE" ]; then
        if [ ! -d "$STATE" ] || [ -L "$STATE" ] || [ ! -O "$STATE" ]; then
            die "$STATE exists and is not a directory owned by $(id -un)"
        fi
    fi
    install -d -m 0755 "$STATE" "$NGX" "$NGX/logs" "$NGX/tmp"
    if [ ! -s "$SECRET" ]; then
        say "generating the JWT secret ($SECRET)"
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' > "$SECRET")
    fi
    chmod 0600 "$SECRET"
}

pick_port() {
    local port
    if [ -n "${SSEHUB_DEMO_PORT:-}" ]; then
        port_busy "$SSEHUB_DEMO_PORT" && die "port $SSEHUB_DEMO_PORT is busy"
        echo "$SSEHUB_DEMO_PORT"; return
    fi
    for port in $(seq 8080 8099); do
        port_busy "$port" || { echo "$port"; return; }
    done
    die "ports 8080-8099 are all busy; set SSEHUB_DEMO_PORT"
}

# As root, nginx's workers run as www-data: they need the socket (see
# start_ssehub) and read access to the page.
web_root_for() {
    local user=$1
    if [ -n "$user" ] && ! runuser -u "$user" -- test -r "$WEB/app.js"; then
        say "$user cannot read $WEB; serving a copy from $STATE/web"
        rm -rf "$STATE/web"
        cp -r "$WEB" "$STATE/web"
        chmod -R a+rX "$STATE/web"
        echo "$STATE/web"
    else
        echo "$WEB"
    fi
}

start_ssehub() {
    local worker_group=$1 pid i
    if [ -n "$worker_group" ]; then
        # setgid directory: the socket ssehub creates in it belongs to
        # nginx's group, and --socket-mode 0660 lets only root and nginx's
        # workers connect.
        install -d "$RUN_DIR"
        chgrp "$worker_group" "$RUN_DIR"
        chmod 2750 "$RUN_DIR"
    else
        install -d -m 0700 "$RUN_DIR"
    fi
    rm -f "$SOCK"

    local extra_args=()
    read -r -a extra_args <<< "${SSEHUB_DEMO_ARGS:-}"
    say "starting ssehub on unix:$SOCK (log: $SSEHUB_LOG)"
    # setsid: the hub outlives this script and the terminal's signals.
    setsid "$BIN" --listen "unix:$SOCK" --socket-mode 0660 \
        --jwt-secret-file "$SECRET" \
        --shutdown-spread 0 \
        --log stderr --log-level info \
        "${extra_args[@]}" \
        < /dev/null >> "$SSEHUB_LOG" 2>&1 &
    pid=$!
    echo "$pid" > "$SSEHUB_PID"

    for ((i = 0; i < 50; i++)); do
        [ -S "$SOCK" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$SSEHUB_LOG" >&2
    die "ssehub did not create $SOCK"
}

write_nginx_conf() {
    local port=$1 user=$2 web=$3 listen_addr=$HOST
    case $HOST in *:*) listen_addr="[$HOST]" ;; esac

    # The server block is examples/nginx/ssehub.conf with four values
    # replaced; its header lists them. Check each replacement happened, so
    # that an edit to the example cannot silently break the demo.
    local esc_listen esc_web esc_sock
    esc_listen=$(sed_escape "$listen_addr:$port")
    esc_web=$(sed_escape "$web")
    esc_sock=$(sed_escape "$SOCK")
    sed -e "s|^\([[:space:]]*\)listen 80;|\1listen $esc_listen;|" \
        -e '/^[[:space:]]*listen \[::\]:80;/d' \
        -e "s|^\([[:space:]]*\)root /var/www/ssehub;|\1root $esc_web;|" \
        -e "s|unix:/run/ssehub/ssehub\.sock;|unix:$esc_sock;|" \
        "$REPO/examples/nginx/ssehub.conf" > "$NGX/ssehub.conf"
    local active
    active=$(grep -v '^[[:space:]]*#' "$NGX/ssehub.conf")
    if ! grep -qF "listen $listen_addr:$port;" <<< "$active" ||
       ! grep -qF "root $web;" <<< "$active" ||
       ! grep -qF "fastcgi_pass unix:$SOCK;" <<< "$active" ||
       grep -qF '/run/ssehub/' <<< "$active"; then
        die "examples/nginx/ssehub.conf no longer has the lines demo.sh rewrites (see its header)"
    fi

    cp /etc/nginx/fastcgi_params "$NGX/fastcgi_params"

    {
        echo "# Generated by scripts/demo.sh on $(date -u +%FT%TZ); rewritten on every start."
        if [ -n "$user" ]; then echo "user $user $(id -gn "$user");"; fi
        cat <<EOF
worker_processes 1;
pid $NGINX_PID;
error_log $NGINX_ERR notice;

# Stop and reload must not wait for open streams (examples/nginx/README.md).
worker_shutdown_timeout 2s;

events {
    worker_connections 1024;    # >= 2 x streams
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $NGX/logs/access.log;

    # Private temporary directories: the compiled-in ones belong to the
    # system nginx.
    client_body_temp_path $NGX/tmp/client_body;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    proxy_temp_path $NGX/tmp/proxy;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;

    include ssehub.conf;
}
EOF
    } > "$NGINX_CONF"
}

sed_escape() { printf '%s' "$1" | sed 's/[\\|&]/\\&/g'; }

start_nginx() {
    local nginx
    nginx=$(nginx_bin)
    "$nginx" -t -q -p "$NGX/" -c "$NGINX_CONF" -e "$NGINX_ERR" ||
        die "nginx -t failed for $NGINX_CONF"
    say "starting nginx ($NGINX_CONF)"
    "$nginx" -p "$NGX/" -c "$NGINX_CONF" -e "$NGINX_ERR" ||
        { tail -n 20 "$NGINX_ERR" >&2; die "nginx did not start"; }
}

wait_healthy() {
    local base=$1 i out
    for ((i = 0; i < 30; i++)); do
        out=$(curl -sS --max-time 2 "$base/api/sse/health" 2>/dev/null || true)
        case $out in *'"success":true'*) return 0 ;; esac
        sleep 0.2
    done
    echo "last answer: ${out:-none}" >&2
    tail -n 10 "$NGINX_ERR" "$SSEHUB_LOG" >&2
    die "ssehub is not healthy behind nginx ($base/api/sse/health)"
}

# Writes alice.jwt, bob.jwt and admin.jwt (HS256, valid $TOKEN_TTL s) into
# $STATE, signed with the secret exactly as ssehub reads it.
mint_tokens() {
    (umask 077 && "$PYTHON" - "$SECRET" "$STATE" "$TOKEN_TTL" <<'EOF'
import os, sys, time
import jwt

secret_file, state, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(secret_file, "rb") as f:
    key = f.read()
if key.endswith(b"\n"):          # ssehub ignores one trailing newline
    key = key[:-1]
now = int(time.time())
claims = {
    "alice": {"user_id": "alice"},
    "bob": {"user_id": "bob"},
    "admin": {"user_id": "admin", "role": "admin"},
}
for name, c in claims.items():
    token = jwt.encode(dict(c, iat=now, exp=now + ttl), key, algorithm="HS256")
    with open(os.path.join(state, name + ".jwt"), "w") as f:
        f.write(token + "\n")
EOF
    ) || die "minting tokens failed (is python3-jwt installed?)"
}

print_usage_notes() {
    local base=$1 port=$2 alice bob admin
    alice=$(cat "$STATE/alice.jwt")
    bob=$(cat "$STATE/bob.jwt")
    admin=$(cat "$STATE/admin.jwt")
    cat <<EOF

ssehub demo is running: ssehub on unix:$SOCK, nginx on $base
Tokens (HS256, valid $((TOKEN_TTL / 3600)) h) are in $STATE/{alice,bob,admin}.jwt.

Demo page as user alice, with the admin token (send + stats panels work):
  $base/#token=$alice&admin=$admin

Same page as user bob (open it in a second tab, then send to user alice):
  $base/#token=$bob

Watch a stream from the shell:
  curl -sN '$base/sse/stream?token=$alice'

Broadcast to everyone:
  curl -sS -H 'Authorization: Bearer $admin' -H 'Content-Type: application/json' \\
       -d '{"event":"notification","data":{"title":"Hello, everyone"}}' $base/api/sse/broadcast

Send to every stream of user alice:
  curl -sS -H 'Authorization: Bearer $admin' -H 'Content-Type: application/json' \\
       -d '{"user_id":"alice","event":"notification","data":{"title":"Hello, Alice"}}' $base/api/sse/send-to-user

Stats and metrics:
  curl -sS -H 'Authorization: Bearer $admin' $base/api/sse/stats
  curl -sS -H 'Authorization: Bearer $admin' $base/metrics

Logs: $SSEHUB_LOG, $NGX/logs/error.log
Stop: $REPO/scripts/demo.sh stop
EOF
    local fwd_host=$HOST
    case $HOST in *:*) fwd_host="[$HOST]" ;; esac
    case $HOST in
        127.*|::1|localhost)
            echo "(nginx listens on $HOST only. From another machine: ssh -L $port:$fwd_host:$port <this host>," \
                 "or restart with SSEHUB_DEMO_HOST=0.0.0.0.)" ;;
    esac
}

do_start() {
    local nginx_user="" nginx_group="" port web base
    install_missing
    [ -x "$PYTHON" ] || die "$PYTHON not found"
    prepare_state
    build
    do_stop

    if is_root; then
        nginx_user=www-data
        id "$nginx_user" >/dev/null 2>&1 || nginx_user=nobody
        nginx_group=$(id -gn "$nginx_user")
    fi
    port=$(pick_port)
    web=$(web_root_for "$nginx_user")
    # URLs to print and to check with: a wildcard address is reachable as
    # loopback.
    case $HOST in
        0.0.0.0) base="http://127.0.0.1:$port" ;;
        ::|'[::]') base="http://[::1]:$port" ;;
        *:*) base="http://[$HOST]:$port" ;;
        *) base="http://$HOST:$port" ;;
    esac

    start_ssehub "$nginx_group"
    write_nginx_conf "$port" "$nginx_user" "$web"
    start_nginx
    wait_healthy "$base"
    echo "$base/" > "$STATE/url"
    mint_tokens
    print_usage_notes "$base" "$port"
}

case ${1:-start} in
    start)  do_start ;;
    stop)   do_stop ;;
    status) do_status ;;
    -h|--help|help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" ;;
    *) die "usage: $0 [start|stop|status]" ;;
esac
