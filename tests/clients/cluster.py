#!/usr/bin/env python3
"""The Python driver in front of a cluster, one command at a time, for tests/cluster.rs.

    python cluster.py --host H --port P [--user U --token T] [--ca CA.pem] [--protocol 4|5]
        [--connect-timeout SECONDS]

Reads one JSON command per line on stdin and answers each with one JSON line on stdout,
{"ok": true, ...} or {"ok": false, "error": "..."}; end of input ends the script.

    {"cmd": "connect"}                  -> "protocol", "hosts" (see "hosts")
    {"cmd": "hosts"}                    -> "hosts": [{"address": "ip:port", "up": bool,
                                           "dc": ..., "rack": ...}] of the driver's metadata
    {"cmd": "workload", "keyspace": KS, "keys": N}
                                        keyspace and table KS.kv (k int PRIMARY KEY, v text),
                                        prepared INSERT and SELECT of keys 0..N-1, a logged
                                        batch (a prepared and a query child), count(*)
    {"cmd": "keys", "keyspace": KS, "from": A, "count": N}
                                        prepared INSERT and SELECT of keys A..A+N-1
    {"cmd": "listen"}                   a connection of its own to --host, REGISTERed for
                                        STATUS_CHANGE and TOPOLOGY_CHANGE
    {"cmd": "events"}                   -> "events": [{"type": "STATUS_CHANGE",
                                           "change": "DOWN", "address": "ip:port"}]
    {"cmd": "wait_host", "address": "ip:port", "up": false, "timeout": S}
                                        until the driver marks that host up (or down)
    {"cmd": "cql", "statement": "...", "expect": "ok" | "unauthorized", "message": "..."}
                                        a statement; a refusal must be Cassandra's
                                        Unauthorized and hold the message

The Cluster keeps the driver's defaults (load-balancing policy included): the tests check
what an application that changes nothing would do.
"""

import argparse
import json
import ssl
import sys
import threading
import time

from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable
from cassandra.connection import DefaultEndPoint
from cassandra.query import BatchStatement, BatchType, SimpleStatement


class Failure(Exception):
    """A command's outcome differs from what it expects."""


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="app")
    p.add_argument("--token")
    p.add_argument("--ca", help="CA that signed NGINX's certificate: connect with TLS")
    p.add_argument("--protocol", type=int)
    p.add_argument("--connect-timeout", type=float, default=5)
    return p.parse_args()


def error_text(e):
    """An error's text; a NoHostAvailable names each host's error."""
    if isinstance(e, NoHostAvailable):
        return "%s: %s" % (e, " | ".join("%s: %s" % (h, v) for h, v in e.errors.items()))
    return "%s: %s" % (type(e).__name__, e)


class Driver:
    def __init__(self, args):
        self.args = args
        self.cluster = None
        self.session = None
        self.listener = None
        self.events = []
        self.lock = threading.Lock()

    def connect(self, _cmd):
        kw = {"contact_points": [self.args.host], "port": self.args.port, "connect_timeout": self.args.connect_timeout}
        if self.args.protocol:
            kw["protocol_version"] = self.args.protocol
        if self.args.token is not None:
            kw["auth_provider"] = PlainTextAuthProvider(username=self.args.user, password=self.args.token)
        if self.args.ca:
            # Verifies NGINX's certificate and that it names the address dialled.
            kw["ssl_context"] = ssl.create_default_context(cafile=self.args.ca)
        self.cluster = Cluster(**kw)
        self.session = self.cluster.connect()
        return {"protocol": self.cluster.protocol_version, **self.hosts(None)}

    def hosts(self, _cmd):
        hosts = []
        for h in self.cluster.metadata.all_hosts():
            hosts.append({
                "address": "%s:%d" % (h.endpoint.address, h.endpoint.port),
                "up": bool(h.is_up),
                "dc": h.datacenter,
                "rack": h.rack,
            })
        return {"hosts": sorted(hosts, key=lambda h: h["address"])}

    def workload(self, cmd):
        ks, n = cmd["keyspace"], cmd["keys"]
        s = self.session
        s.execute("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = "
                  "{'class': 'SimpleStrategy', 'replication_factor': 1}" % ks)
        s.execute("CREATE TABLE IF NOT EXISTS %s.kv (k int PRIMARY KEY, v text)" % ks)
        if ks not in self.cluster.metadata.keyspaces:
            raise Failure("driver metadata does not list keyspace %s" % ks)
        self.keys({"keyspace": ks, "from": 0, "count": n})
        ins = s.prepare("INSERT INTO %s.kv (k, v) VALUES (?, ?)" % ks)
        batch = BatchStatement(batch_type=BatchType.LOGGED)
        batch.add(ins, (n, "b%d" % n))
        batch.add(SimpleStatement("INSERT INTO %s.kv (k, v) VALUES (%d, 'b%d')" % (ks, n + 1, n + 1)))
        s.execute(batch)
        got = {r.k: r.v for r in s.execute("SELECT k, v FROM %s.kv WHERE k IN (%d, %d)" % (ks, n, n + 1))}
        if got != {n: "b%d" % n, n + 1: "b%d" % (n + 1)}:
            raise Failure("batch rows: %r" % got)
        count = s.execute("SELECT count(*) FROM %s.kv" % ks).one()[0]
        if count != n + 2:
            raise Failure("count(*): expected %d, got %d" % (n + 2, count))
        return {"rows": count}

    def keys(self, cmd):
        ks, first, n = cmd["keyspace"], cmd["from"], cmd["count"]
        s = self.session
        ins = s.prepare("INSERT INTO %s.kv (k, v) VALUES (?, ?)" % ks)
        sel = s.prepare("SELECT v FROM %s.kv WHERE k = ?" % ks)
        for k in range(first, first + n):
            s.execute(ins, (k, "v%d" % k))
        for k in range(first, first + n):
            row = s.execute(sel, (k,)).one()
            if row is None or row.v != "v%d" % k:
                raise Failure("key %d: expected %r, got %r" % (k, "v%d" % k, row))
        return {"keys": n}

    def listen(self, _cmd):
        def watcher(kind):
            def on_event(event):
                addr, port = event["address"]
                with self.lock:
                    self.events.append({"type": kind, "change": event["change_type"],
                                        "address": "%s:%d" % (addr, port)})
            return on_event
        self.listener = self.cluster.connection_factory(DefaultEndPoint(self.args.host, self.args.port))
        self.listener.register_watchers(
            {"STATUS_CHANGE": watcher("STATUS_CHANGE"), "TOPOLOGY_CHANGE": watcher("TOPOLOGY_CHANGE")},
            register_timeout=5)
        return {}

    def events_seen(self, _cmd):
        with self.lock:
            return {"events": list(self.events)}

    def wait_host(self, cmd):
        addr, port = cmd["address"].rsplit(":", 1)
        deadline = time.time() + cmd.get("timeout", 10)
        while True:
            host = self.cluster.metadata.get_host(addr, int(port))
            if host is not None and bool(host.is_up) == cmd["up"]:
                return {}
            if time.time() > deadline:
                raise Failure("host %s: is_up is %r after %ss" % (
                    cmd["address"], host and host.is_up, cmd.get("timeout", 10)))
            time.sleep(0.05)

    def cql(self, cmd):
        expect = cmd.get("expect", "ok")
        try:
            rows = list(self.session.execute(SimpleStatement(cmd["statement"])))
        except Unauthorized as e:
            if expect != "unauthorized":
                raise Failure("%r: expected %s, got Unauthorized: %s" % (cmd["statement"], expect, e))
            if cmd.get("message", "") not in str(e):
                raise Failure("%r: expected %r in %s" % (cmd["statement"], cmd["message"], e))
            return {"refused": str(e)}
        if expect != "ok":
            raise Failure("%r: expected %s, it succeeded" % (cmd["statement"], expect))
        return {"rows": len(rows)}

    def shutdown(self):
        if self.listener is not None:
            self.listener.close()
        if self.cluster is not None:
            self.cluster.shutdown()


def main():
    driver = Driver(parse_args())
    commands = {
        "connect": driver.connect,
        "hosts": driver.hosts,
        "workload": driver.workload,
        "keys": driver.keys,
        "listen": driver.listen,
        "events": driver.events_seen,
        "wait_host": driver.wait_host,
        "cql": driver.cql,
    }
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            try:
                handler = commands.get(cmd.get("cmd"))
                if handler is None:
                    raise Failure("unknown command %r" % cmd.get("cmd"))
                answer = {"ok": True, **handler(cmd)}
            except Failure as e:
                answer = {"ok": False, "error": str(e)}
            except Exception as e:  # noqa: BLE001 -- the driver's errors are answers too
                answer = {"ok": False, "error": error_text(e)}
            print(json.dumps(answer), flush=True)
    finally:
        driver.shutdown()


if __name__ == "__main__":
    main()
