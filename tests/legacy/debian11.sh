#!/usr/bin/env bash
# Debian 11 (bullseye) as a legacy host: a chroot made with debootstrap from
# Debian's archive, kept in a cache folder outside the tree and reused; the
# tree is copied in, built with Debian 11's gcc 10 and clang 11 (warnings are
# errors) and tested there: unit tests, the example front-server configs
# checked by Debian 11's nginx and lighttpd, then the integration suite
# against them. Prints TAP; "# SKIP reason" when the archive cannot be reached
# (or the script cannot run here) and no chroot is cached.
#
#   bash tests/legacy/debian11.sh [prepare|test|all]    (as root; default: all)
#
#   prepare  create the chroot, or install what a changed package list adds
#            (the only step that needs the network; nothing when up to date)
#   test     copy the tree in, build, test (prepares first if needed)
#
# Environment:
#   SSEHUB_CHROOT          the chroot (default /var/cache/ssehub-test/bullseye)
#   SSEHUB_DEBIAN_MIRROR   default http://deb.debian.org/debian
#   SSEHUB_ARTIFACTS       where logs and results go (default tests/artifacts):
#                          debian11-prepare.log, debian11-test.log,
#                          debian11-unit-NAME.log, debian11-clang-unit-NAME.log
#                          (each unit test program's TAP),
#                          debian11-integration.xml (JUnit), integration-debian11.log,
#                          debian11-versions.txt
#   SSEHUB_DEBIAN11_PYTEST extra pytest arguments (e.g. "-k stream")
#
# Mounts (/proc, /dev/pts, /dev/shm inside the chroot) live only while a step
# runs and are always taken down on exit; a flock on "$SSEHUB_CHROOT.lock"
# keeps two runs from sharing the chroot at once.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
chroot_dir=${SSEHUB_CHROOT:-/var/cache/ssehub-test/bullseye}
mirror=${SSEHUB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
art=${SSEHUB_ARTIFACTS:-$root/tests/artifacts}
suite=bullseye
mkdir -p "$art"

# What the chroot holds: the build dependencies as Debian 11 names them,
# clang for the second compiler, the three front servers, Redis for the backplane
# tests, and the test runners.
# (No node: the EventSource client test needs node >= 20, Debian 11 has 12;
# that test checks the client, not the host, and runs on the host.)
packages="build-essential autoconf automake libtool pkg-config libfcgi-dev libjson-c-dev libjwt-dev
uuid-dev libssl-dev libhiredis-dev clang nginx-core lighttpd apache2 spawn-fcgi libfcgi-bin redis-server redis-sentinel
python3-pytest python3-jwt python3-cryptography valgrind procps curl ca-certificates"
packages=$(echo $packages) # one line: it is also the cache marker's content
marker=.ssehub-packages

apt_opts=(-o Acquire::Retries=3 -o Acquire::http::Timeout=30 -o Dpkg::Use-Pty=0 -q)
mounted=()

log() { echo "[$(date +%T)] $*" >&2; }

mount_into() { # dir: /proc, /dev/pts, /dev/shm for one step
	local c=$1
	mount -t proc proc "$c/proc" && mounted+=("$c/proc") || return 1
	mkdir -p "$c/dev/pts" "$c/dev/shm"
	mount --bind /dev/pts "$c/dev/pts" && mounted+=("$c/dev/pts") || return 1
	mount -t tmpfs -o size=256m,mode=1777 shm "$c/dev/shm" && mounted+=("$c/dev/shm") || return 1
}

# Stops what a step left running inside the chroot (a front server of a
# test that timed out): the processes whose root is this chroot, by pid.
kill_inside() {
	local c=$1 p r pids=()
	c=$(readlink -f "$c")
	for p in /proc/[0-9]*; do
		r=$(readlink "$p/root" 2>/dev/null) || continue
		[ "$r" = "$c" ] && pids+=("${p#/proc/}")
	done
	[ ${#pids[@]} -eq 0 ] && return 0
	log "stopping ${#pids[@]} process(es) left in the chroot: ${pids[*]}"
	kill -TERM "${pids[@]}" 2>/dev/null
	sleep 1
	kill -KILL "${pids[@]}" 2>/dev/null
	return 0
}

unmount_all() {
	local i m
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		m=${mounted[$i]}
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
	done
	mounted=()
}

cleanup() {
	local c
	for c in "$chroot_dir" "$chroot_dir.new"; do
		[ -d "$c" ] && kill_inside "$c"
	done
	unmount_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1 when anything is mounted at or below dir (never rm -rf one of those).
has_mounts() {
	local d
	d=$(readlink -f "$1")
	awk -v d="$d" '$2 == d || index($2, d "/") == 1 { f = 1 } END { exit !f }' /proc/mounts
}

reachable() {
	timeout 40 curl -fsS -o /dev/null --max-time 30 "$mirror/dists/$suite/Release" 2>/dev/null
}

in_chroot() { # dir command... : a clean environment, C.UTF-8; T=seconds (600)
	local c=$1
	shift
	timeout "${T:-600}" chroot "$c" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

# Writes the chroot's apt sources (the last point release and its updates;
# not the security suite: this archive's mirror of it has lists that name
# files it no longer holds, 404), resolv.conf and a policy-rc.d that keeps
# the packages' services (nginx, lighttpd) from starting inside it.
configure_chroot() {
	local c=$1
	cat >"$c/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
EOF
	cp -L /etc/resolv.conf "$c/etc/resolv.conf" 2>/dev/null || true
	printf '#!/bin/sh\nexit 101\n' >"$c/usr/sbin/policy-rc.d"
	chmod 755 "$c/usr/sbin/policy-rc.d"
}

apt_install() { # dir
	local c=$1
	configure_chroot "$c"
	timeout 600 chroot "$c" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
		apt-get "${apt_opts[@]}" update || return 1
	# shellcheck disable=SC2086
	timeout 1800 chroot "$c" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
		apt-get "${apt_opts[@]}" -y --no-install-recommends install $packages || return 1
	in_chroot "$c" apt-get clean
	echo "$packages" >"$c/$marker"
}

# 0: ready; 1: failed; 2: skipped (reason in $skip_reason).
skip_reason=""
prepare() {
	local t0=$SECONDS new="$chroot_dir.new"
	if [ "$(id -u)" != 0 ]; then skip_reason="needs root (debootstrap, chroot, mount)"; return 2; fi
	if [ -f "$chroot_dir/$marker" ] && [ "$(cat "$chroot_dir/$marker")" = "$packages" ]; then
		log "chroot $chroot_dir is up to date"
		return 0
	fi
	if ! reachable; then
		skip_reason="Debian's archive ($mirror) cannot be reached and no chroot is cached at $chroot_dir"
		return 2
	fi
	if [ -f "$chroot_dir/$marker" ]; then
		log "chroot $chroot_dir: package list changed, installing what is missing"
		mount_into "$chroot_dir" || { unmount_all; return 1; }
		apt_install "$chroot_dir"
		local rc=$?
		unmount_all
		[ $rc -eq 0 ] || { reachable || { skip_reason="Debian's archive went away while installing"; return 2; }; return 1; }
		return 0
	fi
	if ! command -v debootstrap >/dev/null; then
		skip_reason="debootstrap is not installed (scripts/deps.sh legacy installs it)"
		return 2
	fi
	# A half-made chroot from an interrupted run is dropped, never a mounted one.
	if [ -e "$new" ]; then
		kill_inside "$new"
		if has_mounts "$new"; then log "$new still has mounts; not removing it"; return 1; fi
		rm -rf "$new"
	fi
	if [ -e "$chroot_dir" ] && ! has_mounts "$chroot_dir"; then rm -rf "$chroot_dir"; fi
	mkdir -p "$(dirname "$chroot_dir")"
	log "debootstrap $suite into $new from $mirror"
	if ! timeout 1500 debootstrap --variant=minbase "$suite" "$new" "$mirror"; then
		reachable || { skip_reason="Debian's archive went away during debootstrap"; return 2; }
		return 1
	fi
	mount_into "$new" || { unmount_all; return 1; }
	apt_install "$new"
	local rc=$?
	kill_inside "$new"
	unmount_all
	if [ $rc -ne 0 ]; then
		reachable || { skip_reason="Debian's archive went away while installing"; return 2; }
		return 1
	fi
	mv "$new" "$chroot_dir" || return 1
	log "chroot created in $((SECONDS - t0)) s"
	return 0
}

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
tail_log() { tail -n "${2:-25}" "$1" | sed 's/^/#   /'; }
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

# Old nginx (< 1.19.5) has no -e (the startup error log) that the test
# harness passes: a wrapper first in PATH drops it; the configuration's own
# error_log still applies.
nginx_wrapper() {
	local c=$1 v
	v=$(in_chroot "$c" dpkg-query -W -f '${Version}' nginx-core 2>/dev/null)
	rm -f "$c/usr/local/bin/nginx"
	if dpkg --compare-versions "${v:-0}" lt 1.19.5; then
		cat >"$c/usr/local/bin/nginx" <<'EOF'
#!/bin/sh
# tests/legacy/debian11.sh: nginx < 1.19.5 has no -e; drop it.
n=$#
while [ "$n" -gt 0 ]; do
	a=$1; shift; n=$((n - 1))
	if [ "$a" = -e ]; then shift; n=$((n - 1)); continue; fi
	set -- "$@" "$a"
done
exec /usr/sbin/nginx "$@"
EOF
		chmod 755 "$c/usr/local/bin/nginx"
	fi
}

run_tests() {
	local c=$chroot_dir t0 tests_log=$art/debian11-test.log
	: >"$tests_log"
	in_chroot "$c" dpkg-query -W -f '${Package} ${Version}\n' linux-libc-dev libc6 gcc gcc-10 clang clang-11 \
		libjson-c-dev libjwt-dev libfcgi-dev uuid-dev libssl-dev libhiredis-dev autoconf automake nginx-core \
		lighttpd apache2 spawn-fcgi redis-server valgrind python3 python3-pytest python3-jwt python3-cryptography \
		>"$art/debian11-versions.txt" 2>/dev/null
	echo "# versions: $(sed 's/ /=/' "$art/debian11-versions.txt" | tr '\n' ' ')"

	# the tree as git sees it (tracked and new files, no build output)
	rm -rf "$c/build"
	mkdir -p "$c/build/ssehub" "$c/build/clang" "$c/build/out"
	(cd "$root" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar xf - -C "$c/build/ssehub"
	cp -a "$c/build/ssehub/." "$c/build/clang/"
	mount_into "$c" || { not_ok "mount /proc, /dev/pts, /dev/shm in the chroot"; return; }
	nginx_wrapper "$c"

	t0=$SECONDS
	if T=900 in_chroot "$c" sh -c 'cd /build/ssehub && autoreconf -fi && ./configure -q --enable-werror &&
	    make -j2' >>"$tests_log" 2>&1; then
		ok "gcc $(in_chroot "$c" gcc -dumpfullversion) build, warnings are errors ($((SECONDS - t0)) s;" \
			"JWT_FIRST_LIBS: $(sed -n 's/^JWT_FIRST_LIBS = //p' "$c/build/ssehub/Makefile"))"
		T=600 in_chroot "$c" sh -c 'cd /build/ssehub && make check' >>"$tests_log" 2>&1
		copy_unit_logs "$c/build/ssehub" debian11-unit
	else
		not_ok "gcc build, warnings are errors"
		grep -E 'error|warning' "$tests_log" | head -40 | sed 's/^/#   /'
		tail_log "$tests_log" 15
	fi

	t0=$SECONDS
	if T=900 in_chroot "$c" sh -c 'cd /build/clang && autoreconf -fi &&
	    ./configure -q --enable-werror CC=clang CFLAGS="-std=gnu99 -O2 -g" && make -j2' \
		>"$art/debian11-clang.log" 2>&1; then
		ok "clang $(in_chroot "$c" clang -dumpversion) -std=gnu99 build, warnings are errors ($((SECONDS - t0)) s)"
		T=600 in_chroot "$c" sh -c 'cd /build/clang && make check' >>"$art/debian11-clang.log" 2>&1
		copy_unit_logs "$c/build/clang" debian11-clang-unit
	else
		not_ok "clang -std=gnu99 build, warnings are errors"
		grep -E 'error|warning' "$art/debian11-clang.log" | head -40 | sed 's/^/#   /'
	fi

	# The example configurations, checked by the old servers themselves
	# (files next to the packages' own, so their relative includes resolve).
	printf 'events {}\nhttp { include /etc/nginx/mime.types; include /build/ssehub/examples/nginx/ssehub.conf; }\n' \
		>"$c/etc/nginx/ssehub-test.conf"
	if in_chroot "$c" /usr/sbin/nginx -t -c /etc/nginx/ssehub-test.conf >"$art/debian11-nginx-t.log" 2>&1; then
		ok "examples/nginx/ssehub.conf passes nginx -t ($(in_chroot "$c" dpkg-query -W -f '${Version}' nginx-core))"
	else
		not_ok "examples/nginx/ssehub.conf passes nginx -t"
		tail_log "$art/debian11-nginx-t.log" 6
	fi
	printf 'include "/etc/lighttpd/lighttpd.conf"\ninclude "/build/ssehub/examples/lighttpd/ssehub.conf"\n' \
		>"$c/etc/lighttpd/ssehub-test.conf"
	# its bin-path must name an executable
	[ -f "$c/build/ssehub/src/ssehub" ] && install -m 755 "$c/build/ssehub/src/ssehub" "$c/usr/local/sbin/ssehub"
	if in_chroot "$c" /usr/sbin/lighttpd -tt -f /etc/lighttpd/ssehub-test.conf >"$art/debian11-lighttpd-tt.log" 2>&1 &&
		! grep -q . "$art/debian11-lighttpd-tt.log"; then
		ok "examples/lighttpd/ssehub.conf passes lighttpd -tt ($(in_chroot "$c" dpkg-query -W -f '${Version}' lighttpd))"
	else
		not_ok "examples/lighttpd/ssehub.conf passes lighttpd -tt, silently"
		tail_log "$art/debian11-lighttpd-tt.log" 6
	fi

	if [ -f "$c/build/ssehub/src/ssehub" ]; then
		local -a extra=()
		read -r -a extra <<<"${SSEHUB_DEBIAN11_PYTEST:-}"
		t0=$SECONDS
		T=1500 in_chroot "$c" sh -c 'cd /build/ssehub && SSEHUB_BIN=/build/ssehub/src/ssehub \
		    python3 -m pytest -q -p no:cacheprovider -rs --junitxml=/build/out/integration.xml \
		    --deselect tests/integration/test_eventsource_node.py "$@" tests/integration' sh "${extra[@]}" \
			>"$art/integration-debian11.log" 2>&1
		log "integration suite: $((SECONDS - t0)) s"
		cp "$c/build/out/integration.xml" "$art/debian11-integration.xml" 2>/dev/null
		grep -E '^(FAILED|ERROR) |[0-9]+ (passed|failed)' "$art/integration-debian11.log" | tail -25 | sed 's/^/# /'
	fi
	kill_inside "$c"
	unmount_all
}

mode=${1:-all}
case "$mode" in
prepare | test | all) ;;
*) echo "usage: $0 [prepare|test|all]" >&2; exit 2 ;;
esac

[ "$mode" = prepare ] || rm -f "$art"/debian11-unit-*.log "$art"/debian11-clang-unit-*.log "$art"/debian11-integration.xml
lock="$chroot_dir.lock"
mkdir -p "$(dirname "$chroot_dir")" 2>/dev/null
exec 9>"$lock" || { echo "1..1"; echo "ok 1 - Debian 11 chroot # SKIP cannot create $lock"; exit 0; }
if ! flock -w 3600 9; then
	echo "1..1"; echo "not ok 1 - Debian 11 chroot: $lock stayed locked for an hour"; exit 1
fi

t0=$SECONDS
prepare >>"$art/debian11-prepare.log" 2>&1
rc=$?
if [ "$mode" = prepare ]; then
	case $rc in
	0) echo "chroot ready ($((SECONDS - t0)) s)" ;;
	2) echo "skipped: $skip_reason" ;;
	*) echo "chroot creation failed (see $art/debian11-prepare.log)" ;;
	esac
	[ $rc -eq 1 ] && exit 1
	exit 0
fi
case $rc in
0) ok "Debian 11 chroot ready at $chroot_dir ($((SECONDS - t0)) s)" ;;
2) echo "1..1"; echo "ok 1 - Debian 11 chroot # SKIP $skip_reason"; exit 0 ;;
*) not_ok "Debian 11 chroot at $chroot_dir (see $art/debian11-prepare.log)"; tail_log "$art/debian11-prepare.log"
   echo "1..$n"; exit 1 ;;
esac
run_tests
echo "1..$n"
[ "$failed" -eq 0 ]
