#!/usr/bin/env python3
"""Runs cqlsh_session.cql with cqlsh against a CQL endpoint and checks its output
against cqlsh_session.expected ({ks} is replaced by --keyspace in both).

    python cqlsh_session.py --host 127.0.0.1 --port 9042 --user alice --password secret
        [--keyspace KS] [--cqlsh PATH] [--cqlversion 3.4.5]
"""

import argparse
import difflib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--keyspace", default="cqlsh_%d" % os.getpid())
    ap.add_argument("--cqlsh", default=os.environ.get("CQL_TEST_CQLSH")
                    or os.path.join(os.path.dirname(sys.executable), "cqlsh"))
    ap.add_argument("--cqlversion", default="3.4.5")
    args = ap.parse_args()

    def render(name):
        with open(os.path.join(HERE, name)) as f:
            return f.read().replace("{ks}", args.keyspace)

    script = render("cqlsh_session.cql")
    expected = render("cqlsh_session.expected")
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "cqlsh_session_%s.cql" % args.keyspace)
    with open(path, "w") as f:
        f.write(script)
    cmd = [args.cqlsh, args.host, str(args.port), "-u", args.user, "-p", args.password,
           "--cqlversion", args.cqlversion, "--no-color", "-f", path]
    print("running: %s" % " ".join(c if c != args.password else "***" for c in cmd), flush=True)
    env = dict(os.environ, CQLSH_NO_BUNDLED="1", TERM="dumb")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    os.unlink(path)
    # cqlsh warns on stdout when the server's release differs from the one it was built for
    out = "\n".join(line.rstrip() for line in p.stdout.strip().splitlines()
                    if not line.startswith("WARNING: cqlsh was built against")).strip()
    want = "\n".join(line.rstrip() for line in expected.strip().splitlines())
    errors = [l for l in p.stderr.splitlines()
              if l.strip() and "insecure" not in l and "Recommendation" not in l
              and not l.startswith("WARNING: cqlsh was built against")]
    if p.returncode != 0 or out != want or errors:
        print("cqlsh exit code %d" % p.returncode, file=sys.stderr)
        print("stderr:\n%s" % p.stderr, file=sys.stderr)
        for line in difflib.unified_diff(want.splitlines(), out.splitlines(), "expected", "cqlsh", lineterm=""):
            print(line, file=sys.stderr)
        print("MISMATCH: cqlsh session output differs", file=sys.stderr)
        sys.exit(1)
    print(out)
    print("cqlsh session OK", flush=True)


if __name__ == "__main__":
    main()
