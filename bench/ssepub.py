#!/usr/bin/python3
"""ssepub: publisher for the ssehub benchmarks.

Sends POST /api/sse/broadcast M times at a fixed interval with an admin token
and a body {"event":"bench","data":{"ts_us":<now us>,"seq":i,"pad":"..."}},
where ts_us is the wall clock just before the request is written, so a client
can measure fan-out latency as (receive time - ts_us). Prints one line per
broadcast and a key=value summary on stdout. Exit status 1 if any failed.
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--path", default="/api/sse/broadcast")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--token", help="admin token")
    g.add_argument("--token-file", help="file holding the admin token")
    ap.add_argument("-m", "--count", type=int, default=20, help="broadcasts (20)")
    ap.add_argument("-i", "--interval-ms", type=float, default=250, help="interval (250)")
    ap.add_argument("--pad", type=int, default=150, help="pad bytes in data (150)")
    ap.add_argument("--event", default="bench")
    ap.add_argument("--timeout", type=float, default=15, help="per request, seconds")
    ap.add_argument("--start-seq", type=int, default=1)
    a = ap.parse_args()

    token = a.token
    if a.token_file:
        with open(a.token_file) as f:
            token = f.read().strip()
    u = urllib.parse.urlsplit(a.url)
    if u.scheme != "http" or not u.hostname:
        ap.error("--url must be http://host:port")
    host, port = u.hostname, u.port or 80
    headers = {"Authorization": "Bearer " + token,
               "Content-Type": "application/json", "Connection": "keep-alive"}
    pad = "x" * a.pad
    conn = None
    recipients, post_ms, failed = [], [], 0
    t0 = time.monotonic()
    for i in range(a.count):
        seq = a.start_seq + i
        delay = t0 + i * a.interval_ms / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        status, body, err = None, b"", None
        for attempt in range(2):           # one reconnect if keep-alive broke
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=a.timeout)
                payload = json.dumps({"event": a.event, "data": {
                    "ts_us": time.time_ns() // 1000, "seq": seq, "pad": pad}},
                    separators=(",", ":")).encode()
                t1 = time.monotonic()
                conn.request("POST", a.path, body=payload, headers=headers)
                r = conn.getresponse()
                body = r.read()
                status = r.status
                post_ms.append((time.monotonic() - t1) * 1000)
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
                err = None
                break
            except (OSError, http.client.HTTPException) as e:
                err = e
                if conn is not None:
                    conn.close()
                conn = None
        n = None
        if status == 200:
            try:
                n = json.loads(body)["data"]["recipients"]
            except (ValueError, KeyError, TypeError):
                err = "bad answer: %r" % body[:200]
        if n is None:
            failed += 1
            print("seq=%d status=%s error=%s body=%s" % (
                seq, status, err, body[:200].decode(errors="replace")), flush=True)
            continue
        recipients.append(n)
        print("seq=%d status=200 recipients=%d post_ms=%.1f" % (
            seq, n, post_ms[-1]), flush=True)
    if conn is not None:
        conn.close()
    print("published=%d" % len(recipients))
    print("publish_failed=%d" % failed)
    print("recipients_total=%d" % sum(recipients))
    print("recipients_min=%d" % (min(recipients) if recipients else 0))
    print("recipients_max=%d" % (max(recipients) if recipients else 0))
    print("post_ms_max=%.1f" % (max(post_ms) if post_ms else 0))
    print("post_ms_mean=%.1f" % (sum(post_ms) / len(post_ms) if post_ms else 0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
