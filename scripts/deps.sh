#!/usr/bin/env bash
# Installs the Debian packages ssehub needs to build, run its demo and run its
# tests -- only those that are missing, so a second run costs nothing.
# Usage: scripts/deps.sh [build|demo|legacy|test|bench]
#   (default: test, the superset of build, demo and legacy; bench: what
#   bench/compare.sh runs, besides ssehub's build)
set -euo pipefail

build_pkgs="build-essential autoconf automake libtool pkg-config libfcgi-dev libjson-c-dev libjwt-dev uuid-dev libssl-dev libhiredis-dev"
demo_pkgs="$build_pkgs nginx python3-jwt curl openssl"
# legacy: the 32-bit build (gcc -m32 on Debian's i386 multiarch libraries;
# libc6-dbg:i386 lets valgrind's x86 tool redirect ld.so's functions), clang
# for the gnu99 build, and debootstrap for the Debian 11 chroot
# (tests/legacy/).
legacy_pkgs="clang debootstrap gcc-multilib libc6-dev:i386 libc6-dbg:i386 libjson-c-dev:i386 libjwt-dev:i386
	uuid-dev:i386 libssl-dev:i386 libhiredis-dev:i386"
test_pkgs="$demo_pkgs lighttpd apache2 spawn-fcgi redis-server redis-sentinel libfcgi-bin python3-pytest
	python3-cryptography valgrind chromium fonts-dejavu-core php-cli php-curl golang-go $legacy_pkgs"
# bench: the peers and front servers of bench/compare.sh (Nchan for the same
# nginx, the Go hub, lighttpd, Apache), its plots and its profiles.
bench_pkgs="$demo_pkgs lighttpd apache2 libnginx-mod-nchan golang-go gnuplot-nox valgrind linux-perf"

case "${1:-test}" in
	build) want=$build_pkgs ;;
	demo) want=$demo_pkgs ;;
	legacy) want="$build_pkgs valgrind $legacy_pkgs" ;;
	test) want=$test_pkgs ;;
	bench) want=$bench_pkgs ;;
	*) echo "usage: $0 [build|demo|legacy|test|bench]" >&2; exit 2 ;;
esac

# Node.js runs the independent EventSource client (node >= 18) and the
# browser tests (node >= 20, which tests/browser/run.sh checks). A node
# already on the machine is kept; Debian's is installed only when none is.
if [ "${1:-test}" = test ] && ! command -v node >/dev/null 2>&1; then
	want="$want nodejs npm"
fi

missing=""
for p in $want; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "ssehub: missing Debian packages:$missing (run as root, or apt-get install them)" >&2
		exit 1
	fi
	echo "ssehub: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	# The :i386 packages need the architecture known to dpkg before apt
	# fetches its package lists.
	case "$missing" in
	*:i386*) dpkg --print-foreign-architectures | grep -qx i386 || dpkg --add-architecture i386 ;;
	esac
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
