#!/usr/bin/env python3
"""A scripted CQL session, as a new user would run it with the Python driver.

Runs against any CQL endpoint (cql-devserver, Apache Cassandra, or either behind
NGINX with ngx_stream_cql_module) and checks the server's answers: results, error
codes and error messages. Prints one line per step; exits 1 with a clear message
on the first mismatch.

    python workload.py --host 127.0.0.1 --port 9042 [--protocol 3|4|5]
        [--compression lz4|snappy] [--user U --password P] [--keyspace KS]

With no --protocol the driver negotiates (v5 expected unless --expect-protocol).
"""

import argparse
import os
import sys
import uuid

from cassandra import AlreadyExists, InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from cassandra.protocol import ErrorMessage, ExecuteMessage, SyntaxException
from cassandra.query import BatchStatement, BatchType, SimpleStatement
from cassandra import ConsistencyLevel


class Mismatch(Exception):
    pass


def step(label):
    print("step: %s" % label, flush=True)


def expect(cond, what):
    if not cond:
        raise Mismatch(what)


def expect_eq(got, want, what):
    if got != want:
        raise Mismatch("%s: expected %r, got %r" % (what, want, got))


def expect_error(session, stmt, exc_type, code, message, label):
    try:
        session.execute(stmt)
    except exc_type as e:
        got_code = getattr(e, "code", None)
        if code is not None and got_code is not None:
            expect_eq(got_code, code, "%s: error code" % label)
        got_msg = getattr(e, "message", None) or str(e)
        expect(message in str(got_msg), "%s: expected message containing %r, got %r" % (label, message, got_msg))
        print("  ok: %s -> %s code=0x%04x %s" % (label, type(e).__name__, got_code or code or 0, got_msg), flush=True)
        return e
    except Exception as e:  # noqa: BLE001
        raise Mismatch("%s: expected %s, got %s: %s" % (label, exc_type.__name__, type(e).__name__, e))
    raise Mismatch("%s: expected %s, but the statement succeeded" % (label, exc_type.__name__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9042)
    ap.add_argument("--protocol", type=int, choices=[3, 4, 5])
    ap.add_argument("--expect-protocol", type=int, default=5,
                    help="protocol version expected when negotiating (default 5)")
    ap.add_argument("--compression", choices=["lz4", "snappy"])
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--keyspace", default="workload_%d" % os.getpid())
    ap.add_argument("--keep", action="store_true", help="do not drop the keyspace at the end")
    args = ap.parse_args()

    ks = args.keyspace
    kw = dict(port=args.port, compression=args.compression or False)
    if args.protocol:
        kw["protocol_version"] = args.protocol
    if args.user:
        kw["auth_provider"] = PlainTextAuthProvider(args.user, args.password or "")
    cluster = Cluster([args.host], **kw)

    step("connect to %s:%d (protocol %s, compression %s)" % (
        args.host, args.port, args.protocol or "negotiated", args.compression or "none"))
    session = cluster.connect()
    want_v = args.protocol or args.expect_protocol
    expect_eq(cluster.protocol_version, want_v, "negotiated protocol version")
    print("  ok: protocol v%d" % cluster.protocol_version, flush=True)

    step("system.local")
    local = session.execute("SELECT release_version, cql_version FROM system.local WHERE key = 'local'").one()
    expect(local is not None and local.cql_version, "system.local has a row with cql_version")
    print("  ok: release_version=%s cql_version=%s" % (local.release_version, local.cql_version), flush=True)

    step("create keyspace %s" % ks)
    session.execute("DROP KEYSPACE IF EXISTS %s" % ks)
    session.execute("CREATE KEYSPACE %s WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}" % ks)
    expect(ks in cluster.metadata.keyspaces, "driver metadata lists keyspace %s" % ks)

    step("create tables")
    session.execute("CREATE TABLE %s.users (id int PRIMARY KEY, name text, tags set<text>)" % ks)
    session.execute("CREATE TABLE IF NOT EXISTS %s.users (id int PRIMARY KEY, name text, tags set<text>)" % ks)
    session.execute("CREATE TABLE %s.events (day text, at timestamp, id uuid, payload blob, n bigint, "
                    "score double, attrs map<text, int>, seq list<int>, ok boolean, "
                    "PRIMARY KEY ((day), at, id)) WITH CLUSTERING ORDER BY (at DESC, id ASC)" % ks)
    tables = cluster.metadata.keyspaces[ks].tables
    expect("users" in tables and "events" in tables, "driver metadata lists both tables, got %r" % list(tables))
    expect_eq([c.name for c in tables["events"].primary_key], ["day", "at", "id"], "events primary key")

    step("USE %s" % ks)
    rs = session.execute("USE %s" % ks)
    session.set_keyspace(ks)
    expect_eq(session.keyspace, ks, "session keyspace")

    step("insert and select")
    session.execute("INSERT INTO users (id, name, tags) VALUES (1, 'alice', {'admin', 'dev'})")
    row = session.execute("SELECT id, name, tags FROM users WHERE id = 1").one()
    expect_eq((row.id, row.name, sorted(row.tags)), (1, "alice", ["admin", "dev"]), "selected row")
    session.execute("INSERT INTO users (id, name) VALUES (9, 'o''brien')")
    expect_eq(session.execute("SELECT name FROM users WHERE id = 9").one().name, "o'brien", "quoted string")

    step("prepared insert and select")
    ins = session.prepare("INSERT INTO users (id, name, tags) VALUES (?, ?, ?)")
    for i, name in [(2, "bob"), (3, "carol"), (4, "dave"), (5, "erin")]:
        session.execute(ins, (i, name, {"t%d" % i}))
    sel = session.prepare("SELECT name, tags FROM users WHERE id = ?")
    row = session.execute(sel, (3,)).one()
    expect_eq((row.name, sorted(row.tags)), ("carol", ["t3"]), "prepared select")
    ins2 = session.prepare("INSERT INTO users (id, name, tags) VALUES (?, ?, ?)")
    expect_eq(ins2.query_id, ins.query_id, "prepared id is stable for the same text")
    print("  ok: prepared id %s" % ins.query_id.hex(), flush=True)

    step("paged select (fetch_size=2 over 6 rows)")
    rs = session.execute(SimpleStatement("SELECT id, name FROM users", fetch_size=2))
    pages = [list(rs.current_rows)]
    while rs.has_more_pages:
        rs.fetch_next_page()
        pages.append(list(rs.current_rows))
    ids = sorted(r.id for p in pages for r in p)
    expect_eq(ids, [1, 2, 3, 4, 5, 9], "all rows over the pages")
    expect_eq([len(p) for p in pages], [2, 2, 2], "page sizes")
    print("  ok: %d pages" % len(pages), flush=True)

    step("count(*) and LIMIT")
    expect_eq(session.execute("SELECT count(*) FROM users").one()[0], 6, "count(*)")
    expect_eq(len(list(session.execute("SELECT * FROM users LIMIT 4"))), 4, "LIMIT 4")

    step("logged batch with a prepared and a query child")
    batch = BatchStatement(batch_type=BatchType.LOGGED)
    batch.add(ins, (6, "frank", {"batch"}))
    batch.add(SimpleStatement("INSERT INTO users (id, name) VALUES (7, 'grace')"))
    session.execute(batch)
    got = {r.id: r.name for r in session.execute("SELECT id, name FROM users WHERE id IN (6, 7)")}
    expect_eq(got, {6: "frank", 7: "grace"}, "batch rows")

    step("lightweight transactions")
    r = session.execute("INSERT INTO users (id, name) VALUES (8, 'heidi') IF NOT EXISTS").one()
    expect_eq(r[0], True, "[applied] of a new row")
    r = session.execute("INSERT INTO users (id, name) VALUES (1, 'mallory') IF NOT EXISTS").one()
    expect_eq((r[0], r.name), (False, "alice"), "[applied] and existing row")

    step("update and delete")
    session.execute("UPDATE users SET name = 'ALICE', tags = tags + {'x'} WHERE id = 1")
    row = session.execute("SELECT name, tags FROM users WHERE id = 1").one()
    expect_eq((row.name, sorted(row.tags)), ("ALICE", ["admin", "dev", "x"]), "updated row")
    session.execute("DELETE FROM users WHERE id = 2")
    expect(session.execute("SELECT * FROM users WHERE id = 2").one() is None, "row 2 deleted")

    step("clustering order and ranges")
    pins = session.prepare("INSERT INTO events (day, at, id, payload, n, score, attrs, seq, ok) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
    import datetime
    base = datetime.datetime(2026, 11, 21, 12, 0, 0)
    for k in range(5):
        session.execute(pins, ("2026-11-21", base + datetime.timedelta(minutes=k), uuid.uuid4(),
                               bytes([k]) * 3, 10 ** 12 + k, k / 2.0, {"k": k}, [k, k + 1], k % 2 == 0))
    session.execute("INSERT INTO events (day, at, id, payload) VALUES ('2026-11-21', '2026-11-21 11:00:00+0000', "
                    "123e4567-e89b-12d3-a456-426614174000, 0xcafe)")
    rows = list(session.execute("SELECT at, n FROM events WHERE day = '2026-11-21' AND at >= '2026-11-21 12:01:00+0000' "
                                "AND at < '2026-11-21 12:04:00+0000'"))
    expect_eq([r.n for r in rows], [10 ** 12 + 3, 10 ** 12 + 2, 10 ** 12 + 1], "range in descending clustering order")
    row = session.execute("SELECT payload FROM events WHERE day = '2026-11-21' AND at = '2026-11-21 11:00:00+0000'").one()
    expect_eq(row.payload, b"\xca\xfe", "blob literal")

    step("TRUNCATE")
    session.execute("TRUNCATE events")
    expect_eq(len(list(session.execute("SELECT * FROM events"))), 0, "rows after truncate")

    step("errors")
    expect_error(session, "SELEC * FROM users", SyntaxException, 0x2000,
                 "line 1:0 no viable alternative at input 'SELEC' ([SELEC]...)", "syntax error")
    expect_error(session, "SELECT * FROM no_such_table", InvalidRequest, 0x2200,
                 "table no_such_table does not exist", "unknown table")
    e = expect_error(session, "CREATE TABLE users (id int PRIMARY KEY)", AlreadyExists, 0x2400,
                     # the driver words this one itself from the error's keyspace and table
                     "Table '%s.users' already exists" % ks, "already exists")
    expect_eq((e.keyspace, e.table), (ks, "users"), "already exists keyspace/table")
    # Unprepared: an EXECUTE with an id the server never saw (sent on a pool connection,
    # since the driver would otherwise re-prepare transparently).
    pool = next(iter(session.get_pools()))
    conn, _ = pool.borrow_connection(timeout=5)
    try:
        bogus = b"\x00" * 16
        msg = ExecuteMessage(query_id=bogus, query_params=[], consistency_level=ConsistencyLevel.ONE,
                             result_metadata_id=bogus if cluster.protocol_version >= 5 else None)
        ok, resp = conn.wait_for_response(msg, timeout=10, fail_on_error=False)
    finally:
        pool.return_connection(conn)
    expect(not ok and isinstance(resp, ErrorMessage), "unprepared: expected an ERROR, got %r" % (resp,))
    expect_eq(resp.code, 0x2500, "unprepared error code")
    expect_eq(resp.info, bogus, "unprepared error carries the id")
    print("  ok: unprepared -> code=0x2500 %s" % resp.message, flush=True)

    step("drop keyspace")
    if not args.keep:
        session.execute("DROP KEYSPACE %s" % ks)
        expect(ks not in cluster.metadata.keyspaces, "keyspace gone from driver metadata")
    cluster.shutdown()
    print("workload OK (protocol v%d, compression %s)" % (want_v, args.compression or "none"), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        print("MISMATCH: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
