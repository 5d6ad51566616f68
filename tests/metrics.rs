//! Metrics as an operator reads them (issue 18): NGINX with two workers and a reload in the
//! middle counts logins, decisions, Cassandra's answers, the audit log and violations into
//! one `cql_metrics_zone`; the `cql_metrics` handler of an `http` server shows the exact
//! counts, Prometheus's own `promtool check metrics` accepts the exposition, and a real
//! Prometheus server scrapes it and answers a PromQL query with the expected value.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::cql::{self, code, Client, Response};
use harness::{
    cql_token, free_port, load_module_lines, metric_samples, repo_dir, scrape_metrics, scratch_dir,
    wait_for, DevServer, Nginx,
};

const ISSUER: &str = "https://idp.example.test/realms/ops";
const AUDIENCE: &str = "cassandra";

/// alice (role app) reads and writes keyspace `a`; bob (role reader) only reads it.
const POLICY: &str = r#"
[roles.app]
grant = [ { permissions = ["SELECT", "MODIFY"], on = "KEYSPACE a" } ]

[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE a" } ]

[[bind]]
role = "app"
principals = ["alice"]

[[bind]]
role = "reader"
principals = ["bob"]
"#;

/// alice's connections in each phase: enough that both workers get some (`reuseport`).
const ALICE_CONNECTIONS: usize = 16;

/// Prometheus's binaries, from Debian's package (`scripts/prometheus-tools`).
fn prometheus_tool(name: &str) -> PathBuf {
    let path = repo_dir()
        .join("target/tools/prometheus/usr/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/prometheus-tools (make test does)",
        path.display()
    );
    path
}

/// The value of a series of the test's server, with `labels` after `server`.
fn value(samples: &BTreeMap<String, f64>, server: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        format!("{name}{{server=\"{server}\"}}")
    } else {
        format!("{name}{{server=\"{server}\",{labels}}}")
    };
    *samples
        .get(&key)
        .unwrap_or_else(|| panic!("no series {key}"))
}

/// What one phase of the workload does, and so what each phase adds to the counts.
struct Phase {
    port: u16,
    alice: String,
    bob: String,
    expired: String,
    forged: String,
}

impl Phase {
    /// Per phase: 16 logins of alice, each with an allowed SELECT and INSERT, a SELECT of a
    /// table Cassandra does not have (allowed, answered Invalid) and a denied SELECT on
    /// keyspace b; one login of bob with a denied INSERT; an expired and a forged token
    /// (refused logins); and a connection that speaks HTTP (a protocol violation).
    fn run(&self) {
        for i in 0..ALICE_CONNECTIONS {
            let mut c = Client::login(self.port, "alice", &self.alice);
            let rows = c.request(cql::query(1, "SELECT k, v FROM a.t"));
            assert!(matches!(rows, Response::Rows(_)), "{rows:?}");
            let insert = format!("INSERT INTO a.t (k, v) VALUES ({i}, 'x')");
            assert_eq!(c.request(cql::query(2, &insert)), Response::Void);
            let missing = c.request(cql::query(3, "SELECT k FROM a.missing"));
            assert_eq!(missing.error_code(), Some(code::INVALID), "{missing:?}");
            let denied = c.request(cql::query(4, "SELECT k FROM b.t"));
            assert_eq!(denied.error_code(), Some(code::UNAUTHORIZED), "{denied:?}");
        }
        let mut bob = Client::login(self.port, "bob", &self.bob);
        let denied = bob.request(cql::query(1, "INSERT INTO a.t (k, v) VALUES (1, 'y')"));
        assert_eq!(denied.error_code(), Some(code::UNAUTHORIZED), "{denied:?}");
        drop(bob);
        for token in [&self.expired, &self.forged] {
            let mut c = Client::connect(self.port);
            let refused = c.try_login("alice", token);
            assert_eq!(
                refused.error_code(),
                Some(code::BAD_CREDENTIALS),
                "{refused:?}"
            );
        }
        let mut http = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        http.write_all(b"GET / HTTP/1.1\r\nHost: cassandra\r\n\r\n")
            .expect("send");
        let mut rest = Vec::new();
        let _ = http.read_to_end(&mut rest);
    }
}

/// Counts after `phases` phases, as the handler must show them.
fn check_counts(text: &str, server: &str, phases: f64, audit_lines: usize) {
    let s = metric_samples(text);
    let v = |name: &str, labels: &str| value(&s, server, name, labels);
    let alice = ALICE_CONNECTIONS as f64;
    // alice's and bob's logins, two refused ones, the HTTP one.
    assert_eq!(v("cql_connections_total", ""), phases * (alice + 4.0));
    assert_eq!(v("cql_connections_open", ""), 0.0);
    assert_eq!(
        v("cql_logins_total", "method=\"jwt\",outcome=\"success\""),
        phases * (alice + 1.0)
    );
    assert_eq!(
        v("cql_logins_total", "method=\"jwt\",outcome=\"expired\""),
        phases
    );
    assert_eq!(
        v("cql_logins_total", "method=\"jwt\",outcome=\"signature\""),
        phases
    );
    assert_eq!(
        v("cql_handshake_duration_seconds_count", "method=\"jwt\""),
        phases * (alice + 1.0)
    );
    assert_eq!(
        v(
            "cql_requests_total",
            "category=\"query\",decision=\"allowed\""
        ),
        phases * 2.0 * alice
    );
    assert_eq!(
        v(
            "cql_requests_total",
            "category=\"query\",decision=\"denied\""
        ),
        phases * alice
    );
    assert_eq!(
        v(
            "cql_requests_total",
            "category=\"dml\",decision=\"allowed\""
        ),
        phases * alice
    );
    assert_eq!(
        v("cql_requests_total", "category=\"dml\",decision=\"denied\""),
        phases
    );
    assert_eq!(
        v("cql_denied_requests_total", "reason=\"policy\""),
        phases * (alice + 1.0)
    );
    assert_eq!(
        v("cql_denials_total", "role=\"app\",keyspace=\"b\""),
        phases * alice
    );
    assert_eq!(
        v("cql_denials_total", "role=\"reader\",keyspace=\"a\""),
        phases
    );
    assert_eq!(
        v("cql_upstream_responses_total", "outcome=\"result\""),
        phases * 2.0 * alice
    );
    assert_eq!(
        v("cql_upstream_responses_total", "outcome=\"invalid\""),
        phases * alice
    );
    assert_eq!(
        v("cql_upstream_response_duration_seconds_count", ""),
        phases * 3.0 * alice
    );
    assert_eq!(
        v(
            "cql_upstream_response_duration_seconds_bucket",
            "le=\"+Inf\""
        ),
        phases * 3.0 * alice
    );
    // Every login's token was looked up once (per worker, a first miss, then hits).
    let token = v("cql_cache_hits_total", "cache=\"token\"")
        + v("cql_cache_misses_total", "cache=\"token\"");
    assert_eq!(token, phases * (alice + 3.0));
    assert_eq!(
        v("cql_protocol_violations_total", "kind=\"invalid_stream\""),
        phases
    );
    assert!(v("cql_received_bytes_total", "from=\"client\"") > 0.0);
    assert!(v("cql_received_bytes_total", "from=\"server\"") > 0.0);
    assert_eq!(s.get("cql_audit_lines_total"), Some(&(audit_lines as f64)));
    assert_eq!(s.get("cql_audit_lines_lost_total"), Some(&0.0));
}

/// A real Prometheus scraping the handler every second; stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: u16) -> Prometheus {
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cql\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(prometheus_tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port }
    }

    /// The value of an instant query with one result, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let query: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        write!(
            stream,
            "GET /api/v1/query?query={query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        let json: serde_json::Value = serde_json::from_str(body).ok()?;
        let result = json["data"]["result"].as_array()?;
        let [one] = result.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_workers_and_a_reload_count_exactly_and_prometheus_reads_it() {
    let dir = scratch_dir("metrics");
    let keys = dir.join("keys");
    let keys = keys.to_str().expect("utf-8 path");
    cql_token(&["keygen", "--kid", "k1", "--out", keys]);
    // The same kid, another key: a forged signature.
    let other = dir.join("other");
    cql_token(&[
        "keygen",
        "--kid",
        "k1",
        "--out",
        other.to_str().expect("utf-8"),
    ]);
    std::fs::write(dir.join("policy.toml"), POLICY).expect("write the policy");
    let key = format!("{keys}/k1.key");
    let mint = |key: &str, sub: &str, extra: &[&str]| {
        let mut args = vec![
            "mint", "--key", key, "--sub", sub, "--iss", ISSUER, "--aud", AUDIENCE,
        ];
        args.extend(extra);
        cql_token(&args)
    };
    let other_key = format!("{}/k1.key", other.display());
    let dev = DevServer::start(&[]);
    let mut setup = Client::direct(dev.port);
    for statement in [
        "CREATE KEYSPACE a WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        "CREATE TABLE a.t (k int PRIMARY KEY, v text)",
    ] {
        let done = setup.request(cql::query(1, statement));
        assert!(done.error_code().is_none(), "{statement}: {done:?}");
    }

    let port = free_port();
    let http = free_port();
    let config = format!(
        "{modules}\
         worker_processes 2;\n\
         error_log logs/error.log info;\n\
         pid logs/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         stream {{\n\
             cql_metrics_zone test:1m roles=4 keyspaces=4;\n\
             log_format workers '$pid';\n\
             server {{\n\
                 listen 127.0.0.1:{port} reuseport;\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 cql on;\n\
                 cql_auth jwt;\n\
                 cql_jwt_keys {keys}/jwks.json;\n\
                 cql_jwt_issuer {ISSUER};\n\
                 cql_jwt_audience {AUDIENCE};\n\
                 cql_policy {policy};\n\
                 cql_audit_log logs/audit.log;\n\
                 access_log logs/workers.log workers;\n\
             }}\n\
         }}\n\
         http {{\n\
             access_log off;\n\
             server {{\n\
                 listen 127.0.0.1:{http};\n\
                 location = /metrics {{ cql_metrics test; }}\n\
             }}\n\
         }}\n",
        modules = load_module_lines(),
        upstream = dev.port,
        policy = dir.join("policy.toml").display(),
    );
    let nginx = Nginx::start_with_config("metrics-nginx", &config);
    let server = format!("127.0.0.1:{port}");
    let phase = Phase {
        port,
        alice: mint(&key, "alice", &[]),
        bob: mint(&key, "bob", &[]),
        expired: mint(&key, "alice", &["--exp-in", "-600"]),
        forged: mint(&other_key, "alice", &[]),
    };
    let audit_lines = || nginx.read_log("audit.log").lines().count();
    // A closed connection is counted when NGINX has finalized it: wait for that.
    let settled = |phases: f64| {
        wait_for(Duration::from_secs(10), || {
            let text = scrape_metrics(http);
            let s = metric_samples(&text);
            let total = s.get(&format!("cql_connections_total{{server=\"{server}\"}}"))?;
            let open = s.get(&format!("cql_connections_open{{server=\"{server}\"}}"))?;
            let lines = s.get("cql_audit_lines_total")?;
            (*total == phases * (ALICE_CONNECTIONS as f64 + 4.0)
                && *open == 0.0
                && *lines == audit_lines() as f64)
                .then_some(text)
        })
        .unwrap_or_else(|| panic!("the counts did not settle:\n{}", scrape_metrics(http)))
    };

    phase.run();
    let first = settled(1.0);
    check_counts(&first, &server, 1.0, audit_lines());
    let workers: BTreeSet<String> = nginx
        .read_log("workers.log")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        workers.len(),
        2,
        "both workers served connections: {workers:?}"
    );

    // A reload keeps the zone (same name and size): nothing is lost, the new workers add on.
    harness::reload(&nginx.prefix, nginx.pid());
    phase.run();
    let second = settled(2.0);
    check_counts(&second, &server, 2.0, audit_lines());

    // Prometheus's own tools accept the exposition.
    let mut promtool = Command::new(prometheus_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(second.as_bytes())
        .expect("feed promtool");
    let checked = promtool.wait_with_output().expect("promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes the handler and answers PromQL with the counts.
    let prometheus = Prometheus::start(&dir, http);
    let denied = format!("sum(cql_requests_total{{server=\"{server}\",decision=\"denied\"}})");
    let expected = 2.0 * (ALICE_CONNECTIONS as f64 + 1.0);
    let answered = wait_for(Duration::from_secs(30), || {
        prometheus.query(&denied).filter(|v| *v == expected)
    });
    assert_eq!(
        answered,
        Some(expected),
        "Prometheus answered {:?} to {denied}; its log:\n{}",
        prometheus.query(&denied),
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    let p99 =
        "histogram_quantile(0.99, sum by (le) (cql_upstream_response_duration_seconds_bucket))";
    let latency = wait_for(Duration::from_secs(10), || prometheus.query(p99));
    assert!(
        latency.is_some_and(|s| s > 0.0 && s <= 10.0),
        "{p99} = {latency:?}"
    );
    drop(prometheus);

    // Another layout over the same zone is refused at reload: the old configuration and its
    // counts stay.
    std::fs::write(
        nginx.prefix.join("conf/nginx.conf"),
        config.replace("roles=4", "roles=5"),
    )
    .expect("write nginx.conf");
    nginx.signal("reload");
    let refusal = "cql_metrics_zone \"test\" was declared with roles=4 keyspaces=4: to change \
                   them, give the zone another name or size";
    wait_for(Duration::from_secs(10), || {
        nginx.error_log().contains(refusal).then_some(())
    })
    .unwrap_or_else(|| panic!("no \"{refusal}\" in\n{}", nginx.error_log()));
    check_counts(&scrape_metrics(http), &server, 2.0, audit_lines());
    nginx.stop();
}
