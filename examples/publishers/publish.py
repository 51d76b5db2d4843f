#!/usr/bin/python3
"""Publish to ssehub from Python, standard library only.

    SSEHUB_URL=https://sse.example.com SSEHUB_TOKEN=<admin JWT> \
        python3 publish.py send-to-user '{"user_id":42,"event":"notification","data":{"n":1}}'

Copy publish() into your code. It returns the answer's "data" ({"id",
"recipients"} for a publish), raises SsehubError with ssehub's error code
and message for an error answer, and retries what may pass a moment later:
503 (waiting its Retry-After), 502/504 from the front server while ssehub
restarts, and network errors.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

ATTEMPTS = 5          # 0.5 + 1 + 2 + 4 s of waiting at most, without Retry-After
MAX_WAIT_S = 30       # cap on a server's Retry-After


class SsehubError(Exception):
    def __init__(self, status, code, message):
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def publish(route, body, url=None, token=None):
    """POST body (a dict) to /api/sse/<route> (broadcast, send-to-user,
    send-to-client, disconnect) and return the answer's "data"."""
    url = (url or os.environ.get("SSEHUB_URL", "http://localhost")).rstrip("/") + "/api/sse/" + route
    token = token or os.environ["SSEHUB_TOKEN"]
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(url, data=payload, method="POST", headers={
            "Authorization": "Bearer " + token,
            "Content-Type": "application/json",   # ssehub refuses anything else
        })
        wait = 0.5 * 2 ** (attempt - 1)
        try:
            with urllib.request.urlopen(request, timeout=10) as res:
                return json.load(res)["data"]
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode("utf-8", "replace")
            try:
                error = json.loads(text)["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "", text[:200]       # a front server's error page
            if status not in (502, 503, 504) or attempt == ATTEMPTS:
                raise SsehubError(status, code, message) from None
            retry_after = e.headers.get("Retry-After", "")
            if retry_after.isdigit():
                wait = min(int(retry_after), MAX_WAIT_S)
        except (urllib.error.URLError, OSError) as e:
            if attempt == ATTEMPTS:
                raise SsehubError(0, "network", str(e)) from None
        time.sleep(wait)
    raise AssertionError("not reached")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: publish.py ROUTE JSON   (SSEHUB_URL, SSEHUB_TOKEN in the environment)")
    try:
        print(json.dumps(publish(sys.argv[1], json.loads(sys.argv[2])), separators=(",", ":"), ensure_ascii=False))
    except SsehubError as e:
        sys.exit(f"ssehub: {e}")
