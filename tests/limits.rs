//! Per-identity limits, guardrails, per-role upstream logins and dry run, as a user and an
//! attacker meet them: NGINX with two workers (`reuseport`) in front of the development
//! server in password mode, raw CQL connections where exact counts matter, and the Python
//! driver (`tests/clients/limits.py`, several principals in one process) where what a driver
//! does with an answer matters.
//!
//! - Limits: a principal over its request rate is answered Overloaded, the driver's retry
//!   policy is asked about an Overloaded error, another principal at the same time is not
//!   touched; the rate, the connections and the requests in flight of one principal are
//!   counted once for both workers.
//! - Guardrails: each bound refuses what is over it and lets through what is at it, with
//!   Invalid `Guardrail NAME violated: ...`; nothing refused reaches the server.
//! - Per-role upstream logins: the server sees the role's login for that principal's
//!   requests and the service login for the others'.
//! - Dry run: what would be refused reaches the server and the client gets its result; the
//!   audit log and the metrics say `would_deny`; a bad token is refused all the same.

mod harness;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use harness::cluster::{signing_key, DevCluster, Gate, PyDriver, Served, AUDIENCE, ISSUER};
use harness::cql::{self, opcode, Client, Frame, Response, ANSWER_WITHIN};
use harness::{
    cql_token, free_port, load_module_lines, metric_samples, never_logged, scrape_metrics,
    wait_for, Nginx,
};

/// ERROR 0x1001 Overloaded.
const OVERLOADED: i32 = 0x1001;
/// ERROR 0x0100 Bad credentials.
const BAD_CREDENTIALS: i32 = 0x0100;
/// Consistency ALL, as on the wire.
const ALL: u16 = 0x0005;

/// The service login of `cql_upstream_auth`, and the login of role shop_reader.
const SERVICE_LOGIN: &str = "svc_proxy";
const SERVICE_PASSWORD: &str = "s3rvice-proxy-pw";
const SHOP_LOGIN: &str = "svc_shop_reader";
const SHOP_PASSWORD: &str = "s3rvice-shop-reader-pw";

/// Who may do what. `guarded` carries every bound guardrail; `shop_reader` logs in to
/// Cassandra under a login of its own.
const POLICY: &str = r#"
[roles.app]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE a" } ]

[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE a" } ]

[roles.guarded]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE a" } ]
guardrails = { read_consistency = ["LOCAL_QUORUM", "QUORUM"], write_consistency = ["LOCAL_QUORUM"], max_page_size = 100, max_batch_statements = 3, max_batch_bytes = 1000, max_statement_bytes = 800 }

[roles.shop_reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
upstream_login = "svc_shop_reader"

[[bind]]
role = "app"
principals = ["alice", "bob", "carol", "dave", "erin", "frank", "dora"]

[[bind]]
role = "reader"
principals = ["dan"]

[[bind]]
role = "guarded"
principals = ["gina", "gwen"]

[[bind]]
role = "shop_reader"
principals = ["sam"]
"#;

/// The tables the tests read and write, one per purpose so that the server's record of a
/// table tells whose requests reached it.
const TABLES: &[&str] = &[
    "a.t",
    "a.g",
    "a.dry",
    "a.frank",
    "a.erin",
    "b.t",
    "shop.items",
];

/// `cql_limit_req zone=per_user burst=4` at one request a minute: a burst gets exactly
/// `BURST + 1` requests, however long the test takes (well under a minute).
const BURST: usize = 4;

// ---------------------------------------------------------------------------------------
// The setting: keys, policy, the development server in password mode, NGINX
// ---------------------------------------------------------------------------------------

/// Keys and policy, the upstream login files, and the development server (one node with a
/// control port) that accepts the service login and the role's login.
struct Fixture {
    gate: Gate,
    server: DevCluster,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let gate = Gate::new(name, POLICY);
        never_logged(SERVICE_PASSWORD);
        never_logged(SHOP_PASSWORD);
        let users = format!("{SERVICE_LOGIN}:{SERVICE_PASSWORD}\n{SHOP_LOGIN}:{SHOP_PASSWORD}\n");
        std::fs::write(gate.dir.join("devserver-users"), users).expect("write the logins");
        std::fs::write(gate.dir.join("service.password"), SERVICE_PASSWORD)
            .expect("write the service password");
        std::fs::write(
            gate.dir.join("upstream-credentials"),
            format!("{SHOP_LOGIN}:{SHOP_PASSWORD}\n"),
        )
        .expect("write the credentials file");
        let users_file = gate.path("devserver-users");
        let server = DevCluster::start_with(
            &["127.0.0.1"],
            &["--auth", "password", "--users-file", &users_file],
        );
        let mut setup = Client::login(server.port(), SERVICE_LOGIN, SERVICE_PASSWORD);
        let mut statements = Vec::new();
        for ks in ["a", "b", "shop"] {
            statements.push(format!(
                "CREATE KEYSPACE {ks} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ));
        }
        for table in TABLES {
            statements.push(format!("CREATE TABLE {table} (k int PRIMARY KEY, v text)"));
            statements.push(format!("INSERT INTO {table} (k, v) VALUES (0, 'zero')"));
        }
        for statement in &statements {
            let done = setup.request(cql::query(1, statement));
            assert!(done.error_code().is_none(), "{statement}: {done:?}");
        }
        drop(setup);
        server.reset();
        Fixture { gate, server }
    }

    /// NGINX with two workers, the metrics handler on `http`, `stream_extra` (zones) in the
    /// stream block and one gated server per entry: (name, port, upstream port, directives).
    /// Each server has its own audit log (`logs/NAME-audit.log`) and an access log of
    /// `$pid $remote_port $cql_principal` (`logs/NAME-workers.log`).
    fn nginx(
        &self,
        name: &str,
        http: u16,
        stream_extra: &str,
        servers: &[(&str, u16, u16, &str)],
    ) -> Nginx {
        let mut blocks = String::new();
        for (server, port, upstream, directives) in servers {
            blocks.push_str(&format!(
                "server {{\n\
                     listen 127.0.0.1:{port} reuseport;\n\
                     proxy_pass 127.0.0.1:{upstream};\n\
                     cql on;\n\
                     cql_auth jwt;\n\
                     cql_jwt_keys {keys};\n\
                     cql_jwt_issuer {ISSUER};\n\
                     cql_jwt_audience {AUDIENCE};\n\
                     cql_policy {policy};\n\
                     cql_upstream_auth {SERVICE_LOGIN} {password};\n\
                     cql_upstream_credentials {credentials};\n\
                     cql_audit_log logs/{server}-audit.log;\n\
                     access_log logs/{server}-workers.log workers;\n\
                     {directives}\n\
                 }}\n",
                keys = self.gate.path("keys/jwks.json"),
                policy = self.gate.path("policy.toml"),
                password = self.gate.path("service.password"),
                credentials = self.gate.path("upstream-credentials"),
            ));
        }
        let config = format!(
            "{modules}\
             worker_processes 2;\n\
             error_log logs/error.log info;\n\
             pid logs/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             stream {{\n\
                 cql_metrics_zone limits:1m roles=8 keyspaces=8;\n\
                 log_format workers '$pid $remote_port $cql_principal';\n\
                 {stream_extra}\n\
                 {blocks}\
             }}\n\
             http {{\n\
                 access_log off;\n\
                 server {{\n\
                     listen 127.0.0.1:{http};\n\
                     location = /metrics {{ cql_metrics limits; }}\n\
                 }}\n\
             }}\n",
            modules = load_module_lines(),
        );
        Nginx::start_with_config(name, &config)
    }

    /// A token for `sub`, valid for an hour.
    fn token(&self, sub: &str) -> String {
        self.gate.token(sub)
    }

    /// The requests the server served on `table` since the last reset.
    fn served_on(&self, table: &str) -> Vec<Served> {
        self.server
            .served()
            .into_iter()
            .filter(|s| s.table.as_deref() == Some(table))
            .collect()
    }

    /// How many `opcode` requests on `table` the server served since the last reset.
    fn served_count(&self, table: &str, opcode: &str) -> usize {
        self.served_on(table)
            .iter()
            .filter(|s| s.opcode == opcode)
            .count()
    }
}

// ---------------------------------------------------------------------------------------
// Metrics, audit lines, workers
// ---------------------------------------------------------------------------------------

/// A series of a server: `name{server="127.0.0.1:PORT",labels}`.
fn series(port: u16, name: &str, labels: &str) -> String {
    if labels.is_empty() {
        format!("{name}{{server=\"127.0.0.1:{port}\"}}")
    } else {
        format!("{name}{{server=\"127.0.0.1:{port}\",{labels}}}")
    }
}

/// The sum of every series of `name` of a server whose labels contain `filter`.
fn sum_of(samples: &BTreeMap<String, f64>, port: u16, name: &str, filter: &str) -> f64 {
    let prefix = format!("{name}{{server=\"127.0.0.1:{port}\"");
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && k.contains(filter))
        .map(|(_, v)| v)
        .sum()
}

/// Waits until every (server port, name, labels, value) holds; fails naming those that do
/// not, with the exposition.
fn expect_metrics(http: u16, expected: &[(u16, &str, &str, f64)]) {
    let mut last = String::new();
    let settled = wait_for(Duration::from_secs(10), || {
        last = scrape_metrics(http);
        let s = metric_samples(&last);
        expected
            .iter()
            .all(|(port, name, labels, value)| s.get(&series(*port, name, labels)) == Some(value))
            .then_some(())
    });
    if settled.is_none() {
        let s = metric_samples(&last);
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|(port, name, labels, value)| {
                let key = series(*port, name, labels);
                let got = s.get(&key);
                (got != Some(value)).then(|| format!("{key}: expected {value}, got {got:?}"))
            })
            .collect();
        panic!("metrics:\n{}\n--- exposition\n{last}", wrong.join("\n"));
    }
}

/// The audit lines of a server, parsed.
fn audit(nginx: &Nginx, server: &str) -> Vec<Value> {
    nginx
        .read_log(&format!("{server}-audit.log"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Request lines of `principal` with `decision` (`allow`, `deny`, `would_deny`).
fn decided<'a>(lines: &'a [Value], principal: &str, decision: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| {
            l["event"] == "request" && l["principal"] == principal && l["decision"] == decision
        })
        .collect()
}

/// The text of a string field, or "".
fn text<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field].as_str().unwrap_or("")
}

/// Waits until the server's access log (`$pid $remote_port $cql_principal`) has a line for
/// each of `ports` (NGINX writes it when the connection ends): the worker pid of each.
fn workers_of(nginx: &Nginx, server: &str, ports: &[u16]) -> HashMap<u16, String> {
    let name = format!("{server}-workers.log");
    let read = || -> HashMap<u16, String> {
        nginx
            .read_log(&name)
            .lines()
            .filter_map(|l| {
                let mut fields = l.split(' ');
                let pid = fields.next()?.to_string();
                let port = fields.next()?.parse().ok()?;
                Some((port, pid))
            })
            .collect()
    };
    wait_for(Duration::from_secs(10), || {
        let seen = read();
        ports.iter().all(|p| seen.contains_key(p)).then_some(seen)
    })
    .unwrap_or_else(|| {
        panic!(
            "the access log has no line for some of {ports:?}:\n{}",
            nginx.read_log(&name)
        )
    })
}

// ---------------------------------------------------------------------------------------
// Raw requests
// ---------------------------------------------------------------------------------------

/// QUERY of `text` at consistency `level`, no flags.
fn query_at(stream: i16, text: &str, level: u16) -> Frame {
    let mut body = Vec::new();
    body.extend_from_slice(&u32::try_from(text.len()).expect("short").to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    body.extend_from_slice(&level.to_be_bytes());
    body.push(0);
    Frame::request(stream, opcode::QUERY, body)
}

fn is_rows(r: &Response) -> bool {
    matches!(r, Response::Rows(_))
}

/// Fails unless the connection ends (the peer closes or resets it) within the answer time.
fn assert_ended(client: &mut Client, what: &str) {
    let (frames, ended) = client.read_until_end(ANSWER_WITHIN, |_| false);
    assert!(
        ended.by_peer(),
        "{what}: the connection did not end ({ended:?}, {frames:?})"
    );
}

// ---------------------------------------------------------------------------------------
// A relay that can hold the server's answers
// ---------------------------------------------------------------------------------------

/// A TCP relay between NGINX and the development server that can hold the server's
/// answers. The development server answers at once; while the relay holds, what it sends
/// waits here, so the requests it answers stay in flight for as long as the test needs.
struct Relay {
    port: u16,
    held: Arc<(Mutex<bool>, Condvar)>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().expect("relay address").port();
        let held = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = Arc::clone(&held);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || pipe(client_in, server, None));
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || pipe(server_in, client, Some(gate)));
            }
        });
        Relay { port, held }
    }

    /// From now on, the server's answers wait in the relay.
    fn hold(&self) {
        *self.held.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// The answers held go on, and the next ones too.
    fn release(&self) {
        *self.held.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.held.1.notify_all();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.release();
    }
}

/// Copies `from` to `to` until either ends; with a gate, each read waits while it holds.
fn pipe(mut from: TcpStream, mut to: TcpStream, gate: Option<Arc<(Mutex<bool>, Condvar)>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(gate) = &gate {
            let (held, changed) = &**gate;
            let mut on = held.lock().unwrap_or_else(|e| e.into_inner());
            while *on {
                on = changed.wait(on).unwrap_or_else(|e| e.into_inner());
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------------------------------
// The Python driver
// ---------------------------------------------------------------------------------------

/// `tests/clients/limits.py`: named driver sessions in one process, one JSON command a line.
struct Py(PyDriver);

impl Py {
    fn start(dir: &Path) -> Py {
        Py(PyDriver::start_script("limits.py", dir, &[]))
    }

    fn ok(&mut self, command: Value) -> Value {
        self.0.ok(command)
    }

    /// A session `name` logged in as `name` with its token, through NGINX at `port`.
    fn connect(&mut self, name: &str, token: &str, port: u16) {
        self.ok(json!({
            "cmd": "connect", "name": name, "user": name, "token": token,
            "host": "127.0.0.1", "port": port,
        }));
    }

    /// A `run` command (`statement` and the options in `run`) of session `name`.
    fn run(&mut self, name: &str, statement: &str, options: Value) -> Run {
        let mut command = json!({"cmd": "run", "name": name, "statement": statement});
        merge(&mut command, options);
        Run(self.ok(command))
    }

    /// One batch of query children of session `name`: its outcome and message.
    fn batch(&mut self, name: &str, statements: &[String], level: &str) -> (String, String) {
        let answer = self.ok(json!({
            "cmd": "batch", "name": name, "statements": statements, "consistency": level,
        }));
        (
            text(&answer, "outcome").to_string(),
            text(&answer, "message").to_string(),
        )
    }

    /// What the session's retry policy was asked since the last call.
    fn retries(&mut self, name: &str) -> Vec<Value> {
        let answer = self.ok(json!({"cmd": "retries", "name": name}));
        answer["retries"].as_array().cloned().unwrap_or_default()
    }
}

/// Adds the fields of `extra` (an object) to `command`.
fn merge(command: &mut Value, extra: Value) {
    if let (Some(c), Value::Object(e)) = (command.as_object_mut(), extra) {
        c.extend(e);
    }
}

/// The answer to a `run`: outcomes by class, the server's messages, what was raised.
struct Run(Value);

impl Run {
    fn count(&self, outcome: &str) -> u64 {
        self.0["outcomes"][outcome].as_u64().unwrap_or(0)
    }

    /// The distinct messages of an outcome.
    fn messages(&self, outcome: &str) -> Vec<String> {
        self.0["messages"][outcome]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails unless every message of `outcome` holds `needle`.
    fn messages_hold(&self, outcome: &str, needle: &str) {
        assert!(
            self.messages(outcome).iter().all(|m| m.contains(needle)),
            "{}",
            self.0
        );
    }

    /// Exactly one outcome, `outcome`, with a message holding `needle` (unless "ok").
    fn only(&self, outcome: &str, needle: &str) {
        let total: u64 = ["ok", "overloaded", "unauthorized", "invalid", "other"]
            .iter()
            .map(|o| self.count(o))
            .sum();
        assert_eq!(self.count(outcome), total, "expected {outcome}: {}", self.0);
        if outcome != "ok" {
            let messages = self.messages(outcome);
            assert!(
                !messages.is_empty() && messages.iter().all(|m| m.contains(needle)),
                "expected {outcome} with {needle:?}: {}",
                self.0
            );
        }
    }
}

/// Fails unless each retry-policy call is an `on_request_error` about an Overloaded error
/// holding `needle`, `count` in all.
fn assert_overloaded_retries(retries: &[Value], count: u64, needle: &str) {
    assert_eq!(retries.len() as u64, count, "{retries:#?}");
    for call in retries {
        assert_eq!(call["method"], "on_request_error", "{call}");
        assert_eq!(call["error"], "OverloadedErrorMessage", "{call}");
        assert_eq!(call["retry_num"], 0, "{call}");
        assert!(text(call, "message").contains(needle), "{call}");
    }
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn limits_hold_per_identity_across_workers() {
    let fx = Fixture::new("limits");
    let relay = Relay::start(fx.server.port());
    let [raw, capped, drivers, in_flight, http] = [(); 5].map(|()| free_port());
    let upstream = fx.server.port();
    let nginx = fx.nginx(
        "limits-nginx",
        http,
        "cql_limit_req_zone $cql_principal zone=per_user:1m rate=1r/m;\n\
         cql_limit_req_zone $cql_principal zone=drivers:1m rate=5r/s;\n\
         cql_limit_conn_zone $cql_principal zone=conns:1m;",
        &[
            ("raw", raw, upstream, "cql_limit_req zone=per_user burst=4;"),
            ("capped", capped, upstream, "cql_limit_conn conns 4;"),
            (
                "drivers",
                drivers,
                upstream,
                "cql_limit_req zone=drivers burst=40;",
            ),
            (
                "inflight",
                in_flight,
                relay.port,
                "cql_limit_in_flight conns 16;",
            ),
        ],
    );
    let rate_limited = |who: &str| format!("Rate limit exceeded for user {who}");
    let select = "SELECT k, v FROM a.t";

    // --- Rate, one budget for both workers: 16 connections of alice, 5 requests each.
    let alice = fx.token("alice");
    let mut clients: Vec<Client> = (0..16)
        .map(|_| Client::login(raw, "alice", &alice))
        .collect();
    let mut answered: Vec<(u16, Response)> = Vec::new();
    for round in 0..5 {
        for c in clients.iter_mut() {
            answered.push((c.local_port(), c.request(cql::query(1 + round, select))));
        }
    }
    let allowed = answered.iter().filter(|(_, r)| is_rows(r)).count();
    let limited = answered
        .iter()
        .filter(|(_, r)| r.is_error(OVERLOADED, &rate_limited("alice")))
        .count();
    assert_eq!(
        (allowed, limited),
        (BURST + 1, 80 - BURST - 1),
        "alice's 80 requests: exactly burst + 1 pass, the rest are Overloaded: {:?}",
        answered.iter().find(|(_, r)| !is_rows(r))
    );
    // Bob, right then: his own budget, untouched by alice's.
    let bob = fx.token("bob");
    let mut b = Client::login(raw, "bob", &bob);
    for i in 0..=BURST {
        let rows = b.request(cql::query(1 + i as i16, select));
        assert!(is_rows(&rows), "bob's request {i}: {rows:?}");
    }
    drop(b);
    // Alice is still over it, on a new connection too.
    let mut late = Client::login(raw, "alice", &alice);
    let still = late.request(cql::query(1, select));
    assert!(
        still.is_error(OVERLOADED, &rate_limited("alice")),
        "{still:?}"
    );
    drop(late);
    // Both workers served alice's requests: budgets of their own would have let through
    // at least burst + 1 on each, twice what passed.
    let ports: Vec<u16> = clients.iter().map(Client::local_port).collect();
    drop(clients);
    let workers = workers_of(&nginx, "raw", &ports);
    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for (port, _) in &answered {
        *per_worker.entry(workers[port].as_str()).or_default() += 1;
    }
    assert_eq!(
        per_worker.len(),
        2,
        "both workers served alice: {per_worker:?}"
    );
    assert!(
        per_worker.values().all(|n| *n > BURST),
        "each worker had more than a burst of alice's requests: {per_worker:?}"
    );
    let limited_total = (80 - BURST - 1 + 1) as f64;
    expect_metrics(
        http,
        &[
            (
                raw,
                "cql_requests_total",
                "category=\"query\",decision=\"limited\"",
                limited_total,
            ),
            (
                raw,
                "cql_requests_total",
                "category=\"query\",decision=\"allowed\"",
                2.0 * (BURST + 1) as f64,
            ),
            (
                raw,
                "cql_denied_requests_total",
                "reason=\"rate_limit\"",
                limited_total,
            ),
        ],
    );
    let lines = audit(&nginx, "raw");
    let denied = decided(&lines, "alice", "deny");
    assert_eq!(
        denied.len() as f64,
        limited_total,
        "alice's refusals in the audit log"
    );
    assert!(
        denied
            .iter()
            .all(|l| text(l, "reason").contains(&rate_limited("alice"))),
        "{denied:#?}"
    );
    assert_eq!(decided(&lines, "alice", "allow").len(), BURST + 1);
    assert_eq!(decided(&lines, "bob", "allow").len(), BURST + 1);

    // --- Connections: dave holds 4 of them whichever worker takes the next one.
    let dave = fx.token("dave");
    let too_many = "Too many connections for user dave";
    let mut held: Vec<Client> = Vec::new();
    let mut refused: Vec<u16> = Vec::new();
    for attempt in 0..16 {
        let mut c = Client::connect(capped);
        let answer = c.try_login("dave", &dave);
        if answer == Response::AuthSuccess {
            held.push(c);
        } else {
            assert!(
                answer.is_error(OVERLOADED, too_many),
                "attempt {attempt}: {answer:?}"
            );
            assert_ended(&mut c, "a connection over the cap");
            refused.push(c.local_port());
        }
    }
    assert_eq!(
        held.len(),
        4,
        "dave's connections: 4 allowed, {} refused",
        refused.len()
    );
    let first_held: Vec<u16> = held.iter().map(Client::local_port).collect();
    let first_refused = refused.clone();
    // Another principal connects meanwhile, and dave's open connections keep working.
    let other = Client::login(capped, "bob", &bob);
    let answer = held[0].request(cql::query(1, select));
    assert!(is_rows(&answer), "{answer:?}");
    // One of dave's connections ends: once NGINX has let it go, dave may connect again.
    drop(held.pop());
    let mut polls = 0;
    let again = wait_for(ANSWER_WITHIN, || {
        let mut c = Client::connect(capped);
        match c.try_login("dave", &dave) {
            Response::AuthSuccess => Some(c),
            refusal => {
                assert!(refusal.is_error(OVERLOADED, too_many), "{refusal:?}");
                refused.push(c.local_port());
                polls += 1;
                None
            }
        }
    })
    .expect("dave connects again once one of his connections ended");
    held.push(again);
    drop(held);
    drop(other);
    let all: Vec<u16> = first_held.iter().chain(&first_refused).copied().collect();
    let workers = workers_of(&nginx, "capped", &all);
    // The 4 connections of dave's by worker, open while the 12 others were refused: a
    // refusing worker with fewer than 4 of them shows the cap counts both workers'.
    let mut open_on: BTreeMap<&str, usize> = BTreeMap::new();
    for port in &first_held {
        *open_on.entry(workers[port].as_str()).or_default() += 1;
    }
    let refusing: BTreeSet<&str> = first_refused.iter().map(|p| workers[p].as_str()).collect();
    assert!(
        refusing
            .iter()
            .any(|w| open_on.get(w).copied().unwrap_or(0) < 4),
        "a worker with fewer than 4 of dave's connections refused one: open {open_on:?}, \
         refusing {refusing:?}"
    );
    let refusals = refused.len() as f64;
    assert_eq!(refused.len(), 12 + polls);
    expect_metrics(
        http,
        &[(
            capped,
            "cql_logins_total",
            "method=\"jwt\",outcome=\"connection_limit\"",
            refusals,
        )],
    );
    let logins: Vec<Value> = audit(&nginx, "capped")
        .into_iter()
        .filter(|l| l["event"] == "login" && text(l, "reason").contains(too_many))
        .collect();
    assert_eq!(
        logins.len(),
        refused.len(),
        "refused logins in the audit log"
    );
    assert!(
        logins.iter().all(|l| l["decision"] == "deny"),
        "{logins:#?}"
    );

    // --- Rate through the driver: carol over her budget while bob runs at the same time.
    let mut py = Py::start(&fx.gate.dir);
    py.connect("bob", &bob, drivers);
    let allowed_on_drivers = || {
        sum_of(
            &metric_samples(&scrape_metrics(http)),
            drivers,
            "cql_requests_total",
            "decision=\"allowed\"",
        )
    };
    let before = allowed_on_drivers();
    let started = Instant::now();
    let carol = fx.token("carol");
    py.connect("carol", &carol, drivers);
    // What carol's connect took of her budget, at most (the driver reads system tables).
    let connect_cost = allowed_on_drivers() - before;
    let together = py.ok(json!({"cmd": "together", "runs": [
        {"name": "carol", "statement": select, "times": 60, "concurrency": 8},
        {"name": "bob", "statement": select, "times": 10},
    ]}));
    let elapsed = started.elapsed().as_secs_f64();
    let [carol_run, bob_run] = [0, 1].map(|i| {
        let r = &together["results"][i];
        assert_eq!(r["ok"], true, "{together}");
        Run(r.clone())
    });
    bob_run.only("ok", "");
    assert!(py.retries("bob").is_empty(), "bob's driver retried nothing");
    let (ok, overloaded) = (carol_run.count("ok"), carol_run.count("overloaded"));
    assert_eq!(
        ok + overloaded,
        60,
        "carol: only passes and Overloaded: {}",
        carol_run.0
    );
    assert!(
        overloaded > 0,
        "carol went over 5r/s burst 40: {}",
        carol_run.0
    );
    // A burst of 40 (41 at once), what refilled at 5 a second since her connect began (one
    // more for the rounding), less what her connect took if that counted.
    let most = 41.0 + (5.0 * elapsed).ceil() + 1.0;
    let least = 41.0 - connect_cost;
    assert!(
        (ok as f64) <= most && (ok as f64) >= least,
        "carol's passes {ok} not in [{least}, {most}] ({elapsed:.2}s): {}",
        carol_run.0
    );
    carol_run.messages_hold("overloaded", &rate_limited("carol"));
    // The driver saw Overloaded as Overloaded: its retry policy was asked (on_request_error)
    // once per refusal; its default moved to the next host, and with one host there is
    // none, so the application got NoHostAvailable holding the Overloaded error.
    assert_overloaded_retries(&py.retries("carol"), overloaded, &rate_limited("carol"));
    assert_eq!(
        carol_run.0["raised"],
        json!({"NoHostAvailable": overloaded})
    );
    expect_metrics(
        http,
        &[
            (
                drivers,
                "cql_requests_total",
                "category=\"query\",decision=\"limited\"",
                overloaded as f64,
            ),
            (
                drivers,
                "cql_denied_requests_total",
                "reason=\"rate_limit\"",
                overloaded as f64,
            ),
        ],
    );

    // --- Requests in flight, one count for both workers: 24 connections of frank, one
    // request each, while the server's answers are held.
    let in_flight_for = |who: &str| format!("Too many requests in flight for user {who}");
    let limited_in_flight = || {
        metric_samples(&scrape_metrics(http))
            .get(&series(
                in_flight,
                "cql_requests_total",
                "category=\"query\",decision=\"limited\"",
            ))
            .copied()
    };
    let frank = fx.token("frank");
    let mut clients: Vec<Client> = (0..24)
        .map(|_| Client::login(in_flight, "frank", &frank))
        .collect();
    relay.hold();
    for c in clients.iter_mut() {
        c.send(&[cql::query(1, "SELECT k, v FROM a.frank")])
            .expect("send a request");
    }
    let reached = wait_for(ANSWER_WITHIN, || {
        (limited_in_flight() == Some(8.0) && fx.served_count("a.frank", "QUERY") == 16)
            .then_some(())
    });
    relay.release();
    assert!(
        reached.is_some(),
        "16 of frank's requests at the server and 8 refused: {} served\n{}",
        fx.served_count("a.frank", "QUERY"),
        scrape_metrics(http)
    );
    let answers: Vec<Response> = clients
        .iter_mut()
        .map(|c| c.answers(&[1]).remove(0))
        .collect();
    let passed = answers.iter().filter(|r| is_rows(r)).count();
    let over = answers
        .iter()
        .filter(|r| r.is_error(OVERLOADED, &in_flight_for("frank")))
        .count();
    assert_eq!((passed, over), (16, 8), "{answers:?}");
    let ports: Vec<u16> = clients.iter().map(Client::local_port).collect();
    drop(clients);
    let workers = workers_of(&nginx, "inflight", &ports);
    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for port in &ports {
        *per_worker.entry(workers[port].as_str()).or_default() += 1;
    }
    // Caps of their own would have let min(n, 16) through on each worker: more than 16.
    let own_caps: usize = per_worker.values().map(|n| (*n).min(16)).sum();
    assert!(
        per_worker.len() == 2 && own_caps > 16,
        "frank's connections on both workers: {per_worker:?}"
    );

    // The same through the driver: 48 at once on one session, 16 held at the server.
    let erin = fx.token("erin");
    py.connect("erin", &erin, in_flight);
    relay.hold();
    let erin_run = std::thread::scope(|scope| {
        let releaser = scope.spawn(|| {
            let reached = wait_for(Duration::from_secs(20), || {
                (limited_in_flight() == Some(8.0 + 32.0)
                    && fx.served_count("a.erin", "QUERY") == 16)
                    .then_some(())
            });
            relay.release();
            reached.is_some()
        });
        let run = py.run(
            "erin",
            "SELECT k, v FROM a.erin",
            json!({"times": 48, "concurrency": 48}),
        );
        assert!(
            releaser.join().expect("the releaser"),
            "16 of erin's requests at the server and 32 refused: {}",
            run.0
        );
        run
    });
    assert_eq!(
        (erin_run.count("ok"), erin_run.count("overloaded")),
        (16, 32),
        "{}",
        erin_run.0
    );
    erin_run.messages_hold("overloaded", &in_flight_for("erin"));
    assert_overloaded_retries(&py.retries("erin"), 32, &in_flight_for("erin"));
    expect_metrics(
        http,
        &[
            (
                in_flight,
                "cql_requests_total",
                "category=\"query\",decision=\"limited\"",
                40.0,
            ),
            (
                in_flight,
                "cql_denied_requests_total",
                "reason=\"in_flight_limit\"",
                40.0,
            ),
        ],
    );
    let lines = audit(&nginx, "inflight");
    for (who, refusals) in [("frank", 8), ("erin", 32)] {
        let denied = decided(&lines, who, "deny");
        assert!(
            denied.len() == refusals
                && denied
                    .iter()
                    .all(|l| text(l, "reason").contains(&in_flight_for(who))),
            "{who}: {denied:#?}"
        );
        assert_eq!(decided(&lines, who, "allow").len(), 16, "{who}");
    }
    drop(py);
    nginx.stop();
}

#[test]
fn guardrails_refuse_over_their_bounds_and_roles_log_in_as_themselves() {
    let fx = Fixture::new("guardrails");
    let (port, http) = (free_port(), free_port());
    let nginx = fx.nginx(
        "guardrails-nginx",
        http,
        "",
        &[("guarded", port, fx.server.port(), "")],
    );
    let mut py = Py::start(&fx.gate.dir);
    // A driver connects with its defaults: its reads of the system tables at connect time
    // (unpaged, at ONE) are not the role's reads.
    py.connect("gina", &fx.token("gina"), port);
    py.connect("bob", &fx.token("bob"), port);
    py.connect("sam", &fx.token("sam"), port);

    let select = "SELECT k, v FROM a.g";
    let guardrail = |name: &str| format!("Guardrail {name} violated");
    let mut refusals = 0;
    let refused = |run: Run, name: &str, refusals: &mut usize| {
        run.only("invalid", &guardrail(name));
        *refusals += 1;
    };
    // Read consistency: ALL is refused, LOCAL_QUORUM allowed.
    refused(
        py.run(
            "gina",
            select,
            json!({"consistency": "ALL", "fetch_size": 100}),
        ),
        "read_consistency",
        &mut refusals,
    );
    py.run(
        "gina",
        select,
        json!({"consistency": "LOCAL_QUORUM", "fetch_size": 100}),
    )
    .only("ok", "");
    // Page size: at the limit allowed; above it, unpaged and the driver's default refused.
    refused(
        py.run(
            "gina",
            select,
            json!({"consistency": "LOCAL_QUORUM", "fetch_size": 101}),
        ),
        "max_page_size",
        &mut refusals,
    );
    let unpaged = py.run(
        "gina",
        select,
        json!({"consistency": "LOCAL_QUORUM", "fetch_size": null}),
    );
    unpaged.messages_hold("invalid", "unpaged");
    refused(unpaged, "max_page_size", &mut refusals);
    refused(
        py.run("gina", select, json!({"consistency": "LOCAL_QUORUM"})),
        "max_page_size",
        &mut refusals,
    );
    // The same bounds on EXECUTE.
    py.run(
        "gina",
        select,
        json!({"prepared": true, "consistency": "LOCAL_QUORUM", "fetch_size": 100}),
    )
    .only("ok", "");
    refused(
        py.run(
            "gina",
            select,
            json!({"prepared": true, "consistency": "LOCAL_QUORUM", "fetch_size": 101}),
        ),
        "max_page_size",
        &mut refusals,
    );
    refused(
        py.run(
            "gina",
            select,
            json!({"prepared": true, "consistency": "ALL", "fetch_size": 100}),
        ),
        "read_consistency",
        &mut refusals,
    );
    // Write consistency.
    let insert = "INSERT INTO a.g (k, v) VALUES (1, 'one')";
    refused(
        py.run("gina", insert, json!({"consistency": "ALL"})),
        "write_consistency",
        &mut refusals,
    );
    py.run("gina", insert, json!({"consistency": "LOCAL_QUORUM"}))
        .only("ok", "");
    // Batches: statements at and over the count, over the bytes, and their consistency.
    let short: Vec<String> = (10..14)
        .map(|k| format!("INSERT INTO a.g (k, v) VALUES ({k}, 'b')"))
        .collect();
    let batch_refused = |(outcome, message): (String, String), name: &str| {
        assert_eq!(outcome, "invalid", "{name}: {message}");
        assert!(message.contains(&guardrail(name)), "{name}: {message}");
    };
    assert_eq!(
        py.batch("gina", &short[..3], "LOCAL_QUORUM"),
        ("ok".to_string(), String::new())
    );
    batch_refused(
        py.batch("gina", &short, "LOCAL_QUORUM"),
        "max_batch_statements",
    );
    batch_refused(py.batch("gina", &short[..3], "ALL"), "write_consistency");
    let long: Vec<String> = (20..22)
        .map(|k| format!("INSERT INTO a.g (k, v) VALUES ({k}, '{}')", "x".repeat(600)))
        .collect();
    batch_refused(py.batch("gina", &long, "LOCAL_QUORUM"), "max_batch_bytes");
    refusals += 3;
    // A statement of exactly 800 bytes is allowed, one more byte is not.
    let sized = |n: usize| {
        let head = "INSERT INTO a.g (k, v) VALUES (30, '";
        format!("{head}{}')", "y".repeat(n - head.len() - 2))
    };
    assert_eq!(sized(800).len(), 800);
    py.run("gina", &sized(800), json!({"consistency": "LOCAL_QUORUM"}))
        .only("ok", "");
    refused(
        py.run("gina", &sized(801), json!({"consistency": "LOCAL_QUORUM"})),
        "max_statement_bytes",
        &mut refusals,
    );
    // Another role has no bounds.
    py.run(
        "bob",
        "SELECT k, v FROM a.t",
        json!({"consistency": "ALL", "fetch_size": null}),
    )
    .only("ok", "");
    let five: Vec<String> = (40..45)
        .map(|k| format!("INSERT INTO a.t (k, v) VALUES ({k}, 'b')"))
        .collect();
    assert_eq!(
        py.batch("bob", &five, "ALL"),
        ("ok".to_string(), String::new())
    );

    // Nothing refused reached the server: three QUERYs, one EXECUTE, one BATCH on a.g.
    for (op, n) in [("QUERY", 3), ("EXECUTE", 1), ("BATCH", 1)] {
        assert_eq!(
            fx.served_count("a.g", op),
            n,
            "{op}s on a.g: {:#?}",
            fx.served_on("a.g")
        );
    }
    expect_metrics(
        http,
        &[(
            port,
            "cql_denied_requests_total",
            "reason=\"guardrail\"",
            refusals as f64,
        )],
    );
    let lines = audit(&nginx, "guarded");
    let denied = decided(&lines, "gina", "deny");
    assert_eq!(denied.len(), refusals, "{denied:#?}");
    let mut names = BTreeSet::new();
    for line in &denied {
        let reason = text(line, "reason");
        assert!(
            reason.starts_with("Guardrail ") && reason.contains(" violated: "),
            "{line}"
        );
        assert!(
            text(line, "rule").starts_with("role guarded: guardrail "),
            "{line}"
        );
        names.insert(reason.split(' ').nth(1).unwrap_or("").to_string());
    }
    let expected: BTreeSet<String> = [
        "read_consistency",
        "write_consistency",
        "max_page_size",
        "max_batch_statements",
        "max_batch_bytes",
        "max_statement_bytes",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);

    // Per-role logins: sam's requests reach the server as svc_shop_reader, bob's as the
    // service login, and each upstream connection logged in as its principal's login.
    py.run("sam", "SELECT k, v FROM shop.items", json!({}))
        .only("ok", "");
    py.run("bob", "SELECT k, v FROM a.t", json!({}))
        .only("ok", "");
    let mut raw = Client::login(port, "sam", &fx.token("sam"));
    assert!(is_rows(
        &raw.request(cql::query(1, "SELECT k, v FROM shop.items"))
    ));
    let denied = raw.request(cql::query(2, "SELECT k, v FROM a.t"));
    assert_eq!(denied.error_code(), Some(0x2100), "{denied:?}");
    drop(raw);
    let connections = fx.server.connections();
    let login_of = |client: &str| {
        connections
            .iter()
            .rev()
            .find(|a| a.client == client)
            .and_then(|a| a.user.clone())
    };
    for (table, login) in [("shop.items", SHOP_LOGIN), ("a.t", SERVICE_LOGIN)] {
        let served = fx.served_on(table);
        assert!(served.len() >= 2, "{table}: {served:#?}");
        for s in &served {
            assert_eq!(s.user.as_deref(), Some(login), "{table}: {s:#?}");
            assert_eq!(
                login_of(&s.client).as_deref(),
                Some(login),
                "{table}: {s:#?}"
            );
        }
    }
    drop(py);
    nginx.stop();
}

#[test]
fn dry_run_forwards_what_it_would_refuse_and_still_refuses_bad_tokens() {
    let fx = Fixture::new("dryrun");
    let (port, http) = (free_port(), free_port());
    let nginx = fx.nginx(
        "dryrun-nginx",
        http,
        "cql_limit_req_zone $cql_principal zone=per_user:1m rate=1r/m;",
        &[(
            "dry",
            port,
            fx.server.port(),
            "cql_dry_run on;\ncql_limit_req zone=per_user burst=4;",
        )],
    );
    // Over the rate: all 20 of dora's requests are served, 15 would have been refused.
    let mut dora = Client::login(port, "dora", &fx.token("dora"));
    for i in 0..20 {
        let rows = dora.request(cql::query(1 + i, "SELECT k, v FROM a.dry"));
        assert!(is_rows(&rows), "dora's request {i}: {rows:?}");
    }
    drop(dora);
    // Over a guardrail (ALL for role guarded), and denied by the policy (dan may not read b).
    let mut gwen = Client::login(port, "gwen", &fx.token("gwen"));
    let rows = gwen.request(query_at(1, "SELECT k, v FROM a.t", ALL));
    assert!(is_rows(&rows), "gwen: {rows:?}");
    drop(gwen);
    let mut dan = Client::login(port, "dan", &fx.token("dan"));
    let rows = dan.request(cql::query(1, "SELECT k, v FROM b.t"));
    assert!(is_rows(&rows), "dan: {rows:?}");
    drop(dan);
    assert_eq!(fx.served_count("a.dry", "QUERY"), 20);
    assert_eq!(fx.served_count("a.t", "QUERY"), 1);
    assert_eq!(fx.served_count("b.t", "QUERY"), 1);

    // A token signed by another key is refused: logins are never dry run.
    let other = fx.gate.dir.join("other");
    signing_key(&other);
    let forged = cql_token(&[
        "mint",
        "--key",
        &format!("{}/ec-1.key", other.display()),
        "--sub",
        "dora",
        "--iss",
        ISSUER,
        "--aud",
        AUDIENCE,
    ]);
    fx.server.reset();
    let mut attacker = Client::connect(port);
    let refused = attacker.try_login("dora", &forged);
    assert!(
        refused.is_error(BAD_CREDENTIALS, "token signature does not verify"),
        "{refused:?}"
    );
    // Nothing but the login's STARTUP reached the server, and a request then ends it.
    let _ = attacker.send(&[cql::query(1, "SELECT k, v FROM a.dry")]);
    assert_ended(&mut attacker, "a request before a login");
    let reached: Vec<String> = fx.server.served().into_iter().map(|s| s.opcode).collect();
    assert!(
        reached.iter().all(|op| op == "STARTUP" || op == "OPTIONS"),
        "the forged login reached the server: {reached:?}"
    );

    // The audit log says what would have been refused and why, and that it succeeded.
    let lines = audit(&nginx, "dry");
    let rate = decided(&lines, "dora", "would_deny");
    assert_eq!(rate.len(), 20 - BURST - 1, "{rate:#?}");
    assert_eq!(decided(&lines, "dora", "allow").len(), BURST + 1);
    assert!(decided(&lines, "dora", "deny").is_empty());
    let one = |who: &str| {
        let lines = decided(&lines, who, "would_deny");
        assert_eq!(lines.len(), 1, "{who}: {lines:#?}");
        lines[0].clone()
    };
    let guard = one("gwen");
    let policy = one("dan");
    for line in rate.iter().copied().chain([&guard, &policy]) {
        assert_eq!(line["outcome"], "success", "{line}");
    }
    assert!(rate
        .iter()
        .all(|l| text(l, "reason").contains("Rate limit exceeded for user dora")));
    assert!(
        text(&guard, "reason").contains("Guardrail read_consistency violated"),
        "{guard}"
    );
    assert!(text(&guard, "rule").starts_with("role guarded: guardrail read_consistency"));
    assert!(
        text(&policy, "reason")
            .contains("User dan has no SELECT permission on <table b.t> or any of its parents"),
        "{policy}"
    );
    let would = (20 - BURST - 1 + 2) as f64;
    expect_metrics(
        http,
        &[
            (
                port,
                "cql_requests_total",
                "category=\"query\",decision=\"would_deny\"",
                would,
            ),
            (
                port,
                "cql_requests_total",
                "category=\"query\",decision=\"allowed\"",
                (BURST + 1) as f64,
            ),
            (
                port,
                "cql_requests_total",
                "category=\"query\",decision=\"denied\"",
                0.0,
            ),
            (
                port,
                "cql_requests_total",
                "category=\"query\",decision=\"limited\"",
                0.0,
            ),
            (
                port,
                "cql_would_deny_requests_total",
                "reason=\"rate_limit\"",
                (20 - BURST - 1) as f64,
            ),
            (
                port,
                "cql_would_deny_requests_total",
                "reason=\"guardrail\"",
                1.0,
            ),
            (
                port,
                "cql_would_deny_requests_total",
                "reason=\"policy\"",
                1.0,
            ),
            (
                port,
                "cql_denied_requests_total",
                "reason=\"rate_limit\"",
                0.0,
            ),
            (
                port,
                "cql_denied_requests_total",
                "reason=\"guardrail\"",
                0.0,
            ),
            (port, "cql_denied_requests_total", "reason=\"policy\"", 0.0),
            (
                port,
                "cql_upstream_responses_total",
                "outcome=\"result\"",
                22.0,
            ),
            (
                port,
                "cql_logins_total",
                "method=\"jwt\",outcome=\"signature\"",
                1.0,
            ),
        ],
    );
    nginx.stop();
}

/// `nginx -s reload` keeps a limit zone of the same name, size and key, buckets and all (a
/// principal over its rate stays over it); a reload that changes the key is refused with
/// the reason, and the running configuration goes on limiting.
#[test]
fn a_reload_keeps_the_buckets_and_refuses_a_changed_key() {
    let fx = Fixture::new("limits-reload");
    let (http, port) = (free_port(), free_port());
    let zone = |key: &str| format!("cql_limit_req_zone {key} zone=kept:1m rate=1r/m;");
    let servers = [(
        "kept",
        port,
        fx.server.port(),
        "cql_limit_req zone=kept burst=2;",
    )];
    let nginx = fx.nginx("limits-reload", http, &zone("$cql_principal"), &servers);
    let alice = fx.token("alice");
    let select = "SELECT k, v FROM a.t";
    let limited = "Rate limit exceeded for user alice";
    let mut c = Client::login(port, "alice", &alice);
    for i in 0..3 {
        let rows = c.request(cql::query(1 + i, select));
        assert!(is_rows(&rows), "request {i} within the burst: {rows:?}");
    }
    assert!(c
        .request(cql::query(4, select))
        .is_error(OVERLOADED, limited));
    drop(c);

    // The same configuration again: the new workers find alice's bucket as it was.
    harness::reload(&nginx.prefix, nginx.pid());
    let mut c = Client::login(port, "alice", &alice);
    let again = c.request(cql::query(1, select));
    assert!(
        again.is_error(OVERLOADED, limited),
        "the reload kept the bucket: {again:?}"
    );
    drop(c);

    // Another key for the same zone: refused, as limit_req_zone refuses it.
    let conf = nginx.prefix.join("conf/nginx.conf");
    let text = std::fs::read_to_string(&conf).expect("read nginx.conf");
    std::fs::write(
        &conf,
        text.replace(&zone("$cql_principal"), &zone("$cql_roles")),
    )
    .expect("write nginx.conf");
    nginx.signal("reload");
    let reason = "cql_limit_req_zone \"kept\" uses the \"$cql_roles\" key while previously it \
                  used the \"$cql_principal\" key";
    wait_for(Duration::from_secs(10), || {
        nginx.error_log().contains(reason).then_some(())
    })
    .unwrap_or_else(|| panic!("no refusal of the changed key:\n{}", nginx.error_log()));
    let mut c = Client::login(port, "alice", &alice);
    assert!(c
        .request(cql::query(1, select))
        .is_error(OVERLOADED, limited));
    drop(c);
    nginx.stop();
}
