//! Faster must not mean lossier (issue 17): under load, across `nginx -s reload`, a
//! logrotate-style rename and `nginx -s reopen`, and `nginx -s quit` with requests in flight,
//! a buffered audit log holds exactly one line per decided request.
//!
//! NGINX runs two workers with `worker_shutdown_timeout 1s` and one audit file
//! (`buffer=64k flush=1m`: a line reaches the file only when the buffer fills, before a
//! reopen and at worker exit, never by the timer during the test) shared by two servers:
//! one in front of the development server, one in front of a *valve*, a relay of this test
//! to the development server that stops passing answers back when told. Through the valve a
//! connection's allowed requests are held in flight by the proxy (forwarded, unanswered) when
//! the quit comes, so the shutdown timeout closes them and each must get its `no_response`
//! line. Every request carries a unique key literal in its statement, which names it in the
//! audit log; every line must be whole JSON.

mod harness;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::cql::{self, code, Client, Ended, Frame, Response};
use harness::{cql_token, free_port, load_module_lines, scratch_dir, wait_for, DevServer, Nginx};

const ISSUER: &str = "https://idp.example.test/realms/ops";
const AUDIENCE: &str = "cassandra";

/// alice reads and writes keyspace `a`, and nothing of `b`.
const POLICY: &str = r#"
[roles.app]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE a" } ]

[[bind]]
role = "app"
principals = ["alice"]
"#;

/// Connections sending at once, each pipelining [`PIPELINE`] requests a round.
const LOAD_CLIENTS: usize = 4;
const PIPELINE: usize = 16;
/// Rounds per connection before it closes and the client connects again (so that
/// connections start on the workers of every configuration).
const ROUNDS_PER_CONNECTION: usize = 12;
/// Answers the clients must get between two signals.
const ANSWERS_PER_PHASE: usize = 600;
/// Allowed requests held in flight through the valve at the quit, and denials sent with them.
const HELD: usize = 24;
const HELD_DENIED: usize = 6;

/// One request a client sent.
#[derive(Clone, Debug)]
struct Sent {
    /// The key literal that names it in the audit log.
    key: String,
    stream: i16,
    /// Whether the policy allows it.
    allowed: bool,
    /// Sent through the valve, whose answers are held.
    held: bool,
    /// Its answer: `Some(None)` for a result, `Some(Some(code))` for an ERROR; `None` when
    /// the connection ended first.
    answer: Option<Option<i32>>,
}

/// What the clients sent.
#[derive(Default)]
struct Record {
    requests: Vec<Sent>,
    /// The client port of every connection that logged in (it names the connection in the
    /// audit log).
    sessions: Vec<u16>,
}

/// What every load client shares with the test.
#[derive(Default)]
struct Load {
    /// Answers received, by every client.
    answered: AtomicUsize,
    /// No new connection from here on (the quit is coming).
    stopping: AtomicBool,
    record: Mutex<Record>,
}

impl Load {
    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits until the clients got `more` answers after `from`.
    fn wait_for_answers(&self, from: usize, more: usize, during: &str) {
        let reached = wait_for(Duration::from_secs(15), || {
            (self.answered() >= from + more).then_some(())
        });
        assert!(
            reached.is_some(),
            "{during}: only {} answers of {more} came",
            self.answered() - from
        );
    }
}

/// The request with key `key` on `stream`: allowed (a read or a write of `a.t`) or denied (a
/// read of `b.t`).
fn request(key: &str, stream: i16, allowed: bool, write: bool) -> Frame {
    let text = match (allowed, write) {
        (true, false) => format!("SELECT v FROM a.t WHERE k = '{key}'"),
        (true, true) => format!("INSERT INTO a.t (k, v) VALUES ('{key}', 'v')"),
        (false, _) => format!("SELECT v FROM b.t WHERE k = '{key}'"),
    };
    cql::query(stream, &text)
}

/// The answer to a request: `None` for a RESULT, the code of an ERROR.
fn answer_of(frame: &Frame) -> Option<i32> {
    frame.response().ok().and_then(|r| r.error_code())
}

/// One load client: connections of [`ROUNDS_PER_CONNECTION`] pipelined rounds; once the quit
/// is coming, the last connection sends rounds until the shutdown timeout closes it.
fn load_client(id: usize, port: u16, token: &str, load: &Load) -> Result<(), String> {
    let mut seq = 0usize;
    while !load.stopping.load(Ordering::SeqCst) {
        let mut client = Client::login(port, "alice", token);
        load.record
            .lock()
            .map_err(|_| "poisoned")?
            .sessions
            .push(client.local_port());
        for round in 0.. {
            if round >= ROUNDS_PER_CONNECTION && !load.stopping.load(Ordering::SeqCst) {
                break;
            }
            let mut round: Vec<Sent> = Vec::with_capacity(PIPELINE);
            let mut frames = Vec::with_capacity(PIPELINE);
            for stream in (1..).take(PIPELINE) {
                let key = format!("c{id}n{seq}");
                let allowed = seq % 4 != 3;
                frames.push(request(&key, stream, allowed, seq % 4 == 2));
                round.push(Sent {
                    key,
                    stream,
                    allowed,
                    held: false,
                    answer: None,
                });
                seq += 1;
            }
            let sent = client.send(&frames);
            let mut ended = sent.is_err();
            let mut left = PIPELINE;
            while !ended && left > 0 {
                match client.recv(cql::ANSWER_WITHIN) {
                    Ok(frame) => {
                        let Some(sent) = round
                            .iter_mut()
                            .find(|s| s.stream == frame.stream && s.answer.is_none())
                        else {
                            return Err(format!("client {id}: an unexpected frame {frame:?}"));
                        };
                        sent.answer = Some(answer_of(&frame));
                        left -= 1;
                        load.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(Ended::TimedOut) => {
                        return Err(format!("client {id}: no answer within 10 s"));
                    }
                    Err(_) => ended = true,
                }
            }
            load.record
                .lock()
                .map_err(|_| "poisoned")?
                .requests
                .extend(round);
            if ended {
                break;
            }
        }
    }
    Ok(())
}

/// A relay from NGINX to the development server that passes every request on and the
/// server's answers back until [`Valve::hold`]; it counts the QUERY frames it passed on.
struct Valve {
    port: u16,
    held: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
}

impl Valve {
    fn start(upstream: u16) -> Valve {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the valve");
        let port = listener.local_addr().expect("valve address").port();
        let held = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (h, q) = (held.clone(), queries.clone());
        std::thread::spawn(move || {
            for proxy in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (h, q) = (h.clone(), q.clone());
                let (Ok(proxy_in), Ok(server_out)) = (proxy.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || relay_requests(proxy_in, server_out, &q));
                std::thread::spawn(move || relay_answers(server, proxy, &h));
            }
        });
        Valve {
            port,
            held,
            queries,
        }
    }

    /// From now on, answers stay at the valve.
    fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// NGINX to the server, counting QUERY envelopes (v4 headers: opcode at 4, length at 5..9).
fn relay_requests(mut from: TcpStream, mut to: TcpStream, queries: &AtomicUsize) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 || to.write_all(&chunk[..n]).is_err() {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(header) = pending.get(..cql::HEADER_LEN) {
            let length = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
            let whole = cql::HEADER_LEN + length as usize;
            if pending.len() < whole {
                break;
            }
            if header[4] == cql::opcode::QUERY {
                queries.fetch_add(1, Ordering::SeqCst);
            }
            pending.drain(..whole);
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The server to NGINX, until held: then the answers are read and dropped.
fn relay_answers(mut from: TcpStream, mut to: TcpStream, held: &AtomicBool) {
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        if !held.load(Ordering::SeqCst) && to.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
}

/// Keyspaces `a` and `b` with a table each, made at the development server directly.
fn create_schema(port: u16) {
    let mut direct = Client::direct(port);
    for (stream, statement) in (1..).zip([
        "CREATE KEYSPACE a WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE KEYSPACE b WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE a.t (k text PRIMARY KEY, v text)",
        "CREATE TABLE b.t (k text PRIMARY KEY, v text)",
    ]) {
        let answer = direct.request(cql::query(stream, statement));
        assert_eq!(answer, Response::SchemaChange, "{statement}");
    }
}

/// A gated server on `port` in front of `upstream`, writing the shared audit file.
fn server_block(dir: &Path, port: u16, upstream: u16) -> String {
    format!(
        "server {{\n\
             listen 127.0.0.1:{port};\n\
             proxy_pass 127.0.0.1:{upstream};\n\
             cql on;\n\
             cql_auth jwt;\n\
             cql_jwt_keys {jwks};\n\
             cql_jwt_issuer {ISSUER};\n\
             cql_jwt_audience {AUDIENCE};\n\
             cql_policy {policy};\n\
             cql_audit_log logs/audit.log buffer=64k flush=1m;\n\
         }}\n",
        jwks = dir.join("keys/jwks.json").display(),
        policy = dir.join("policy.toml").display(),
    )
}

/// Every line of the audit files, each of which must be whole JSON ending in `\n`.
fn audit_lines(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in a cut line: {:?}",
            file.display(),
            &text[text.len().saturating_sub(200)..]
        );
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{}: a cut or interleaved line ({e}): {line}",
                    file.display()
                )
            });
            lines.push(value);
        }
    }
    lines
}

/// The key literal of a request line's statement (its first quoted literal).
fn key_of(line: &serde_json::Value) -> Option<&str> {
    let statement = line["statement"].as_str()?;
    let start = statement.find('\'')? + 1;
    let len = statement.get(start..)?.find('\'')?;
    statement.get(start..start + len)
}

/// The client port of a line (`"client":"127.0.0.1:PORT"`).
fn port_of(line: &serde_json::Value) -> Option<u16> {
    line["client"].as_str()?.rsplit(':').next()?.parse().ok()
}

#[test]
fn every_decided_request_has_one_audit_line_across_reload_reopen_and_quit() {
    let started = Instant::now();
    let dir = scratch_dir("audit-lossless-keys");
    let keys = dir.join("keys");
    let keys = keys.to_str().expect("a UTF-8 path");
    cql_token(&["keygen", "--kid", "ec-1", "--alg", "ES256", "--out", keys]);
    std::fs::write(dir.join("policy.toml"), POLICY).expect("write the policy");
    let token = cql_token(&[
        "mint",
        "--key",
        &format!("{keys}/ec-1.key"),
        "--sub",
        "alice",
        "--iss",
        ISSUER,
        "--aud",
        AUDIENCE,
    ]);

    let server = DevServer::start(&[]);
    create_schema(server.port);
    let valve = Valve::start(server.port);
    let (port, held_port) = (free_port(), free_port());
    let config = format!(
        "{modules}\
         worker_processes 2;\n\
         worker_shutdown_timeout 1s;\n\
         error_log logs/error.log info;\n\
         pid logs/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         stream {{\n{load}{held}}}\n",
        modules = load_module_lines(),
        load = server_block(&dir, port, server.port),
        held = server_block(&dir, held_port, valve.port),
    );
    let nginx = Nginx::start_with_config("audit-lossless", &config);
    let logs = nginx.prefix.join("logs");
    let (audit, rotated) = (logs.join("audit.log"), logs.join("audit.log.1"));

    let load = Load::default();
    let held_requests = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..LOAD_CLIENTS)
            .map(|id| {
                let (load, token) = (&load, token.as_str());
                scope.spawn(move || load_client(id, port, token, load))
            })
            .collect();

        load.wait_for_answers(0, ANSWERS_PER_PHASE, "before the reload");
        harness::reload(&nginx.prefix, nginx.pid());
        load.wait_for_answers(load.answered(), ANSWERS_PER_PHASE, "after the reload");

        // As logrotate does: rename, then reopen; lines from then on go to a new file.
        std::fs::rename(&audit, &rotated).expect("rename the audit log");
        nginx.signal("reopen");
        let from = load.answered();
        wait_for(Duration::from_secs(10), || {
            let size = std::fs::metadata(&audit).ok()?.len();
            (size > 0).then_some(())
        })
        .expect("lines in the reopened audit log");
        load.wait_for_answers(from, ANSWERS_PER_PHASE, "after the reopen");

        // A connection whose allowed requests the proxy has forwarded and not seen answered.
        let mut held_client = Client::login(held_port, "alice", &token);
        let held_session = held_client.local_port();
        valve.hold();
        let mut held: Vec<Sent> = Vec::new();
        let mut frames = Vec::new();
        for i in 0..HELD + HELD_DENIED {
            let stream = i16::try_from(i + 1).expect("a small stream id");
            let key = format!("held{i}");
            let allowed = i < HELD;
            frames.push(request(&key, stream, allowed, false));
            held.push(Sent {
                key,
                stream,
                allowed,
                held: true,
                answer: None,
            });
        }
        let queries_before = valve.queries();
        held_client.send(&frames).expect("send the held requests");
        let denied_streams: Vec<i16> = held[HELD..].iter().map(|s| s.stream).collect();
        for (answer, stream) in held_client
            .answers(&denied_streams)
            .iter()
            .zip(&denied_streams)
        {
            assert!(
                answer.is_error(code::UNAUTHORIZED, "has no SELECT permission"),
                "held stream {stream}: {answer:?}"
            );
            if let Some(sent) = held.iter_mut().find(|s| s.stream == *stream) {
                sent.answer = Some(answer.error_code());
            }
        }
        wait_for(Duration::from_secs(10), || {
            (valve.queries() >= queries_before + HELD).then_some(())
        })
        .expect("the held requests reached the valve");

        // The quit, with the load still sending and the held requests in flight.
        load.stopping.store(true, Ordering::SeqCst);
        nginx.signal("quit");
        let master = PathBuf::from(format!("/proc/{}", nginx.pid()));
        wait_for(Duration::from_secs(10), || (!master.exists()).then_some(()))
            .expect("NGINX ended after the quit");
        for client in clients {
            let result = client.join().expect("a load client panicked");
            result.unwrap_or_else(|e| panic!("{e}"));
        }
        let (late, ended) = held_client.read_until_end(Duration::from_secs(5), |_| false);
        assert!(
            late.is_empty() && ended.by_peer(),
            "the held requests were answered: {late:?} ({ended:?})"
        );
        let mut record = load.record.lock().expect("the load record");
        record.sessions.push(held_session);
        held
    });

    let record = load.record.into_inner().expect("the load record");
    let lines = audit_lines(&[rotated.clone(), audit.clone()]);
    let mut by_key: HashMap<&str, Vec<&serde_json::Value>> = HashMap::new();
    for line in lines.iter().filter(|l| l["event"] == "request") {
        let key = key_of(line).unwrap_or_else(|| panic!("a request line without a key: {line}"));
        by_key.entry(key).or_default().push(line);
    }
    let requests: Vec<&Sent> = record.requests.iter().chain(&held_requests).collect();
    let mut answered = 0;
    for sent in &requests {
        let found = by_key.remove(sent.key.as_str()).unwrap_or_default();
        let Some(answer) = sent.answer else {
            // Unanswered: never read by the proxy (no line), or in flight at a close.
            assert!(
                found.len() <= 1,
                "{sent:?}: {} lines: {found:?}",
                found.len()
            );
            if sent.held {
                let [line] = found[..] else {
                    panic!("held {sent:?}: no no_response line");
                };
                assert_eq!(line["decision"], "allow", "{line}");
                assert_eq!(line["outcome"], "no_response", "{line}");
                assert!(line["latency_us"].is_null(), "{line}");
            }
            continue;
        };
        answered += 1;
        let [line] = found[..] else {
            panic!(
                "{sent:?} was answered and has {} audit lines: {found:?}",
                found.len()
            );
        };
        assert_eq!(line["stream"], sent.stream, "{sent:?}: {line}");
        if sent.allowed {
            assert_eq!(answer, None, "{sent:?} was refused");
            assert_eq!(line["decision"], "allow", "{line}");
            assert_eq!(line["outcome"], "success", "{line}");
        } else {
            assert_eq!(answer, Some(code::UNAUTHORIZED), "{sent:?}");
            assert_eq!(line["decision"], "deny", "{line}");
            assert!(line["reason"].is_string(), "{line}");
        }
    }
    assert!(
        by_key.is_empty(),
        "audit lines of requests never sent, or sent twice: {by_key:?}"
    );

    // One login and one summary per connection.
    let mut sessions: HashMap<u16, (usize, usize, usize)> = HashMap::new();
    for port in &record.sessions {
        sessions.entry(*port).or_default().0 += 1;
    }
    for line in &lines {
        let Some(port) = port_of(line) else {
            panic!("a line without its client: {line}");
        };
        let counts = sessions.entry(port).or_default();
        if line["event"] == "login" {
            counts.1 += 1;
        } else if line["event"] == "session" {
            counts.2 += 1;
        }
    }
    for (port, (opened, logins, summaries)) in &sessions {
        assert!(
            opened == logins && opened == summaries,
            "client port {port}: {opened} connections, {logins} login lines, {summaries} \
             session lines"
        );
    }

    let no_response = lines
        .iter()
        .filter(|l| l["outcome"] == "no_response")
        .count();
    let error_log = nginx.stop();
    assert!(
        !error_log.contains("[alert]") && !error_log.contains("[emerg]"),
        "{error_log}"
    );
    eprintln!(
        "{} requests sent, {answered} answered, {} audit lines ({} before the reopen), \
         {no_response} no_response, {} connections, in {:.1} s",
        requests.len(),
        lines.len(),
        audit_lines(&[rotated]).len(),
        record.sessions.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Over syslog, a line longer than the cap arrives as one datagram of at most 8192 bytes that
/// is still one JSON object: the statement is cut and marked, every other field is whole.
#[test]
fn a_syslog_line_over_the_cap_keeps_its_fields_and_marks_its_cut() {
    let dir = scratch_dir("audit-syslog-cap-keys");
    let keys = dir.join("keys");
    let keys = keys.to_str().expect("a UTF-8 path");
    cql_token(&["keygen", "--kid", "ec-1", "--alg", "ES256", "--out", keys]);
    std::fs::write(dir.join("policy.toml"), POLICY).expect("write the policy");
    let token = cql_token(&[
        "mint",
        "--key",
        &format!("{keys}/ec-1.key"),
        "--sub",
        "alice",
        "--iss",
        ISSUER,
        "--aud",
        AUDIENCE,
    ]);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a syslog receiver");
    udp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    let syslog_port = udp.local_addr().expect("receiver address").port();
    let server = DevServer::start(&[]);
    create_schema(server.port);
    let port = free_port();
    let body = server_block(&dir, port, server.port).replace(
        "cql_audit_log logs/audit.log buffer=64k flush=1m;",
        &format!("cql_audit_log syslog:server=127.0.0.1:{syslog_port},tag=cql;"),
    );
    let nginx = Nginx::start("audit-syslog-cap", &body);

    let mut client = Client::login(port, "alice", &token);
    let key = "é".repeat(10_000);
    let answer = client.request(request(&key, 7, true, false));
    assert_eq!(answer, Response::Rows(Vec::new()));
    drop(client);

    let mut datagram = vec![0u8; 64 * 1024];
    let line = loop {
        let n = udp.recv(&mut datagram).expect("a syslog datagram");
        let text = String::from_utf8(datagram[..n].to_vec()).expect("UTF-8");
        assert!(n <= 8192, "a datagram of {n} bytes");
        let json = text.split_once("cql: ").map_or("", |(_, json)| json);
        let line: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"));
        if line["event"] == "request" {
            break line;
        }
    };
    let statement = line["statement"].as_str().expect("a statement");
    assert!(
        statement.starts_with("SELECT v FROM a.t WHERE k = 'éé"),
        "{statement}"
    );
    let mark = statement.rfind("...[truncated ").expect("the mark");
    assert!(statement[mark..].ends_with(" bytes]"), "{statement}");
    assert_eq!(line["stream"], 7);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["outcome"], "success");
    assert_eq!(line["principal"], "alice");
    nginx.stop();
}
