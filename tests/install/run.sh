#!/usr/bin/env bash
# Install tests: `make install DESTDIR=...` of the configured tree puts every
# file where the man page says; the SysV init script (examples/init.d/ssehub)
# starts, reports, reloads and stops the installed daemon for real; the
# systemd units pass `systemd-analyze verify`; `make uninstall` removes it all.
# Prints TAP ("ok N - ...") and exits non-zero when a test failed.
#
#   bash tests/install/run.sh        (as root: the daemon runs as nobody)
#
# Needs a configured tree (./configure), start-stop-daemon, python3; uses
# tests/integration/fcgi_client.py to ask the daemon for /api/sse/health.

# Test bodies are functions run through check() and sh -c '...' scripts that
# get their values as $1...; installed paths and example names hold no blanks.
# shellcheck disable=SC2016,SC2317,SC2046
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
art=$repo/tests/artifacts
PY=/usr/bin/python3
mkdir -p "$art"
log=$art/install.log
: >"$log"

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag() { sed 's/^/#   /'; }
check() { # name command...: one TAP line from the command's exit status
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name"; printf '%s\n' "$out" | tail -15 | diag; fi
	printf '== %s\n%s\n' "$name" "$out" >>"$log"
}
finish() { echo "1..$n"; echo "# $((n - failed)) passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
bail() { not_ok "$*"; finish; }

[ "$(id -u)" -eq 0 ] || bail "must run as root (the init script changes user)"
[ -f "$repo/Makefile" ] || bail "the tree is not configured (autoreconf -fi && ./configure)"
command -v start-stop-daemon >/dev/null || bail "start-stop-daemon not found (dpkg)"
id nobody >/dev/null 2>&1 || bail "no user nobody"
nogroup=$(id -gn nobody)

work=$(mktemp -d /tmp/ssehub-install.XXXXXX)
chmod 0755 "$work"   # the daemon runs as nobody: it must reach the binary
cleanup() {
	if [ -f "$work/defaults" ]; then
		SSEHUB_DEFAULTS=$work/defaults sh "$init" stop >/dev/null 2>&1
	fi
	cp "$work/ssehub.log" "$art/install-ssehub.log" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
dest=$work/dest

# ---- make install --------------------------------------------------------------

printf 'print-dirs:\n\t@echo "$(sbindir)|$(sysconfdir)|$(mandir)|$(docdir)|$(prefix)"\n' >"$work/dirs.mk"
IFS='|' read -r sbindir sysconfdir mandir docdir prefix < <(make -s -C "$repo" -f Makefile -f "$work/dirs.mk" print-dirs)
[ -n "$docdir" ] || bail "cannot read the installation directories from the Makefile"

check "make install DESTDIR=... succeeds" make -C "$repo" -s install DESTDIR="$dest"
daemon=$dest$sbindir/ssehub
check "the daemon is installed as \$sbindir/ssehub ($sbindir) and runs" \
	sh -c '"$1" --version' _ "$daemon"
check "the sample configuration is \$sysconfdir/ssehub.conf ($sysconfdir), as shipped" \
	cmp "$repo/etc/ssehub.conf" "$dest$sysconfdir/ssehub.conf"
man=$dest$mandir/man8/ssehub.8
check "the man page is \$mandir/man8/ssehub.8 and renders without warnings" sh -c '
	test -f "$1" || { echo "missing: $1"; exit 1; }
	out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$1" 2>&1 >/dev/null)
	[ -z "$out" ] || { echo "$out"; exit 1; }' _ "$man"

# Every path under the prefix that the installed man page names (FILES,
# EXAMPLES) must exist, and no @placeholder@ may be left.
man_paths() {
	sed -e 's/\\-/-/g' -e 's/\\e//g' "$man" | grep -o "$prefix/[^ \"'),]*" | sed 's/[.]$//' | sort -u
}
check "every installed path the man page names exists (and it has no @placeholders@)" sh -c '
	man=$1 dest=$2; shift 2
	rc=0
	if grep -n "@[a-z_]*@" "$man"; then echo "placeholders left in $man"; rc=1; fi
	[ $# -gt 0 ] || { echo "the man page names no path under the prefix"; rc=1; }
	for p in "$@"; do
		if [ -e "$dest$p" ]; then echo "present: $p"; else echo "MISSING: $p"; rc=1; fi
	done
	exit $rc' _ "$man" "$dest" $(man_paths)

# Every example of the source tree (tracked or new, not ignored), byte for byte.
list_examples() {
	if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
		git -C "$repo" ls-files -co --exclude-standard -- examples
	else
		(cd "$repo" && find examples -type f)
	fi
}
check "every file of examples/ is installed in \$docdir/examples/ ($docdir)" sh -c '
	repo=$1 dir=$2; shift 2
	rc=0
	[ $# -gt 0 ] || { echo "no examples found"; exit 1; }
	for f in "$@"; do
		if cmp -s "$repo/$f" "$dir/$f"; then echo "installed: $f"; else echo "MISSING or different: $dir/$f"; rc=1; fi
	done
	exit $rc' _ "$repo" "$dest$docdir" $(list_examples)

# ---- the init script against the installed daemon ------------------------------

init=$dest$docdir/examples/init.d/ssehub
[ -f "$init" ] || init=$repo/examples/init.d/ssehub   # still test it when not installed
run=$work/run
sock=$run/ssehub.sock
pidfile=$run/ssehub.pid
head -c 32 /dev/urandom | base64 >"$work/jwt.secret"
chown "root:$nogroup" "$work/jwt.secret"
chmod 0640 "$work/jwt.secret"
cat >"$work/defaults" <<EOF
SSEHUB_DAEMON=$daemon
SSEHUB_USER=nobody
SSEHUB_GROUP=$nogroup
SSEHUB_RUNDIR=$run
SSEHUB_SECRET_FILE=$work/jwt.secret
SSEHUB_LOGFILE=$work/ssehub.log
SSEHUB_OPTS="--shutdown-spread 0 --acceptors 2 --loops 1 --log-level info"
EOF
initd() { SSEHUB_DEFAULTS=$work/defaults sh "$init" "$@"; }

expect_rc() { # want command...: passes when the command exits with `want`
	local want=$1 rc
	shift
	"$@"
	rc=$?
	[ "$rc" -eq "$want" ] || { echo "exit status $rc, expected $want"; return 1; }
}

pid_of_file() { tr -dc '0-9' <"$pidfile" 2>/dev/null; }

health() {
	PYTHONPATH=$repo/tests/integration "$PY" - "$sock" <<'EOF'
import sys
import fcgi_client
status, headers, body = fcgi_client.request("unix:" + sys.argv[1], "GET", "/api/sse/health").http()
print(status, body)
sys.exit(0 if status == 200 and b'"status":"ok"' in body else 1)
EOF
}

check "init script: status before start exits 3 (not running)" expect_rc 3 initd status

start_checks() {
	initd start || { echo "start failed"; return 1; }
	local pid
	pid=$(pid_of_file)
	[ -n "$pid" ] || { echo "no pid in $pidfile"; return 1; }
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = ssehub ] || { echo "pid $pid is not ssehub"; return 1; }
	[ "$(stat -c %U "/proc/$pid")" = nobody ] || { echo "pid $pid runs as $(stat -c %U "/proc/$pid")"; return 1; }
	[ -S "$sock" ] || { echo "no socket $sock"; return 1; }
	[ "$(stat -c %a "$sock")" = 660 ] || { echo "socket mode $(stat -c %a "$sock")"; return 1; }
	health
}
check "init script: start exits 0; pid file names a live ssehub owned by nobody; socket 0660 answers health" start_checks
first_pid=$(pid_of_file)

start_again_checks() {
	local out
	out=$(initd start) || return 1
	echo "$out"
	case $out in *"already running"*) ;; *) return 1 ;; esac
	[ "$(pid_of_file)" = "$first_pid" ]
}
check "init script: start again exits 0 and keeps the same process" start_again_checks
check "init script: status exits 0 while running" expect_rc 0 initd status

reload_checks() {
	local before
	before=$(grep -c 'event=keys_reloaded' "$work/ssehub.log")
	initd reload || { echo "reload failed"; return 1; }
	for _ in $(seq 50); do
		[ "$(grep -c 'event=keys_reloaded' "$work/ssehub.log")" -gt "$before" ] && break
		sleep 0.1
	done
	grep 'event=keys_reloaded' "$work/ssehub.log" || { echo "no event=keys_reloaded line in the log"; return 1; }
	[ "$(pid_of_file)" = "$first_pid" ] || { echo "the process changed"; return 1; }
	kill -0 "$first_pid" || { echo "ssehub died on SIGHUP"; return 1; }
}
check "init script: reload sends SIGHUP (log line event=keys_reloaded), same process" reload_checks

stop_checks() {
	initd stop || { echo "stop failed"; return 1; }
	! kill -0 "$first_pid" 2>/dev/null || { echo "pid $first_pid still alive"; return 1; }
	[ ! -e "$pidfile" ] || { echo "$pidfile left"; return 1; }
	[ ! -e "$sock" ] || { echo "$sock left"; return 1; }
	grep 'event=stop' "$work/ssehub.log" || { echo "no event=stop (not a clean SIGTERM stop?)"; return 1; }
}
check "init script: stop ends the daemon cleanly, removes socket and pid file" stop_checks
check "init script: status exits 3 after stop" expect_rc 3 initd status
check "init script: reload exits 7 when not running" expect_rc 7 initd reload
check "init script: stop exits 0 when not running" expect_rc 0 initd stop

stale_checks() {
	# A pid file naming a live process that is not ssehub (this shell's
	# sleep): status says "dead, pid file left", stop must not touch it.
	sleep 30 &
	local other=$!
	install -d "$run"
	echo "$other" >"$pidfile"
	expect_rc 1 initd status || { kill "$other"; return 1; }
	initd stop
	kill -0 "$other" 2>/dev/null || { echo "stop killed an unrelated process"; return 1; }
	kill "$other"; wait "$other" 2>/dev/null
	[ ! -e "$pidfile" ] || { echo "stale pid file left"; return 1; }
	return 0
}
check "init script: a stale pid file gives status 1, and stop leaves the process it names alone" stale_checks

fail_checks() {
	local t0 t1
	cp "$work/defaults" "$work/defaults.ok"
	echo 'SSEHUB_OPTS="--no-such-option"' >>"$work/defaults"
	t0=$(date +%s)
	expect_rc 1 initd start || return 1
	t1=$(date +%s)
	[ $((t1 - t0)) -le 3 ] || { echo "took $((t1 - t0)) s to notice"; return 1; }
	cp "$work/defaults.ok" "$work/defaults"
	echo "SSEHUB_SECRET_FILE=$work/missing.secret" >>"$work/defaults"
	expect_rc 6 initd start || return 1
	cp "$work/defaults.ok" "$work/defaults"
}
check "init script: a daemon that cannot start fails start at once (1); a missing key file gives 6" fail_checks

restart_checks() {
	initd start || return 1
	local a b
	a=$(pid_of_file)
	initd restart || return 1
	b=$(pid_of_file)
	if [ -z "$b" ] || [ "$a" = "$b" ]; then echo "restart kept pid $a"; return 1; fi
	health || return 1
	initd stop
}
check "init script: restart replaces the process and it serves again" restart_checks

# ---- systemd units ---------------------------------------------------------------

units=$(cd "$repo" && ls examples/systemd/*.service 2>/dev/null)
if ! command -v systemd-analyze >/dev/null; then
	skip "systemd-analyze verify of the units" "systemd-analyze not installed"
elif [ -z "$units" ]; then
	not_ok "systemd units: none in examples/systemd/"
else
	for u in $units; do
		name=$(basename "$u")
		mkdir -p "$work/units"
		# The units name the binary at its default place; verify checks that it
		# is executable, so point it at the installed one. MANPATH lets
		# Documentation=man:ssehub(8) resolve to the installed page.
		sed -e "s|/usr/local/sbin/ssehub|$daemon|g" "$repo/$u" >"$work/units/$name"
		if ! command -v spawn-fcgi >/dev/null && grep -q spawn-fcgi "$work/units/$name"; then
			skip "systemd-analyze verify $name" "spawn-fcgi not installed"
			continue
		fi
		check "systemd-analyze verify $name" sh -c '
			out=$(MANPATH="$1:" systemd-analyze verify "$2" 2>&1); rc=$?
			echo "$out"
			[ $rc -eq 0 ] && [ -z "$out" ]' _ "$dest$mandir" "$work/units/$name"
	done
fi

# ---- make uninstall ----------------------------------------------------------------

check "make uninstall DESTDIR=... removes every installed file" sh -c '
	make -C "$1" -s uninstall DESTDIR="$2" || exit 1
	left=$(find "$2" -type f)
	[ -z "$left" ] || { echo "left: $left"; exit 1; }' _ "$repo" "$dest"

finish
