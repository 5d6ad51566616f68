#!/usr/bin/env python3
"""Runs a plan of steps with the Python driver through NGINX with the CQL gate, checking
what a user would see: logins accepted or refused with their reason, statements allowed or
denied (Unauthorized, with Cassandra's wording), prepared statements, batches.

    python gate.py --host 127.0.0.1 --port 9042 [--protocol 4|5] [--compression lz4]
        [--user alice] --token TOKEN PLAN.json

PLAN.json is a list of steps, run in order:
    {"connect": "ok"}                         log in with --token (or "token": "...";
                                              "cert"/"key": another client certificate)
    {"connect": "refused", "reason": "..."}   the login fails with this text in its error
    {"cql": "...", "expect": "ok"}            succeeds (optionally "rows": N)
    {"cql": "...", "expect": "unauthorized", "message": "..."}   denied by the proxy
    {"cql": "...", "expect": "reaches"}       not denied (the server may still refuse it)
    {"cql": "...", "expect": "syntax_error", "message": "..."}   refused by the proxy as Cassandra
                                              refuses a text it cannot parse
    {"cql": "...", "expect": "invalid", "message": "..."}   InvalidRequest (a guardrail)
    {"cql": "...", "consistency": "ALL", "fetch_size": N}    the statement's consistency level
                                              and page size (a "batch" takes "consistency")
    {"prepare": "...", "name": "p", "expect": ...}
    {"execute": "p", "values": [...], "expect": ...}
    {"batch": ["...", ...], "type": "logged|unlogged", "expect": ...}
    {"sleep": SECONDS}
    {"pause": "why"}                          prints "paused: why", waits for a line on stdin
    {"until_connected": SECONDS}              retries a query until the driver reconnected
Prints one line per step; exits 1 with a clear message on the first mismatch.
"""

import argparse
import json
import ssl
import sys
import time

from cassandra import AuthenticationFailed, ConsistencyLevel, InvalidRequest, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.protocol import SyntaxException
from cassandra.query import BatchStatement, BatchType, SimpleStatement


class Mismatch(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", type=int)
    p.add_argument("--compression")
    p.add_argument("--user", default="alice")
    p.add_argument("--token")
    p.add_argument("--ca", help="CA that signed NGINX's certificate (TLS)")
    p.add_argument("--cert", help="client certificate (mTLS)")
    p.add_argument("--key", help="client certificate key (mTLS)")
    p.add_argument("plan")
    return p.parse_args()


def cluster(args, token, cert=None, key=None):
    kw = {"contact_points": [args.host], "port": args.port, "connect_timeout": 5}
    if args.protocol:
        kw["protocol_version"] = args.protocol
    if args.compression:
        kw["compression"] = args.compression
    if token is not None:
        kw["auth_provider"] = PlainTextAuthProvider(username=args.user, password=token)
    if args.ca:
        ctx = ssl.create_default_context(cafile=args.ca)
        cert, key = (cert, key) if cert else (args.cert, args.key)
        if cert:
            ctx.load_cert_chain(cert, key)
        kw["ssl_context"] = ctx
    return Cluster(**kw)


def login_errors(e):
    """The error texts of a failed login, per host."""
    if isinstance(e, NoHostAvailable):
        return " | ".join(str(v) for v in e.errors.values())
    return str(e)


def statement_options(step):
    """The consistency level and page size a step asks for."""
    kw = {}
    if "consistency" in step:
        kw["consistency_level"] = ConsistencyLevel.name_to_value[step["consistency"]]
    if "fetch_size" in step:
        kw["fetch_size"] = step["fetch_size"]
    return kw


def run_statement(session, prepared, step):
    if "cql" in step:
        return session.execute(SimpleStatement(step["cql"], **statement_options(step)))
    if "prepare" in step:
        prepared[step["name"]] = session.prepare(step["prepare"])
        return None
    if "execute" in step:
        return session.execute(prepared[step["execute"]], step.get("values", []))
    if "batch" in step:
        kind = BatchType.UNLOGGED if step.get("type") == "unlogged" else BatchType.LOGGED
        batch = BatchStatement(batch_type=kind, **statement_options(step))
        for cql in step["batch"]:
            batch.add(SimpleStatement(cql))
        return session.execute(batch)
    raise Mismatch("unknown step %r" % step)


def check(session, prepared, step):
    expect = step.get("expect", "ok")
    label = step.get("cql") or step.get("prepare") or step.get("execute") or step.get("batch")
    try:
        result = run_statement(session, prepared, step)
    except Unauthorized as e:
        if expect != "unauthorized":
            raise Mismatch("%r: expected %s, got Unauthorized: %s" % (label, expect, e))
        if step.get("message") and step["message"] not in str(e):
            raise Mismatch("%r: expected %r in %s" % (label, step["message"], e))
        print("denied: %s -> %s" % (label, e), flush=True)
        return
    except InvalidRequest as e:
        if expect == "invalid":
            if step.get("message") and step["message"] not in str(e):
                raise Mismatch("%r: expected %r in %s" % (label, step["message"], e))
            print("invalid: %s -> %s" % (label, e), flush=True)
            return
        if expect == "reaches":
            print("reached the server: %s -> %s" % (label, type(e).__name__), flush=True)
            return
        raise Mismatch("%r: expected %s, got InvalidRequest: %s" % (label, expect, e))
    except SyntaxException as e:
        if expect == "reaches":  # the server's own syntax error
            print("reached the server: %s -> %s" % (label, type(e).__name__), flush=True)
            return
        if expect != "syntax_error":
            raise Mismatch("%r: expected %s, got SyntaxException: %s" % (label, expect, e))
        if step.get("message") and step["message"] not in str(e):
            raise Mismatch("%r: expected %r in %s" % (label, step["message"], e))
        print("syntax error: %s -> %s" % (label, e), flush=True)
        return
    except Exception as e:  # the server's own refusal
        if expect == "reaches":
            print("reached the server: %s -> %s" % (label, type(e).__name__), flush=True)
            return
        raise Mismatch("%r: expected %s, got %s: %s" % (label, expect, type(e).__name__, e))
    if expect in ("unauthorized", "syntax_error", "invalid"):
        raise Mismatch("%r: expected %s, it succeeded" % (label, expect))
    if "rows" in step and result is not None:
        n = len(list(result))
        if n != step["rows"]:
            raise Mismatch("%r: expected %d rows, got %d" % (label, step["rows"], n))
    print("ok: %s" % (label,), flush=True)


def main():
    args = parse_args()
    with open(args.plan) as f:
        plan = json.load(f)
    cl = None
    session = None
    prepared = {}
    try:
        for step in plan:
            if "connect" in step:
                if cl is not None:
                    cl.shutdown()
                token = step.get("token", args.token)
                cl = cluster(args, token, step.get("cert"), step.get("key"))
                try:
                    session = cl.connect()
                except Exception as e:
                    errors = login_errors(e)
                    if step["connect"] != "refused":
                        raise Mismatch("login refused: %s" % errors)
                    if step.get("reason") and step["reason"] not in errors:
                        raise Mismatch("expected %r in the login error: %s" % (step["reason"], errors))
                    print("refused: %s" % errors, flush=True)
                    cl.shutdown()
                    cl = None
                    continue
                if step["connect"] == "refused":
                    raise Mismatch("login succeeded, expected a refusal (%s)" % step.get("reason"))
                print("connected: protocol v%d" % cl.protocol_version, flush=True)
            elif "sleep" in step:
                time.sleep(step["sleep"])
            elif "pause" in step:
                print("paused: %s" % step["pause"], flush=True)
                sys.stdin.readline()
            elif "until_connected" in step:
                deadline = time.time() + step["until_connected"]
                while True:
                    try:
                        session.execute("SELECT release_version FROM system.local")
                        break
                    except Exception as e:
                        if time.time() > deadline:
                            raise Mismatch("no reconnection: %s" % e)
                        time.sleep(0.2)
                print("reconnected", flush=True)
            else:
                if session is None:
                    raise Mismatch("step before a successful connect: %r" % step)
                check(session, prepared, step)
    except Mismatch as m:
        print("MISMATCH: %s" % m, flush=True)
        sys.exit(1)
    finally:
        if cl is not None:
            cl.shutdown()


if __name__ == "__main__":
    main()
