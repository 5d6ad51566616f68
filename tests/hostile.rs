//! A hostile client against the gate (issue 15), through NGINX in front of the development
//! server, with raw CQL v4 frames (`harness::cql`): pipelined requests that desynchronise
//! the keyspace, floods from a client that never reads, pipelined forged tokens, a client
//! that never logs in, a registry filled with huge statements, an identity no binding
//! matches, statements the proxy cannot parse, and a refusal in the middle of a response.
//!
//! Every NGINX serves one policy: `mallory` holds every permission on keyspace `a` and
//! SELECT on `b.other` (so `USE b` is allowed) and nothing on `b.t`; `alice` is the
//! legitimate client, reading and writing `a`. The schema, and one row of `b.t` that a
//! leak would show, are made at the development server directly; so are the checks that
//! nothing landed in `b.t`.

mod harness;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use harness::cql::{self, code, Client, Frame, Response};
use harness::{cql_token, free_port, scratch_dir, wait_for, DevServer, Nginx};

const ISSUER: &str = "https://idp.example.test/realms/ops";
const AUDIENCE: &str = "cassandra";

const POLICY: &str = r#"
# Everything in keyspace a, one table of b (a grant reaching b allows USE b), nothing on b.t.
[roles.intruder]
grant = [
    { permissions = ["ALL"], on = "KEYSPACE a" },
    { permissions = ["SELECT"], on = "TABLE b.other" },
]

[roles.app]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE a" } ]

[[bind]]
role = "intruder"
principals = ["mallory"]

[[bind]]
role = "app"
principals = ["alice"]
"#;

/// The registry bounded by entries and by bytes.
const PREPARED_CACHE: &str = "cql_prepared_cache 10000 size=8m;";

/// The row of `b.t` that mallory must never read, nor see joined by rows of its own.
const SECRET: &str = "secret";

/// The signing key the proxy trusts (ES256, kid `ec-1`) and the policy, made once per test
/// run and shared by every test.
struct Keys {
    dir: PathBuf,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = scratch_dir("hostile-keys");
        let out = dir.join("keys");
        let out = out.to_str().expect("a UTF-8 path");
        cql_token(&["keygen", "--kid", "ec-1", "--alg", "ES256", "--out", out]);
        std::fs::write(dir.join("policy.toml"), POLICY).expect("write the policy");
        Keys { dir }
    })
}

impl Keys {
    fn path(&self, name: &str) -> String {
        self.dir
            .join(name)
            .to_str()
            .expect("a UTF-8 path")
            .to_string()
    }

    /// A valid token for `sub`.
    fn token(&self, sub: &str) -> String {
        mint(&self.path("keys/ec-1.key"), sub)
    }
}

/// A token for `sub`, signed with a private key file.
fn mint(key: &str, sub: &str) -> String {
    cql_token(&[
        "mint", "--key", key, "--sub", sub, "--iss", ISSUER, "--aud", AUDIENCE,
    ])
}

/// The development server with keyspaces `a` and `b`, and NGINX gating it.
struct Gate {
    nginx: Nginx,
    server: DevServer,
    port: u16,
}

impl Gate {
    /// Starts both; `extra` goes into the server block (the audit log is always on unless
    /// `extra` names one).
    fn start(name: &str, extra: &str) -> Gate {
        Gate::start_listening(name, "", extra)
    }

    /// Starts both, with parameters of the `listen` directive (`sndbuf=16k`).
    fn start_listening(name: &str, listen: &str, extra: &str) -> Gate {
        let keys = keys();
        let server = DevServer::start(&[]);
        create_schema(server.port);
        let port = free_port();
        let audit = if extra.contains("cql_audit_log") {
            ""
        } else {
            "cql_audit_log logs/audit.log;"
        };
        let body = format!(
            "server {{\n\
                 listen 127.0.0.1:{port} {listen};\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 cql on;\n\
                 cql_auth jwt;\n\
                 cql_jwt_keys {jwks};\n\
                 cql_jwt_issuer {ISSUER};\n\
                 cql_jwt_audience {AUDIENCE};\n\
                 cql_policy {policy};\n\
                 {audit}\n\
                 {extra}\n\
             }}",
            upstream = server.port,
            jwks = keys.path("keys/jwks.json"),
            policy = keys.path("policy.toml"),
        );
        let nginx = Nginx::start(name, &body);
        Gate {
            nginx,
            server,
            port,
        }
    }

    /// A proxied connection of `user`, logged in with a valid token.
    fn login(&self, user: &str) -> Client {
        Client::login(self.port, user, &keys().token(user))
    }

    /// A proxied connection of mallory, logged in, in keyspace `a`.
    fn mallory_in_a(&self) -> Client {
        let mut mallory = self.login("mallory");
        let answer = mallory.request(cql::query(100, "USE a"));
        assert_eq!(answer, Response::SetKeyspace("a".into()));
        mallory
    }

    /// The partition keys of a table, read at the development server.
    fn keys_of(&self, table: &str) -> Vec<String> {
        let mut direct = Client::direct(self.server.port);
        match direct.request(cql::query(1, &format!("SELECT k FROM {table}"))) {
            Response::Rows(rows) => {
                let mut keys: Vec<String> = rows
                    .into_iter()
                    .map(|row| {
                        let cell = row.into_iter().next().flatten().unwrap_or_default();
                        String::from_utf8_lossy(&cell).into_owned()
                    })
                    .collect();
                keys.sort();
                keys
            }
            other => panic!("SELECT k FROM {table} at the devserver: {other:?}"),
        }
    }

    /// Fails unless `b.t` holds exactly the row put there at the start.
    fn assert_b_t_untouched(&self) {
        assert_eq!(
            self.keys_of("b.t"),
            [SECRET],
            "mallory wrote to b.t, which the policy forbids"
        );
    }

    /// The audit log's JSON lines.
    fn audit(&self) -> Vec<serde_json::Value> {
        self.nginx
            .read_log("audit.log")
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The audit lines of one connection, by its client port, once its summary is written
    /// (the connection ended, so every line of it is in).
    fn audit_of_ended(&self, client_port: u16) -> Vec<serde_json::Value> {
        let client = format!("127.0.0.1:{client_port}");
        wait_for(Duration::from_secs(10), || {
            let lines: Vec<_> = self
                .audit()
                .into_iter()
                .filter(|l| l["client"] == client.as_str())
                .collect();
            lines
                .iter()
                .any(|l| l["event"] == "session")
                .then_some(lines)
        })
        .unwrap_or_else(|| {
            panic!(
                "no session summary for {client} in the audit log:\n{}",
                self.nginx.read_log("audit.log")
            )
        })
    }

    /// The single worker's resident memory, in KiB.
    fn worker_rss_kib(&self) -> u64 {
        let workers = self.nginx.worker_pids();
        let [worker] = workers[..] else {
            panic!("expected one worker, found {workers:?}");
        };
        let status = harness::read_or_empty(&PathBuf::from(format!("/proc/{worker}/status")));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{worker}/status"))
    }

    fn audit_bytes(&self) -> u64 {
        std::fs::metadata(self.nginx.prefix.join("logs/audit.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// Keyspaces `a` and `b`, tables `a.t`, `b.t` (with the secret row) and `b.other`, made at
/// the development server directly.
fn create_schema(port: u16) {
    let mut direct = Client::direct(port);
    for (stream, statement) in (1..).zip([
        "CREATE KEYSPACE a WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE KEYSPACE b WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE a.t (k text PRIMARY KEY, v text)",
        "CREATE TABLE b.t (k text PRIMARY KEY, v text)",
        "CREATE TABLE b.other (k text PRIMARY KEY, v text)",
        "INSERT INTO b.t (k, v) VALUES ('secret', 'b-data')",
    ]) {
        let answer = direct.request(cql::query(stream, statement));
        assert!(
            matches!(answer, Response::SchemaChange | Response::Void),
            "{statement}: {answer:?}"
        );
    }
}

/// The id the development server gives `text` prepared in `keyspace` (it is stable: MD5
/// of keyspace and text, as in Cassandra).
fn server_prepared_id(port: u16, keyspace: &str, text: &str) -> Vec<u8> {
    let mut direct = Client::direct(port);
    let answer = direct.request(cql::query(1, &format!("USE {keyspace}")));
    assert_eq!(answer, Response::SetKeyspace(keyspace.into()));
    match direct.request(cql::prepare(2, text)) {
        Response::Prepared(id) => id,
        other => panic!("PREPARE {text} at the devserver: {other:?}"),
    }
}

/// Whether a frame carries b.t's secret row.
fn leaks_secret(frame: &Frame) -> bool {
    frame
        .body
        .windows(SECRET.len())
        .any(|w| w == SECRET.as_bytes())
}

fn requests(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    lines.iter().filter(|l| l["event"] == "request").collect()
}

// ---------------------------------------------------------------------------------------
// Keyspace desync
// ---------------------------------------------------------------------------------------

#[test]
fn a_request_on_a_stream_that_has_one_in_flight_is_refused_and_the_connection_closed() {
    let gate = Gate::start("hostile-same-stream", "");
    let insert = "INSERT INTO t (k, v) VALUES ('same-stream', 'x')";
    let mut mallory = gate.mallory_in_a();
    let port = mallory.local_port();
    mallory
        .send(&[cql::query(5, "USE b"), cql::prepare(5, insert)])
        .expect("send USE b and PREPARE on one stream");
    // At most the two answers, then the end of the connection.
    let (frames, ended) = mallory.read_until_end(Duration::from_secs(5), |frames| {
        frames.len() >= 2 && !frames.iter().any(|f| f.opcode == cql::opcode::ERROR)
    });
    // Were the connection still open, its keyspace would now disagree with the server's.
    let _ = mallory.send(&[cql::query(6, insert)]);
    let _ = mallory.read_until_end(Duration::from_secs(2), |f| !f.is_empty());
    // And the server's id of the INSERT in b must not be held for a statement of a.
    let id = server_prepared_id(gate.server.port, "b", insert);
    let mut again = gate.mallory_in_a();
    let executed = again.request(cql::execute(7, &id));
    drop(again);

    gate.assert_b_t_untouched();
    assert_ne!(executed, Response::Void, "the INSERT into b.t ran");
    let refusal = frames
        .iter()
        .find(|f| f.opcode == cql::opcode::ERROR)
        .unwrap_or_else(|| panic!("no ERROR; the proxy answered {frames:?}"));
    assert_eq!(refusal.stream, 5, "{refusal:?}");
    let answer = refusal.response().expect("an ERROR body");
    assert!(
        answer.is_error(code::PROTOCOL_ERROR, "already has a request in flight"),
        "{answer:?}"
    );
    assert!(
        ended.by_peer(),
        "the connection stays open ({ended:?}) after {frames:?}"
    );
    let log = gate.nginx.error_log();
    assert!(
        log.lines()
            .any(|l| l.contains("cql: closing connection:") && l.contains("in flight")),
        "{log}"
    );
    let lines = gate.audit_of_ended(port);
    assert!(
        lines.iter().any(|l| l["event"] == "violation"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("in flight"))),
        "{lines:#?}"
    );
}

#[test]
fn with_stream_reuse_wait_a_reused_stream_waits_for_its_answer_and_keeps_the_connection() {
    let gate = Gate::start("hostile-same-stream-wait", "cql_stream_reuse wait;");
    let insert = "INSERT INTO t (k, v) VALUES ('same-stream', 'x')";
    let mut mallory = gate.mallory_in_a();
    mallory
        .send(&[cql::query(5, "USE b"), cql::prepare(5, insert)])
        .expect("send USE b and PREPARE on one stream");
    // Both answers on stream 5, in order: the PREPARE went on only after the USE was
    // answered, so it was decided in b, where mallory may not write.
    let first = mallory.expect_frame();
    let second = mallory.expect_frame();
    assert_eq!((first.stream, second.stream), (5, 5));
    assert_eq!(first.response(), Ok(Response::SetKeyspace("b".into())));
    let denied = second.response().expect("an answer");
    assert!(
        denied.is_error(code::UNAUTHORIZED, "<table b.t>"),
        "{denied:?}"
    );
    // The connection goes on.
    assert_eq!(
        mallory.request(cql::query(6, "SELECT * FROM b.other")),
        Response::Rows(Vec::new())
    );
    gate.assert_b_t_untouched();
}

#[test]
fn requests_behind_a_keyspace_change_are_decided_in_the_keyspace_it_sets() {
    let gate = Gate::start("hostile-behind-use", "");
    let mut mallory = gate.login("mallory");
    let port = mallory.local_port();
    assert_eq!(
        mallory.request(cql::query(1, "USE a")),
        Response::SetKeyspace("a".into())
    );

    // QUERY USE b, then a write and a read of t in the same write: both are b.t's.
    mallory
        .send(&[
            cql::query(2, "USE b"),
            cql::query(3, "INSERT INTO t (k, v) VALUES ('after-use', 'x')"),
            cql::query(4, "SELECT * FROM t"),
        ])
        .expect("send");
    let answers = mallory.answers(&[2, 3, 4]);
    assert_eq!(answers[0], Response::SetKeyspace("b".into()));
    assert_eq!(
        answers[1].error_code(),
        Some(code::UNAUTHORIZED),
        "INSERT INTO t after USE b: {:?}",
        answers[1]
    );
    assert_eq!(
        answers[2].error_code(),
        Some(code::UNAUTHORIZED),
        "SELECT * FROM t after USE b: {:?}",
        answers[2]
    );

    // A prepared USE b run by EXECUTE moves the keyspace as well.
    assert_eq!(
        mallory.request(cql::query(5, "USE a")),
        Response::SetKeyspace("a".into())
    );
    let Response::Prepared(use_b) = mallory.request(cql::prepare(6, "USE b")) else {
        panic!("PREPARE USE b was not prepared");
    };
    mallory
        .send(&[
            cql::execute(7, &use_b),
            cql::query(8, "INSERT INTO t (k, v) VALUES ('after-execute', 'x')"),
            cql::query(9, "SELECT * FROM t"),
        ])
        .expect("send");
    let answers = mallory.answers(&[7, 8, 9]);
    assert_eq!(answers[0], Response::SetKeyspace("b".into()));
    assert_eq!(
        answers[1].error_code(),
        Some(code::UNAUTHORIZED),
        "INSERT INTO t after EXECUTE of USE b: {:?}",
        answers[1]
    );
    assert_eq!(
        answers[2].error_code(),
        Some(code::UNAUTHORIZED),
        "SELECT * FROM t after EXECUTE of USE b: {:?}",
        answers[2]
    );
    let later = mallory.request(cql::query(10, "INSERT INTO t (k, v) VALUES ('later', 'x')"));
    assert_eq!(later.error_code(), Some(code::UNAUTHORIZED), "{later:?}");
    drop(mallory);
    gate.assert_b_t_untouched();

    // One audit line per request, the USEs included, each in the keyspace it ran in.
    let lines = gate.audit_of_ended(port);
    let requests = requests(&lines);
    for stream in 1..=10 {
        let of_stream: Vec<_> = requests.iter().filter(|l| l["stream"] == stream).collect();
        assert_eq!(of_stream.len(), 1, "stream {stream}: {requests:#?}");
    }
    assert_eq!(requests.len(), 10, "{requests:#?}");
    let line = |stream: i64| {
        requests
            .iter()
            .find(|l| l["stream"] == stream)
            .expect("a line per stream")
    };
    for stream in [1, 2, 5] {
        assert_eq!(line(stream)["type"], "USE_KEYSPACE", "{:?}", line(stream));
    }
    for stream in [3, 4, 8, 9, 10] {
        let l = line(stream);
        assert_eq!(
            serde_json::json!([l["keyspace"], l["table"], l["decision"]]),
            serde_json::json!(["b", "t", "deny"]),
            "{l}"
        );
    }
}

#[test]
fn a_prepare_behind_use_is_decided_in_the_new_keyspace_and_its_id_never_held_for_another() {
    let gate = Gate::start("hostile-prepare-behind-use", "");
    let select = "SELECT * FROM t";
    let mut mallory = gate.mallory_in_a();
    mallory
        .send(&[cql::query(1, "USE b"), cql::prepare(2, select)])
        .expect("send");
    let answers = mallory.answers(&[1, 2]);
    assert_eq!(answers[0], Response::SetKeyspace("b".into()));
    assert_eq!(
        answers[1].error_code(),
        Some(code::UNAUTHORIZED),
        "PREPARE {select} after USE b: {:?}",
        answers[1]
    );
    drop(mallory);

    // The server's id of the statement in b: another connection of mallory, in a, runs it.
    let id = server_prepared_id(gate.server.port, "b", select);
    let mut again = gate.mallory_in_a();
    again.send(&[cql::execute(3, &id)]).expect("send");
    let executed = again.expect_frame();
    assert!(!leaks_secret(&executed), "b.t's row reached mallory");
    let answer = executed.response().expect("an answer");
    assert!(
        matches!(
            answer.error_code(),
            Some(code::UNPREPARED | code::UNAUTHORIZED)
        ),
        "EXECUTE of b's id: {answer:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------------------

/// How long the non-reading clients flood.
const FLOOD_FOR: Duration = Duration::from_secs(20);
/// Bounds that hold during and after the floods.
const MAX_RSS_GROWTH_KIB: u64 = 16 * 1024;
const MAX_AUDIT_BYTES: u64 = 8 * 1024 * 1024;
/// The legitimate client's requests, spread over the flood.
const LEGIT_REQUESTS: usize = 200;
const LEGIT_PACE: Duration = Duration::from_millis(70);

/// What a flooding client saw.
#[derive(Debug)]
struct Flood {
    bytes_sent: u64,
    /// When the proxy ended the connection, and how the writes failed.
    ended: Option<(Duration, std::io::ErrorKind)>,
}

/// Writes `pattern` over and over without ever reading, until the proxy ends the
/// connection, `stop` is set, or `FLOOD_FOR` passes.
fn flood(mut client: Client, pattern: Vec<u8>, stop: &AtomicBool) -> Flood {
    let start = Instant::now();
    let socket = client.socket();
    socket
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("write timeout");
    let mut offset = 0;
    let mut bytes_sent = 0;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD_FOR {
        match std::io::Write::write(socket, &pattern[offset..]) {
            Ok(0) => {
                return Flood {
                    bytes_sent,
                    ended: Some((start.elapsed(), std::io::ErrorKind::WriteZero)),
                }
            }
            Ok(n) => {
                bytes_sent += n as u64;
                offset = (offset + n) % pattern.len();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                return Flood {
                    bytes_sent,
                    ended: Some((start.elapsed(), e.kind())),
                }
            }
        }
    }
    Flood {
        bytes_sent,
        ended: None,
    }
}

#[test]
fn clients_that_never_read_cannot_grow_the_worker_nor_the_audit_log_nor_slow_others() {
    // The kernel would buffer megabytes of the proxy's answers toward a client that never
    // reads (send buffers grow with loopback's 64 KiB segments): a fixed send buffer keeps
    // them small, so what is measured is the proxy's own queue.
    let gate = Gate::start_listening("hostile-flood", "sndbuf=16k", "");
    let mut alice = gate.login("alice");
    assert!(matches!(
        alice.request(cql::query(1, "SELECT * FROM a.t")),
        Response::Rows(_)
    ));

    // Bad logins, after the AUTHENTICATE the proxy asks with.
    let mut bad_logins = Client::connect(gate.port);
    bad_logins.set_receive_buffer(4096);
    let bad_port = bad_logins.local_port();
    bad_logins.send(&[cql::startup(0)]).expect("STARTUP");
    let asked = bad_logins.expect_frame();
    assert_eq!(asked.opcode, cql::opcode::AUTHENTICATE, "{asked:?}");
    let wrong = cql::concat(
        &(1..=256)
            .map(|stream| cql::auth_response(stream, "mallory", "wrong-token"))
            .collect::<Vec<_>>(),
    );

    // Denied requests, after a valid login; stream ids are reused only after 1024 requests,
    // each answered by the proxy at once.
    let denied_requests = gate.login("mallory");
    denied_requests.set_receive_buffer(4096);
    let denied = cql::concat(
        &(1..=1024)
            .map(|stream| cql::query(stream, "SELECT * FROM b.t"))
            .collect::<Vec<_>>(),
    );

    let rss_before = gate.worker_rss_kib();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (bad, denied, latencies, rss_peak, audit_peak) = std::thread::scope(|scope| {
        let bad = scope.spawn(|| flood(bad_logins, wrong, &stop));
        let denied = scope.spawn(|| flood(denied_requests, denied, &stop));
        let mut latencies = Vec::new();
        let (mut rss_peak, mut audit_peak) = (rss_before, 0);
        let mut next = 0;
        while start.elapsed() < FLOOD_FOR && !stop.load(Ordering::Relaxed) {
            rss_peak = rss_peak.max(gate.worker_rss_kib());
            audit_peak = audit_peak.max(gate.audit_bytes());
            if rss_peak - rss_before > MAX_RSS_GROWTH_KIB || audit_peak > MAX_AUDIT_BYTES {
                // Already failed: stop before the worker and the disk fill up.
                stop.store(true, Ordering::Relaxed);
            }
            if next < LEGIT_REQUESTS {
                let stream = i16::try_from(next % 1000 + 2).expect("a stream id");
                let sent = Instant::now();
                alice
                    .send(&[cql::query(stream, "SELECT * FROM a.t")])
                    .expect("alice sends");
                let answer = alice.recv(Duration::from_secs(5));
                latencies.push(answer.ok().map(|f| (f.stream == stream, sent.elapsed())));
                next += 1;
            }
            std::thread::sleep(LEGIT_PACE);
        }
        stop.store(true, Ordering::Relaxed);
        let bad = bad.join().expect("the bad-login flood");
        let denied = denied.join().expect("the denied-request flood");
        (bad, denied, latencies, rss_peak, audit_peak)
    });
    let rss_after = gate.worker_rss_kib();
    let audit_after = gate.audit_bytes();
    let mut answered: Vec<Duration> = latencies
        .iter()
        .filter_map(|l| l.filter(|(same_stream, _)| *same_stream).map(|(_, t)| t))
        .collect();
    answered.sort();
    let median = answered.get(answered.len() / 2).copied();
    eprintln!(
        "flood: bad logins sent {} bytes, ended {:?}; denied requests sent {} bytes, ended \
         {:?}; worker RSS {rss_before} KiB before, {rss_peak} KiB at most, {rss_after} KiB \
         after; audit log {audit_peak} bytes at most; alice: {} of {} answered, median \
         {median:?}",
        bad.bytes_sent,
        bad.ended,
        denied.bytes_sent,
        denied.ended,
        answered.len(),
        latencies.len()
    );

    let Some((closed_after, _)) = bad.ended else {
        panic!("the proxy kept reading bad logins for {FLOOD_FOR:?}: {bad:?}");
    };
    assert!(closed_after < Duration::from_secs(5), "{bad:?}");
    let bad_lines = gate.audit_of_ended(bad_port);
    let failed_logins = bad_lines
        .iter()
        .filter(|l| l["event"] == "login" && l["type"] == "LOGIN_ERROR")
        .count();
    assert_eq!(failed_logins, 3, "{bad_lines:#?}");
    let log = gate.nginx.error_log();
    assert!(
        log.lines()
            .any(|l| l.contains("cql:") && l.to_ascii_lowercase().contains("attempt")),
        "{log}"
    );
    assert!(
        rss_peak.max(rss_after) - rss_before < MAX_RSS_GROWTH_KIB,
        "the worker grew from {rss_before} KiB to {rss_peak} KiB"
    );
    assert!(
        audit_peak.max(audit_after) < MAX_AUDIT_BYTES,
        "the audit log grew to {audit_peak} bytes"
    );
    assert_eq!(
        answered.len(),
        LEGIT_REQUESTS,
        "alice's requests went unanswered: {latencies:?}"
    );
    let median = median.expect("answers");
    assert!(
        median < Duration::from_millis(50),
        "alice's median latency {median:?}"
    );
}

#[test]
fn pipelined_forged_tokens_get_three_refusals_then_the_connection_ends() {
    // An RSA key the proxy trusts too (kid rsa-1): forged RS256 tokens cost an RSA verify.
    let dir = scratch_dir("hostile-forged-keys");
    let rsa = dir.to_str().expect("a UTF-8 path");
    cql_token(&["keygen", "--kid", "rsa-1", "--alg", "RS256", "--out", rsa]);
    let gate = Gate::start("hostile-forged", &format!("cql_jwt_keys {rsa}/jwks.json;"));
    // mallory's claims under the signature of alice's token: what a forger without the
    // key sends. Its signature is checked, and does not verify.
    let key = format!("{rsa}/rsa-1.key");
    let (alice, mallory) = (mint(&key, "alice"), mint(&key, "mallory"));
    let (Some((_, signature)), Some((claims, _))) =
        (alice.rsplit_once('.'), mallory.rsplit_once('.'))
    else {
        panic!("tokens without a signature: {alice} {mallory}");
    };
    let forged = format!("{claims}.{signature}");
    harness::never_logged(&forged);
    let mut client = Client::connect(gate.port);
    client.send(&[cql::startup(0)]).expect("STARTUP");
    let asked = client.expect_frame();
    assert_eq!(asked.opcode, cql::opcode::AUTHENTICATE, "{asked:?}");
    let tokens: Vec<Frame> = (1..=1000)
        .map(|stream| cql::auth_response(stream, "mallory", &forged))
        .collect();
    // The proxy may end the connection while this is being written.
    let _ = client.send(&tokens);
    let refusals = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| {
                f.response()
                    .is_ok_and(|r| r.error_code() == Some(code::BAD_CREDENTIALS))
            })
            .count()
    };
    let (frames, ended) = client.read_until_end(Duration::from_secs(10), |f| refusals(f) > 3);
    let refused = refusals(&frames);
    assert!(
        (1..=3).contains(&refused),
        "{refused} refusals (reading stops at 4): {:?}",
        frames.first()
    );
    assert!(ended.by_peer(), "the connection stays open: {ended:?}");
    let first = frames.first().and_then(|f| f.response().ok());
    assert!(
        first
            .as_ref()
            .is_some_and(|r| r.is_error(code::BAD_CREDENTIALS, "token signature does not verify")),
        "{first:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Handshake, registry, fail-closed logins, unparsable statements, refusals between frames
// ---------------------------------------------------------------------------------------

#[test]
fn a_client_that_does_not_log_in_is_closed_at_the_handshake_deadline() {
    let gate = Gate::start("hostile-auth-timeout", "cql_auth_timeout 1s;");
    let mut client = Client::connect(gate.port);
    let start = Instant::now();
    client.send(&[cql::startup(0)]).expect("STARTUP");
    let asked = client.expect_frame();
    assert_eq!(asked.opcode, cql::opcode::AUTHENTICATE, "{asked:?}");
    let (_, ended) = client.read_until_end(Duration::from_secs(10), |_| false);
    let after = start.elapsed();
    assert!(ended.by_peer(), "still open after {after:?}");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    let log = gate.nginx.error_log();
    assert!(
        log.lines().any(|l| l.contains("cql: closing connection:")
            && l.to_ascii_lowercase().contains("authenticate")),
        "{log}"
    );
}

#[test]
fn the_prepared_registry_is_bounded_by_bytes() {
    // The statement text stays for the audit log; redacted, its lines stay small.
    let gate = Gate::start(
        "hostile-registry",
        &format!("{PREPARED_CACHE}\ncql_audit_redact_literals on;"),
    );
    // 48 MB of statements, 6 times the bound. Each is made large by a comment, which the
    // proxy and the server skip quickly even in a debug build (a literal as large costs
    // each of them a third of a second to lex).
    const STATEMENTS: usize = 48;
    const COMMENT: usize = 1024 * 1024;
    // What the worker may grow by: the bound, its connection's buffers, allocator slack
    // (about 17 MB with the bound of 8 MB; about 57 MB without a bound).
    const MAX_GROWTH_KIB: u64 = 32 * 1024;
    let mut mallory = gate.login("mallory");
    let port = mallory.local_port();
    let rss_before = gate.worker_rss_kib();
    let mut comment = "x".repeat(COMMENT);
    for i in 0..STATEMENTS {
        // Each statement distinct: its number at the start of the comment.
        let number = format!("{i:06}");
        comment.replace_range(..number.len(), &number);
        let text = format!("SELECT * FROM a.t WHERE k = ? /* {comment} */");
        let answer = mallory.request(cql::prepare(1, &text));
        assert!(
            matches!(answer, Response::Prepared(_)),
            "PREPARE {i}: {answer:?}"
        );
    }
    drop(mallory);
    gate.audit_of_ended(port);
    let rss_after = gate.worker_rss_kib();
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("registry: worker RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        growth < MAX_GROWTH_KIB,
        "{STATEMENTS} prepared statements of {COMMENT} bytes grew the worker by {growth} KiB"
    );
}

#[test]
fn an_identity_no_binding_gives_a_role_is_refused() {
    let gate = Gate::start("hostile-unbound", "");
    let mut client = Client::connect(gate.port);
    let answer = client.try_login("nobody", &keys().token("nobody"));
    assert!(
        answer.is_error(code::BAD_CREDENTIALS, "no role is bound to principal"),
        "{answer:?}"
    );
    assert!(
        matches!(&answer, Response::Error { message, .. } if message.contains("nobody")),
        "{answer:?}"
    );
}

#[test]
fn a_statement_the_proxy_cannot_parse_is_a_syntax_error_and_never_forwarded() {
    let gate = Gate::start("hostile-syntax", "");
    let mut mallory = gate.login("mallory");
    let port = mallory.local_port();
    // Cassandra's grammar needs a line end after a `--` comment: this is not a statement.
    let commented = "INSERT INTO a.t (k) VALUES ('x') --";
    mallory
        .send(&[cql::query(1, "SELEC * FROM a.t"), cql::query(2, commented)])
        .expect("send");
    let answers = mallory.answers(&[1, 2]);
    drop(mallory);
    assert!(
        gate.keys_of("a.t").is_empty(),
        "{commented:?} reached the server"
    );
    for answer in &answers {
        assert_eq!(answer.error_code(), Some(code::SYNTAX_ERROR), "{answer:?}");
    }
    let lines = gate.audit_of_ended(port);
    let requests = requests(&lines);
    for stream in [1, 2] {
        assert!(
            requests
                .iter()
                .any(|l| l["stream"] == stream && l["decision"] == "deny"),
            "stream {stream}: {requests:#?}"
        );
    }
}

#[test]
fn a_refusal_after_login_never_lands_inside_a_response() {
    let gate = Gate::start("hostile-refusal-between-frames", "");
    // About 12 MB of rows (the frame cap is 16 MiB), far more than the sockets between
    // the server and the client buffer.
    const ROWS: usize = 12;
    let value = "v".repeat(1024 * 1024);
    let mut direct = Client::direct(gate.server.port);
    for i in 0..ROWS {
        let insert = format!("INSERT INTO a.t (k, v) VALUES ('big-{i}', '{value}')");
        let stream = i16::try_from(i + 1).expect("a stream id");
        assert_eq!(direct.request(cql::query(stream, &insert)), Response::Void);
    }
    let mut mallory = gate.login("mallory");
    mallory
        .send(&[cql::query(1, "SELECT * FROM a.t")])
        .expect("SELECT");
    // Once the result is on its way, a STARTUP, which is not allowed after authentication
    // (sent with the SELECT in one write, it would be refused before the SELECT is forwarded,
    // and the result would never start).
    mallory
        .wait_for_bytes(cql::HEADER_LEN, cql::ANSWER_WITHIN)
        .expect("the result starts");
    mallory.send(&[cql::startup(2)]).expect("STARTUP");
    let (bytes, ended) = mallory.read_bytes_until_end(Duration::from_secs(10));
    let frames = cql::parse_responses(&bytes).unwrap_or_else(|e| {
        let refusal_at = bytes
            .windows(5)
            .position(|w| w == [cql::RESPONSE, 0, 0, 2, cql::opcode::ERROR]);
        panic!(
            "{} bytes that are not a sequence of whole frames, the answer to STARTUP at \
             offset {refusal_at:?}: {e}",
            bytes.len()
        )
    });
    assert!(ended.by_peer(), "the connection stays open: {ended:?}");
    let Some(result) = frames.iter().find(|f| f.stream == 1) else {
        panic!("no result: {frames:?}");
    };
    match result.response() {
        Ok(Response::Rows(rows)) => assert_eq!(rows.len(), ROWS),
        other => panic!("the result: {other:?}"),
    }
    // The test means something only if the refusal came while the result was under way:
    // NGINX's line about it counts the bytes sent to the client until then.
    let log = gate.nginx.error_log();
    let sent_before = log
        .lines()
        .find(|l| l.contains("cql: closing connection:") && l.contains("STARTUP"))
        .and_then(|l| l.split("bytes from/to client:").nth(1))
        .and_then(|counts| counts.split(['/', ',']).nth(1))
        .and_then(|to_client| to_client.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no line about the refusal: {log}"));
    assert!(
        sent_before < result.body.len(),
        "the result was sent whole ({sent_before} bytes) before the refusal: a test of nothing"
    );
    let refusal = frames
        .iter()
        .find(|f| f.stream == 2)
        .unwrap_or_else(|| panic!("no answer to STARTUP: {frames:?}"));
    assert_eq!(
        refusal.response().ok().and_then(|r| r.error_code()),
        Some(code::PROTOCOL_ERROR),
        "{refusal:?}"
    );
}
