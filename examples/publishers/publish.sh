#!/usr/bin/env bash
# Publish to ssehub from a shell with curl.
#
#   SSEHUB_URL=https://sse.example.com SSEHUB_TOKEN=<admin JWT> \
#     bash publish.sh send-to-user '{"user_id":42,"event":"notification","data":{"n":1}}'
#
# Copy ssehub_publish into your script. It prints the answer's "data" ({"id",
# "recipients"} for a publish) and returns 0; for an error answer it prints
# ssehub's error code and message on stderr and returns 1; it retries what
# may pass a moment later: 503 (waiting its Retry-After), 502/504 from the
# front server while ssehub restarts, and network errors. The token goes to
# curl on stdin, never on its command line (where ps would show it).
set -uo pipefail

SSEHUB_ATTEMPTS=5      # 0.5 + 1 + 2 + 4 s of waiting at most, without Retry-After
SSEHUB_MAX_WAIT_S=30   # cap on a server's Retry-After

ssehub_publish() { # route json
	local url="${SSEHUB_URL:-http://localhost}"
	url="${url%/}/api/sse/$1"
	local tmp attempt status wait retry_after code message
	tmp=$(mktemp -d) || return 1
	for ((attempt = 1; ; attempt++)); do
		wait=$(awk -v a="$attempt" 'BEGIN { print 0.5 * 2 ^ (a - 1) }')
		status=$(printf 'Authorization: Bearer %s\n' "${SSEHUB_TOKEN:-}" |
			curl -sS -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' \
				--connect-timeout 5 --max-time 10 \
				-H @- -H 'Content-Type: application/json' --data-binary "$2" "$url" 2>"$tmp/error")
		if [ "${status:-000}" = 000 ]; then
			if [ "$attempt" -ge "$SSEHUB_ATTEMPTS" ]; then
				echo "ssehub: network error: $(cat "$tmp/error")" >&2
				rm -rf "$tmp"; return 1
			fi
		elif [ "$status" -ge 200 ] && [ "$status" -lt 300 ]; then
			# The answer is {"success":true,"data":…}: print the data.
			sed -e 's/^{"success":true,"data":\(.*\)}$/\1/' "$tmp/body"; echo
			rm -rf "$tmp"; return 0
		else
			code=$(sed -n 's/.*"code":"\([^"]*\)".*/\1/p' "$tmp/body")
			message=$(sed -n 's/.*"message":"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$tmp/body")
			[ -n "$code" ] || message=$(head -c 200 "$tmp/body")   # a front server's error page
			case $status in
			502|503|504) ;;
			*) attempt=$SSEHUB_ATTEMPTS ;;
			esac
			if [ "$attempt" -ge "$SSEHUB_ATTEMPTS" ]; then
				echo "ssehub: HTTP $status $code: $message" >&2
				rm -rf "$tmp"; return 1
			fi
			retry_after=$(tr -d '\r' < "$tmp/headers" | sed -n 's/^[Rr]etry-[Aa]fter: *\([0-9][0-9]*\)$/\1/p')
			if [ -n "$retry_after" ]; then
				wait=$((retry_after > SSEHUB_MAX_WAIT_S ? SSEHUB_MAX_WAIT_S : retry_after))
			fi
		fi
		sleep "$wait"
	done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	if [ $# -ne 2 ]; then
		echo "usage: publish.sh ROUTE JSON   (SSEHUB_URL, SSEHUB_TOKEN in the environment)" >&2
		exit 2
	fi
	ssehub_publish "$1" "$2"
fi
