#!/usr/bin/python3
"""mktokens: HS256 tokens for the ssehub benchmarks.

Writes N user tokens (one a line; user_id i+1, or one shared user with
--shared; with --topic, a "topics" claim holding those patterns) and one
admin token (role "admin"), signed with the bytes of the secret file (one
trailing newline ignored, as ssehub does). Tokens expire after --ttl seconds.
"""
import argparse
import time

import jwt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("-n", "--users", type=int, required=True)
    ap.add_argument("--out", required=True, help="user tokens, one a line")
    ap.add_argument("--admin-out", required=True, help="admin token")
    ap.add_argument("--shared", action="store_true", help="one user for all")
    ap.add_argument("--ttl", type=int, default=7200)
    ap.add_argument("--alg", default="HS256")
    ap.add_argument("--topic", action="append", default=[],
                    help="a topic pattern the user tokens allow (repeatable)")
    a = ap.parse_args()

    with open(a.secret_file, "rb") as f:
        key = f.read()
    if key.endswith(b"\n"):
        key = key[:-1]
    now = int(time.time())
    base = {"iat": now, "exp": now + a.ttl}
    with open(a.admin_out, "w") as f:
        f.write(jwt.encode(dict(base, user_id="bench-admin", role="admin"),
                           key, algorithm=a.alg) + "\n")
    with open(a.out, "w") as f:
        for i in range(1 if a.shared else a.users):
            claims = dict(base, user_id=i + 1)
            if a.topic:
                claims["topics"] = a.topic
            f.write(jwt.encode(claims, key, algorithm=a.alg) + "\n")


if __name__ == "__main__":
    main()
