#!/usr/bin/env python3
"""Records the system.local / system.peers / system.peers_v2 answers of a three-node
development cluster (cql-devserver in cluster mode), as seen by cassandra-driver through a
recording TCP relay. See README.md in this folder.

Run from the repository root, after `cargo build -p cql-devserver` and `make venv`:

    .venv/bin/python tests/captures/devcluster/record.py [--port 9042] [--out DIR]

It starts `target/debug/cql-devserver --node 127.0.1.1:PORT --node 127.0.1.2:PORT
--node 127.0.1.3:PORT,dc=dc2,rack=rack2 --quiet`, then, for each session of SESSIONS, a fresh
relay on 127.0.0.1 (a free port) forwarding to node 2, and the driver connecting through it.
Each TCP connection the relay accepts is numbered 0, 1, ... in accept order; each read() is one
chunk, appended to conn-N.c2s.bin or conn-N.s2c.bin and listed in chunks.jsonl (the format of
tests/captures/README.md). The driver prints what it received to client-output.txt.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading

from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import WhiteListRoundRobinPolicy

NODES = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]
# Node 3 in another data centre and rack, so that the peers rows differ in both.
NODE_OPTIONS = ["", "", ",dc=dc2,rack=rack2"]
CONNECT_TO = 1  # node 2

# (folder, protocol version, compression)
SESSIONS = [
    ("dev-v4-plain", 4, False),
    ("dev-v4-lz4", 4, "lz4"),
    ("dev-v5-plain", 5, False),
]

QUERIES = [
    "SELECT * FROM system.local WHERE key='local'",
    "SELECT * FROM system.peers",
    "SELECT * FROM system.peers_v2",
]


class Recorder:
    """A recording relay: every accepted connection is forwarded to `upstream` and recorded."""

    def __init__(self, upstream, out_dir):
        self.upstream = upstream
        self.out_dir = out_dir
        self.conns = 0
        self.chunks = []  # (conn, dir, offset, len) in arrival order
        self.sizes = {}  # (conn, dir) -> bytes so far
        self.tasks = set()

    def record(self, conn, direction, data):
        key = (conn, direction)
        offset = self.sizes.get(key, 0)
        self.sizes[key] = offset + len(data)
        self.chunks.append({"conn": conn, "dir": direction, "offset": offset, "len": len(data)})
        with open(os.path.join(self.out_dir, "conn-%d.%s.bin" % key), "ab") as f:
            f.write(data)

    async def pump(self, conn, direction, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.record(conn, direction, data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError):
                pass

    async def serve(self, client_reader, client_writer):
        conn = self.conns
        self.conns += 1
        for d in ("c2s", "s2c"):
            open(os.path.join(self.out_dir, "conn-%d.%s.bin" % (conn, d)), "wb").close()
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self.pump(conn, "c2s", client_reader, server_writer),
            self.pump(conn, "s2c", server_reader, client_writer),
        )

    def write_chunks(self):
        with open(os.path.join(self.out_dir, "chunks.jsonl"), "w") as f:
            for c in self.chunks:
                f.write(json.dumps(c) + "\n")


def start_relay(recorder):
    """Runs the relay on its own event loop thread; returns (port, stop). `stop` waits until
    every connection has ended (both sides closed), then stops the loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    async def serve(reader, writer):
        task = asyncio.current_task()
        recorder.tasks.add(task)
        try:
            await recorder.serve(reader, writer)
        finally:
            recorder.tasks.discard(task)

    async def main():
        holder["server"] = await asyncio.start_server(serve, "127.0.0.1", 0)
        holder["port"] = holder["server"].sockets[0].getsockname()[1]
        holder["done"] = asyncio.Event()
        ready.set()
        await holder["done"].wait()

    async def finish():
        holder["server"].close()
        for _ in range(100):
            if not recorder.tasks:
                break
            await asyncio.sleep(0.05)
        holder["done"].set()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait()

    def stop():
        asyncio.run_coroutine_threadsafe(finish(), loop).result(10)
        thread.join(5)
        if recorder.tasks:
            sys.exit("the relay still has %d open connections" % len(recorder.tasks))

    return holder["port"], stop


def record_session(out_root, name, version, compression, node_port):
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    recorder = Recorder((NODES[CONNECT_TO], node_port), out_dir)
    relay_port, stop = start_relay(recorder)
    lines = []
    # Only the relay's address is used: the peers the driver learns get no pool.
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy(["127.0.0.1"]))
    cluster = Cluster(
        ["127.0.0.1"],
        port=relay_port,
        protocol_version=version,
        compression=compression,
        schema_metadata_enabled=False,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    session = cluster.connect()
    lines.append("protocol_version = %d, compression = %s" % (cluster.protocol_version, compression))
    for q in QUERIES:
        rows = list(session.execute(q))
        lines.append("%s: %d rows" % (q, len(rows)))
        for r in rows:
            lines.append("  %r" % (r,))
    cluster.shutdown()
    stop()
    recorder.write_chunks()
    with open(os.path.join(out_dir, "client-output.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d connections, %d chunks" % (name, recorder.conns, len(recorder.chunks)))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9042, help="the nodes' port (default 9042)")
    parser.add_argument("--out", default=here, help="where the session folders go")
    parser.add_argument("--devserver", default="target/debug/cql-devserver")
    args = parser.parse_args()

    cmd = [args.devserver, "--quiet"]
    for ip, opts in zip(NODES, NODE_OPTIONS):
        cmd += ["--node", "%s:%d%s" % (ip, args.port, opts)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        for _ in NODES:
            line = server.stdout.readline()
            if not line.startswith("cql-devserver listening on"):
                sys.exit("cql-devserver did not start: %r" % line)
        for name, version, compression in SESSIONS:
            record_session(args.out, name, version, compression, args.port)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
