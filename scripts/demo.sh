#!/usr/bin/env bash
# ssehub demo: build ssehub, run it behind a private nginx instance that serves
# the demo page (examples/web, with the client package clients/js at
# /ssehub-client/), the React and Vue examples (/react/, /vue/) and the same
# over HTTPS + HTTP/2, mint demo tokens and print how to use them.
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
#   SSEHUB_DEMO_TLS_PORT  HTTPS + HTTP/2 port (default: 8443, or the next free
#                     one up to 8462); "off" serves no HTTPS
#   SSEHUB_DEMO_ARGS  extra ssehub options, e.g. "--ping-interval 5 --log-level debug"
#
# The system nginx is not touched: the demo runs its own nginx master with its
# own prefix, pid file and config, generated from examples/nginx/ssehub.conf
# and ssehub-tls.conf (with a self-signed certificate made by openssl), plus
# any *.conf dropped in $SSEHUB_DEMO_DIR/nginx/conf.d/ (read in http {}).
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
WEB_ROOT=$STATE/web
TLS=$STATE/tls
BIN=$REPO/src/ssehub
PYTHON=/usr/bin/python3
TOKEN_TTL=86400

PACKAGES=(build-essential autoconf automake libtool pkg-config libfcgi-dev
          libjson-c-dev libjwt-dev uuid-dev nginx python3-jwt curl openssl)

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
    install -d -m 0755 "$STATE" "$NGX" "$NGX/logs" "$NGX/tmp" "$NGX/conf.d"
    if [ ! -s "$SECRET" ]; then
        say "generating the JWT secret ($SECRET)"
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' > "$SECRET")
    fi
    chmod 0600 "$SECRET"
}

pick_port() { # wanted first last variable: a free port
    local port wanted=$1 first=$2 last=$3
    if [ -n "$wanted" ]; then
        port_busy "$wanted" && die "port $wanted is busy"
        echo "$wanted"; return
    fi
    for port in $(seq "$first" "$last"); do
        port_busy "$port" || { echo "$port"; return; }
    done
    die "ports $first-$last are all busy; set $4"
}

# The React and Vue examples, built with esbuild from the packages their
# lockfiles pin (npm ci once, then a build of a second or less). Optional:
# without npm, or when the build fails, the demo runs without them.
build_examples() {
    local ex dir log=$STATE/examples-build.log
    : > "$log"
    if ! command -v npm >/dev/null 2>&1; then
        say "npm not found: the React and Vue examples are not built"
        return 0
    fi
    for ex in react vue; do
        dir=$REPO/examples/$ex
        [ -f "$dir/package.json" ] || continue
        if [ ! -f "$dir/node_modules/.package-lock.json" ] &&
           ! (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund) >> "$log" 2>&1; then
            say "npm ci failed in examples/$ex (log: $log); serving it without /$ex/"
            continue
        fi
        (cd "$dir" && npm run -s build) >> "$log" 2>&1 ||
            say "building examples/$ex failed (log: $log); serving it without /$ex/"
    done
}

# The web root: the demo page, the client package it imports at
# /ssehub-client/ (clients/js), and the built examples at /react/ and /vue/.
# Symlinks into the repository, or a copy when nginx's workers (www-data,
# when run as root) cannot read it.
assemble_web_root() {
    local user=$1 copy=0 f ex
    if [ -n "$user" ] && ! runuser -u "$user" -- test -r "$REPO/clients/js/index.js"; then
        say "$user cannot read $REPO; serving a copy from $WEB_ROOT"
        copy=1
    fi
    rm -rf "$WEB_ROOT"
    install -d -m 0755 "$WEB_ROOT"
    place() { # source name
        if [ "$copy" -eq 1 ]; then cp -rL "$1" "$WEB_ROOT/$2"; else ln -s "$1" "$WEB_ROOT/$2"; fi
    }
    for f in "$WEB"/*; do place "$f" "$(basename "$f")"; done
    place "$REPO/clients/js" ssehub-client
    for ex in react vue; do
        if [ -f "$REPO/examples/$ex/dist/index.html" ]; then place "$REPO/examples/$ex/dist" "$ex"; fi
    done
    if [ "$copy" -eq 1 ]; then chmod -R a+rX "$WEB_ROOT"; fi
}

# A self-signed certificate for localhost and the listen address, made once.
make_certificate() {
    [ -s "$TLS/cert.pem" ] && [ -s "$TLS/key.pem" ] && return 0
    command -v openssl >/dev/null 2>&1 || die "openssl not found (or set SSEHUB_DEMO_TLS_PORT=off)"
    local san="DNS:localhost,IP:127.0.0.1,IP:::1"
    case $HOST in
        127.0.0.1|::1|0.0.0.0|::|localhost) ;;
        *) san="$san,IP:$HOST" ;;
    esac
    say "making a self-signed certificate ($TLS/cert.pem)"
    install -d -m 0700 "$TLS"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=$san" \
        -keyout "$TLS/key.pem" -out "$TLS/cert.pem" 2>> "$STATE/openssl.log" ||
        die "openssl could not make a certificate (log: $STATE/openssl.log)"
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

# Renders examples/nginx/$1 into $NGX/$1: the listen address, the web root
# and the socket replaced (each file's header lists the lines), and for the
# TLS file the certificate. Checks that each replacement happened, so that
# an edit to an example cannot silently break the demo.
render_example() { # file listen (ADDR:PORT)
    local file=$1 listen=$2 src=$REPO/examples/nginx/$1 out=$NGX/$1 tls=""
    local esc_listen esc_web esc_sock esc_tls
    esc_listen=$(sed_escape "$listen")
    esc_web=$(sed_escape "$WEB_ROOT")
    esc_sock=$(sed_escape "$SOCK")
    esc_tls=$(sed_escape "$TLS")
    [ "$file" = ssehub-tls.conf ] && tls=" ssl http2"
    sed -e "s|^\([[:space:]]*\)listen 80;|\1listen $esc_listen;|" \
        -e '/^[[:space:]]*listen \[::\]:80;/d' \
        -e "s|^\([[:space:]]*\)listen 443 ssl http2;|\1listen $esc_listen ssl http2;|" \
        -e '/^[[:space:]]*listen \[::\]:443 ssl http2;/d' \
        -e "s|^\([[:space:]]*\)ssl_certificate /.*;|\1ssl_certificate $esc_tls/cert.pem;|" \
        -e "s|^\([[:space:]]*\)ssl_certificate_key /.*;|\1ssl_certificate_key $esc_tls/key.pem;|" \
        -e "s|^\([[:space:]]*\)root /var/www/ssehub;|\1root $esc_web;|" \
        -e "s|unix:/run/ssehub/ssehub\.sock;|unix:$esc_sock;|" \
        "$src" > "$out"
    local active
    active=$(grep -v '^[[:space:]]*#' "$out")
    if ! grep -qF "listen $listen$tls;" <<< "$active" ||
       ! grep -qF "root $WEB_ROOT;" <<< "$active" ||
       { [ -z "$tls" ] && ! grep -qF "server unix:$SOCK;" <<< "$active"; } ||
       grep -qF '/run/ssehub/' <<< "$active" ||
       { [ -n "$tls" ] && ! grep -qF "ssl_certificate_key $TLS/key.pem;" <<< "$active"; }; then
        die "examples/nginx/$file no longer has the lines demo.sh rewrites (see its header)"
    fi
}

listen_of() { # port: the listen address for nginx
    case $HOST in *:*) echo "[$HOST]:$1" ;; *) echo "$HOST:$1" ;; esac
}

write_nginx_conf() {
    local port=$1 user=$2 tls_port=$3 tls_include=""
    render_example ssehub.conf "$(listen_of "$port")"
    if [ "$tls_port" != off ]; then
        render_example ssehub-tls.conf "$(listen_of "$tls_port")"
        tls_include="include ssehub-tls.conf;"
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
    $tls_include
    include conf.d/*.conf;
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
    local base=$1 i out ca=()
    case $base in https:*) ca=(--cacert "$TLS/cert.pem") ;; esac
    for ((i = 0; i < 30; i++)); do
        out=$(curl -sS --max-time 2 "${ca[@]}" "$base/api/sse/health" 2>/dev/null || true)
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
    "alice": {"user_id": "alice", "topics": ["demo/*"]},
    "bob": {"user_id": "bob", "topics": ["demo/*"]},
    "admin": {"user_id": "admin", "role": "admin"},
}
for name, c in claims.items():
    token = jwt.encode(dict(c, iat=now, exp=now + ttl), key, algorithm="HS256")
    with open(os.path.join(state, name + ".jwt"), "w") as f:
        f.write(token + "\n")
EOF
    ) || die "minting tokens failed (is python3-jwt installed?)"
}

# The React and Vue examples and the HTTPS server, when there are.
examples_notes() { # base token
    local ex tls
    for ex in react vue; do
        [ -e "$WEB_ROOT/$ex/index.html" ] &&
            printf '\nThe %s example (useSSE from ssehub-client/%s) as alice:\n  %s/%s/#token=%s\n' \
                "$ex" "$ex" "$1" "$ex" "$2"
    done
    if [ -s "$STATE/tls-url" ]; then
        tls=$(cat "$STATE/tls-url")
        printf '\nOver HTTPS + HTTP/2 (self-signed certificate %s; no 6-streams limit):\n  %s#token=%s\n' \
            "$TLS/cert.pem" "$tls" "$2"
    fi
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

As bob on topic demo/news (alice and bob may subscribe to demo/*):
  $base/#token=$bob&topics=demo/news
$(examples_notes "$base" "$alice")

Watch a stream from the shell:
  curl -sN '$base/sse/stream?token=$alice'

Broadcast to everyone:
  curl -sS -H 'Authorization: Bearer $admin' -H 'Content-Type: application/json' \\
       -d '{"event":"notification","data":{"title":"Hello, everyone"}}' $base/api/sse/broadcast

Send to every stream of user alice:
  curl -sS -H 'Authorization: Bearer $admin' -H 'Content-Type: application/json' \\
       -d '{"user_id":"alice","event":"notification","data":{"title":"Hello, Alice"}}' $base/api/sse/send-to-user

Publish to every stream on topic demo/news:
  curl -sS -H 'Authorization: Bearer $admin' -H 'Content-Type: application/json' \\
       -d '{"topic":"demo/news","event":"notification","data":{"title":"Hello, topic"}}' $base/api/sse/publish

Stats and metrics:
  curl -sS -H 'Authorization: Bearer $admin' '$base/api/sse/stats?topics=1'
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

base_url() { # scheme port: the URL to print and to check with (a wildcard
              # address is reachable as loopback)
    case $HOST in
        0.0.0.0) echo "$1://127.0.0.1:$2" ;;
        ::|'[::]') echo "$1://[::1]:$2" ;;
        *:*) echo "$1://[$HOST]:$2" ;;
        *) echo "$1://$HOST:$2" ;;
    esac
}

do_start() {
    local nginx_user="" nginx_group="" port tls_port base
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
    port=$(pick_port "${SSEHUB_DEMO_PORT:-}" 8080 8099 SSEHUB_DEMO_PORT)
    tls_port=${SSEHUB_DEMO_TLS_PORT:-}
    if [ "$tls_port" != off ]; then
        tls_port=$(pick_port "$tls_port" 8443 8462 SSEHUB_DEMO_TLS_PORT)
        make_certificate
    fi
    build_examples
    assemble_web_root "$nginx_user"
    base=$(base_url http "$port")

    start_ssehub "$nginx_group"
    write_nginx_conf "$port" "$nginx_user" "$tls_port"
    start_nginx
    wait_healthy "$base"
    echo "$base/" > "$STATE/url"
    rm -f "$STATE/tls-url"
    if [ "$tls_port" != off ]; then
        wait_healthy "$(base_url https "$tls_port")"
        echo "$(base_url https "$tls_port")/" > "$STATE/tls-url"
    fi
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
