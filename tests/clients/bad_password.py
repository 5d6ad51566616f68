#!/usr/bin/env python3
"""Checks that a wrong password is refused with ERROR 0x0100 worded like Cassandra's.

    python bad_password.py --host 127.0.0.1 --port 9042 --user alice [--password wrong] [--protocol N]
"""

import argparse
import sys

from cassandra import AuthenticationFailed
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", default="definitely-wrong")
    ap.add_argument("--protocol", type=int, choices=[3, 4, 5])
    args = ap.parse_args()
    kw = dict(port=args.port, auth_provider=PlainTextAuthProvider(args.user, args.password))
    if args.protocol:
        kw["protocol_version"] = args.protocol
    cluster = Cluster([args.host], **kw)
    want = 'code=0100 [Bad credentials] message="Provided username %s and/or password are incorrect"' % args.user
    try:
        cluster.connect()
    except NoHostAvailable as e:
        errs = list(e.errors.values())
        if errs and isinstance(errs[0], AuthenticationFailed) and want in str(errs[0]):
            print("bad password OK: %s" % errs[0])
            return
        print("MISMATCH: expected AuthenticationFailed with %r, got %r" % (want, errs), file=sys.stderr)
        sys.exit(1)
    finally:
        cluster.shutdown()
    print("MISMATCH: the connection succeeded with a wrong password", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
