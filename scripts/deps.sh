#!/usr/bin/env bash
# Installs the Debian packages ssehub needs to build, run its demo and run its
# tests -- only those that are missing, so a second run costs nothing.
# Usage: scripts/deps.sh [build|demo|test]   (default: test, the superset)
set -euo pipefail

build_pkgs="build-essential autoconf automake libtool pkg-config libfcgi-dev libjson-c-dev libjwt-dev uuid-dev libssl-dev libhiredis-dev"
demo_pkgs="$build_pkgs nginx python3-jwt curl openssl"
test_pkgs="$demo_pkgs lighttpd apache2 spawn-fcgi redis-server redis-sentinel libfcgi-bin python3-pytest python3-cryptography valgrind chromium fonts-dejavu-core clang php-cli php-curl golang-go"

case "${1:-test}" in
	build) want=$build_pkgs ;;
	demo) want=$demo_pkgs ;;
	test) want=$test_pkgs ;;
	*) echo "usage: $0 [build|demo|test]" >&2; exit 2 ;;
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
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
