#!/usr/bin/env python3
"""The Python driver under per-identity limits and guardrails, for tests/limits.rs.

    python limits.py

Reads one JSON command per line on stdin and answers each with one JSON line on stdout,
{"ok": true, ...} or {"ok": false, "error": "..."}; end of input ends the script. Several
named sessions live side by side (one Cluster each, so one per principal and token):

    {"cmd": "connect", "name": N, "user": U, "token": T, "host": H, "port": P,
     "connect_timeout": S}
                        a Cluster logged in as U with the token as its password, and its
                        session -> "protocol"; a refused connect answers "ok": false with
                        "error" and "causes" (each host's error: "class", "message")
    {"cmd": "run", "name": N, "statement": "...", "times": K, "concurrency": C,
     "consistency": "LOCAL_QUORUM", "fetch_size": F, "prepared": false}
                        the statement K times (default 1), C at a time (default 1), through
                        the driver's execute_concurrent; "consistency" by name (absent: the
                        driver's default); "fetch_size" absent: the driver's default page
                        size, null: unpaged, a number: that page size; "prepared": prepare
                        once, then EXECUTE -> "outcomes" {"ok", "overloaded", "unauthorized",
                        "invalid", "other"}, "messages" {outcome: [distinct server messages]},
                        "raised" {exception class: count} (what the application got),
                        "rows" (rows of the first pages), "elapsed" (seconds)
    {"cmd": "together", "runs": [RUN, ...]}
                        several "run" commands at the same time, one thread each ->
                        "results": [answer of each run, in order]
    {"cmd": "batch", "name": N, "statements": ["...", ...], "consistency": "...",
     "type": "LOGGED" | "UNLOGGED"}
                        one batch of query children -> "outcome", "message", "raised"
    {"cmd": "retries", "name": N}
                        what the session's retry policy was asked since the last "retries":
                        "retries": [{"method": "on_request_error", "error": class name,
                        "message": server message, "retry_num": n}]
    {"cmd": "close", "name": N}

Outcomes are classified by what the driver raises: Unauthorized, InvalidRequest, an
OverloadedErrorMessage (raised as itself, or, after the default retry policy moved on and
no host was left, inside NoHostAvailable: every host's error was Overloaded), anything else.

Every Cluster keeps the driver's defaults (load-balancing policy, retry decisions, timeouts,
page size); the one change is a retry policy that records each call before deciding as the
default RetryPolicy decides.
"""

import json
import sys
import threading
import time

from cassandra import ConsistencyLevel, InvalidRequest, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent
from cassandra.policies import RetryPolicy
from cassandra.protocol import ErrorMessage, OverloadedErrorMessage
from cassandra.query import BatchStatement, BatchType, SimpleStatement


class Failure(Exception):
    """A command that cannot be carried out as asked."""


class RecordingRetryPolicy(RetryPolicy):
    """The default RetryPolicy, noting every call and the error it was asked about."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.calls = []

    def _note(self, method, error, retry_num):
        entry = {"method": method, "retry_num": retry_num}
        if error is not None:
            entry["error"] = type(error).__name__
            entry["message"] = server_message(error)
        with self.lock:
            self.calls.append(entry)

    def on_request_error(self, query, consistency, error, retry_num):
        self._note("on_request_error", error, retry_num)
        return super().on_request_error(query, consistency, error, retry_num)

    def on_read_timeout(self, *args, **kwargs):
        self._note("on_read_timeout", None, kwargs.get("retry_num"))
        return super().on_read_timeout(*args, **kwargs)

    def on_write_timeout(self, *args, **kwargs):
        self._note("on_write_timeout", None, kwargs.get("retry_num"))
        return super().on_write_timeout(*args, **kwargs)

    def on_unavailable(self, *args, **kwargs):
        self._note("on_unavailable", None, kwargs.get("retry_num"))
        return super().on_unavailable(*args, **kwargs)

    def take(self):
        with self.lock:
            calls, self.calls = self.calls, []
        return calls


def server_message(e):
    """The server's message of an error, else the error's text."""
    if isinstance(e, ErrorMessage):
        return e.message
    return str(e)


def classify(e):
    """(outcome, message) of what the driver raised."""
    if isinstance(e, OverloadedErrorMessage):
        return "overloaded", e.message
    if isinstance(e, NoHostAvailable) and e.errors:
        causes = list(e.errors.values())
        if all(isinstance(c, OverloadedErrorMessage) for c in causes):
            return "overloaded", causes[0].message
        return "other", "%s: %s" % (e, " | ".join(map(str, causes)))
    if isinstance(e, Unauthorized):
        return "unauthorized", str(e)
    if isinstance(e, InvalidRequest):
        return "invalid", str(e)
    return "other", "%s: %s" % (type(e).__name__, e)


def consistency(cmd):
    name = cmd.get("consistency")
    if name is None:
        return None
    try:
        return ConsistencyLevel.name_to_value[name.upper()]
    except KeyError:
        raise Failure("unknown consistency level %r" % name)


class Session:
    def __init__(self, cmd):
        self.retries = RecordingRetryPolicy()
        profile = ExecutionProfile(retry_policy=self.retries)
        self.cluster = Cluster(
            contact_points=[cmd["host"]],
            port=cmd["port"],
            auth_provider=PlainTextAuthProvider(username=cmd["user"], password=cmd["token"]),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=cmd.get("connect_timeout", 5),
        )
        self.session = None

    def connect(self):
        self.session = self.cluster.connect()

    def statement(self, cmd):
        kw = {}
        level = consistency(cmd)
        if level is not None:
            kw["consistency_level"] = level
        if "fetch_size" in cmd:
            kw["fetch_size"] = cmd["fetch_size"]
        if cmd.get("prepared"):
            prepared = self.session.prepare(cmd["statement"])
            bound = prepared.bind(())
            if level is not None:
                bound.consistency_level = level
            if "fetch_size" in cmd:
                bound.fetch_size = cmd["fetch_size"]
            return bound
        return SimpleStatement(cmd["statement"], **kw)

    def run(self, cmd):
        times = cmd.get("times", 1)
        statement = self.statement(cmd)
        start = time.monotonic()
        results = execute_concurrent(
            self.session, [(statement, ())] * times,
            concurrency=cmd.get("concurrency", 1), raise_on_first_error=False)
        elapsed = time.monotonic() - start
        outcomes = {"ok": 0, "overloaded": 0, "unauthorized": 0, "invalid": 0, "other": 0}
        messages = {}
        raised = {}
        rows = 0
        for success, result in results:
            if success:
                outcomes["ok"] += 1
                rows += len(result.current_rows)
                continue
            outcome, message = classify(result)
            outcomes[outcome] += 1
            seen = messages.setdefault(outcome, [])
            if message not in seen:
                seen.append(message)
            name = type(result).__name__
            raised[name] = raised.get(name, 0) + 1
        return {"outcomes": outcomes, "messages": messages, "raised": raised, "rows": rows,
                "elapsed": elapsed}

    def batch(self, cmd):
        kind = getattr(BatchType, cmd.get("type", "LOGGED").upper())
        batch = BatchStatement(batch_type=kind)
        level = consistency(cmd)
        if level is not None:
            batch.consistency_level = level
        for text in cmd["statements"]:
            batch.add(SimpleStatement(text))
        try:
            self.session.execute(batch)
        except Exception as e:  # noqa: BLE001 -- the driver's errors are answers here
            outcome, message = classify(e)
            return {"outcome": outcome, "message": message, "raised": type(e).__name__}
        return {"outcome": "ok", "message": None, "raised": None}

    def close(self):
        self.cluster.shutdown()


class Driver:
    def __init__(self):
        self.sessions = {}

    def session(self, cmd):
        try:
            return self.sessions[cmd["name"]]
        except KeyError:
            raise Failure("no session %r" % cmd.get("name"))

    def connect(self, cmd):
        if cmd["name"] in self.sessions:
            raise Failure("session %r is already connected" % cmd["name"])
        s = Session(cmd)
        try:
            s.connect()
        except NoHostAvailable as e:
            s.close()
            causes = [{"host": str(h), "class": type(v).__name__, "message": str(v)}
                      for h, v in e.errors.items()]
            return {"ok": False, "error": str(e), "causes": causes}
        self.sessions[cmd["name"]] = s
        return {"protocol": s.cluster.protocol_version}

    def run(self, cmd):
        return self.session(cmd).run(cmd)

    def together(self, cmd):
        runs = cmd["runs"]
        sessions = [self.session(r) for r in runs]
        results = [None] * len(runs)

        def one(i):
            try:
                results[i] = {"ok": True, **sessions[i].run(runs[i])}
            except Exception as e:  # noqa: BLE001 -- reported in the answer
                results[i] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(runs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {"results": results}

    def batch(self, cmd):
        return self.session(cmd).batch(cmd)

    def retries(self, cmd):
        return {"retries": self.session(cmd).retries.take()}

    def close(self, cmd):
        s = self.sessions.pop(cmd["name"], None)
        if s is not None:
            s.close()
        return {}

    def shutdown(self):
        for s in self.sessions.values():
            s.close()


def main():
    driver = Driver()
    commands = {
        "connect": driver.connect,
        "run": driver.run,
        "together": driver.together,
        "batch": driver.batch,
        "retries": driver.retries,
        "close": driver.close,
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
                answer = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            print(json.dumps(answer), flush=True)
    finally:
        driver.shutdown()


if __name__ == "__main__":
    main()
