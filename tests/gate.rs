//! The gate with real clients: NGINX with `cql_auth` and `cql_policy` in front of the
//! development server, driven by the Python driver (v4 and v5) and cqlsh. Keys, tokens and
//! certificates are made by `cql-token` for each test.

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::{
    cql_token, cqlsh, free_port, python, repo_dir, run_ok, scratch_dir, DevServer, Nginx,
};

const ISSUER: &str = "https://idp.example.test/realms/ops";
const AUDIENCE: &str = "cassandra";

const POLICY: &str = r#"
[roles.reader]
grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]
guardrails = { allow_filtering = false }

[roles.writer]
inherit = ["reader"]
grant = [ { permissions = ["MODIFY"], on = "TABLE shop.orders" } ]

[roles.owner]
inherit = ["writer"]
grant = [
    { permissions = ["CREATE", "ALTER", "DROP"], on = "KEYSPACE shop" },
    { permissions = ["MODIFY"], on = "TABLE shop.*" },
    { permissions = ["AUTHORIZE", "SELECT"], on = "TABLE shop.orders" },
]
guardrails = { unlogged_batch = false }

[[bind]]
role = "reader"
groups = ["analysts"]

[[bind]]
role = "owner"
principals = ["olivia"]
"#;

/// Keys, a policy and tokens in a fresh folder.
struct Material {
    dir: PathBuf,
}

impl Material {
    fn new(name: &str) -> Material {
        let dir = scratch_dir(name);
        let keys = dir.join("keys");
        let keys = keys.to_str().unwrap();
        cql_token(&["keygen", "--kid", "rsa-1", "--alg", "RS256", "--out", keys]);
        cql_token(&["keygen", "--kid", "ec-1", "--alg", "ES256", "--out", keys]);
        // A key the proxy does not trust, under a kid it does.
        let other = dir.join("other");
        cql_token(&[
            "keygen",
            "--kid",
            "rsa-1",
            "--alg",
            "RS256",
            "--out",
            other.to_str().unwrap(),
        ]);
        std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
        Material { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A token for `sub` in `groups`, valid for an hour unless `extra` says otherwise.
    fn token(&self, sub: &str, groups: &[&str], extra: &[&str]) -> String {
        let key = self.path("keys/rsa-1.key");
        let mut args = vec![
            "mint", "--key", &key, "--sub", sub, "--iss", ISSUER, "--aud", AUDIENCE,
        ];
        let claims: Vec<String> = groups.iter().map(|g| format!("groups={g}")).collect();
        for c in &claims {
            args.extend(["--claim", c.as_str()]);
        }
        args.extend(extra);
        cql_token(&args)
    }

    /// A gated server; every test's decisions go to `logs/audit.log` unless `extra` names
    /// an audit log of its own.
    fn server_block(&self, port: u16, upstream: u16, extra: &str) -> String {
        let audit = if extra.contains("cql_audit_log") {
            ""
        } else {
            "cql_audit_log logs/audit.log;"
        };
        format!(
            "server {{\n\
                 listen 127.0.0.1:{port};\n\
                 proxy_pass 127.0.0.1:{upstream};\n\
                 cql on;\n\
                 cql_auth jwt;\n\
                 cql_jwt_keys {keys};\n\
                 cql_jwt_issuer {ISSUER};\n\
                 cql_jwt_audience {AUDIENCE};\n\
                 cql_jwt_claim_roles groups;\n\
                 cql_policy {policy};\n\
                 {audit}\n\
                 {extra}\n\
             }}",
            keys = self.path("keys/jwks.json"),
            policy = self.path("policy.toml"),
        )
    }
}

/// Runs `gate.py` with a plan; fails the test with its output on a mismatch.
fn gate(port: u16, dir: &Path, name: &str, args: &[&str], plan: serde_json::Value) -> String {
    let plan_file = dir.join(format!("{name}.json"));
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let out = run_ok(
        Command::new(python())
            .arg(repo_dir().join("tests/clients/gate.py"))
            .args(["--port", &port.to_string()])
            .args(args)
            .arg(&plan_file),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup(name: &str, server_args: &[&str], extra: &str) -> (Material, DevServer, Nginx, u16) {
    let material = Material::new(name);
    let server = DevServer::start(server_args);
    let port = free_port();
    let nginx = Nginx::start(name, &material.server_block(port, server.port, extra));
    (material, server, nginx, port)
}

#[test]
fn tokens_log_in_on_v4_and_v5_and_refusals_say_why() {
    let (m, _server, nginx, port) = setup("gate-tokens", &[], "");
    let good = m.token("alice", &["analysts"], &[]);
    let plan = serde_json::json!([
        {"connect": "ok"},
        {"cql": "SELECT release_version FROM system.local", "rows": 1},
    ]);
    for protocol in ["4", "5"] {
        let out = gate(
            port,
            &m.dir,
            "valid",
            &["--protocol", protocol, "--token", &good],
            plan.clone(),
        );
        assert!(
            out.contains(&format!("connected: protocol v{protocol}")),
            "{out}"
        );
    }
    gate(
        port,
        &m.dir,
        "lz4",
        &["--protocol", "5", "--compression", "lz4", "--token", &good],
        plan,
    );

    let rsa_pub = m.path("keys/rsa-1.pub.pem");
    let other_key = m.path("other/rsa-1.key");
    let refused = |token: String, reason: &str| serde_json::json!({"connect": "refused", "token": token, "reason": reason});
    let plan = serde_json::json!([
        refused(
            m.token("alice", &[], &["--exp-in", "-120"]),
            "token expired"
        ),
        refused(
            m.token("alice", &[], &["--nbf-in", "600"]),
            "token not yet valid"
        ),
        refused(
            cql_token(&[
                "mint",
                "--key",
                &m.path("keys/rsa-1.key"),
                "--sub",
                "alice",
                "--iss",
                ISSUER,
                "--aud",
                "other"
            ]),
            "token audience is not accepted"
        ),
        refused(
            cql_token(&[
                "mint",
                "--key",
                &m.path("keys/rsa-1.key"),
                "--sub",
                "alice",
                "--iss",
                "https://evil.test/",
                "--aud",
                AUDIENCE
            ]),
            "token issuer is not accepted"
        ),
        refused(
            cql_token(&[
                "mint", "--key", &other_key, "--sub", "alice", "--iss", ISSUER, "--aud", AUDIENCE
            ]),
            "token signature does not verify"
        ),
        refused(
            cql_token(&[
                "mint",
                "--key",
                &m.path("keys/rsa-1.key"),
                "--kid",
                "rsa-9",
                "--sub",
                "alice",
                "--iss",
                ISSUER,
                "--aud",
                AUDIENCE
            ]),
            "token signed with unknown key id \\\"rsa-9\\\""
                .replace("\\\"", "\"")
                .as_str()
        ),
        refused(
            cql_token(&[
                "mint", "--alg", "none", "--kid", "rsa-1", "--sub", "alice", "--iss", ISSUER,
                "--aud", AUDIENCE
            ]),
            "token algorithm none is not allowed"
        ),
        refused(
            cql_token(&[
                "mint",
                "--alg",
                "HS256",
                "--secret-file",
                &rsa_pub,
                "--kid",
                "rsa-1",
                "--sub",
                "alice",
                "--iss",
                ISSUER,
                "--aud",
                AUDIENCE
            ]),
            "token algorithm HS256 is not allowed"
        ),
        refused("not-a-token".to_string(), "not a JWT"),
    ]);
    let out = gate(port, &m.dir, "refused", &["--protocol", "4"], plan.clone());
    assert_eq!(out.matches("refused:").count(), 9, "{out}");
    gate(port, &m.dir, "refused-v5", &["--protocol", "5"], plan);
    let log = nginx.stop();
    assert!(!log.contains(&good), "a token reached the error log");
}

#[test]
fn cqlsh_logs_in_with_a_token_as_password() {
    let (m, _server, _nginx, port) = setup("gate-cqlsh", &[], "");
    let token = m.token("alice", &["analysts"], &[]);
    let out = run_ok(
        Command::new(cqlsh())
            .args(["127.0.0.1", &port.to_string(), "-u", "alice", "-p", &token])
            .args(["-e", "SELECT release_version FROM system.local"]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("release_version"), "{stdout}");
    let out = Command::new(cqlsh())
        .args(["127.0.0.1", &port.to_string(), "-u", "alice", "-p", "wrong"])
        .args(["-e", "SELECT release_version FROM system.local"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a JWT"), "{stderr}");
}

#[test]
fn a_password_protected_upstream_sees_only_the_service_credentials() {
    let material = Material::new("gate-upstream-login");
    // The development server knows only the service account.
    let server = DevServer::start(&["--auth", "password", "--user", "svc_proxy:s3rvice"]);
    harness::never_logged("s3rvice");
    std::fs::write(material.dir.join("upstream-password"), "s3rvice\n").unwrap();
    let port = free_port();
    let extra = format!(
        "cql_upstream_auth svc_proxy {};",
        material.path("upstream-password")
    );
    let _nginx = Nginx::start(
        "gate-upstream-login",
        &material.server_block(port, server.port, &extra),
    );
    let token = material.token("alice", &["analysts"], &[]);
    for protocol in ["4", "5"] {
        gate(
            port,
            &material.dir,
            "upstream-login",
            &["--protocol", protocol, "--token", &token],
            serde_json::json!([
                {"connect": "ok"},
                {"cql": "SELECT release_version FROM system.local", "rows": 1},
                {"connect": "refused", "token": "nope", "reason": "not a JWT"},
            ]),
        );
    }

    // Wrong service credentials: the client gets Cassandra's refusal.
    std::fs::write(material.dir.join("wrong-password"), "wrong\n").unwrap();
    let port = free_port();
    let extra = format!(
        "cql_upstream_auth svc_proxy {};",
        material.path("wrong-password")
    );
    let _nginx = Nginx::start(
        "gate-upstream-wrong",
        &material.server_block(port, server.port, &extra),
    );
    gate(
        port,
        &material.dir,
        "upstream-wrong",
        &["--protocol", "4", "--token", &token],
        serde_json::json!([{"connect": "refused", "reason": "svc_proxy"}]),
    );
}

#[test]
fn statements_are_authorized_per_keyspace_table_and_operation() {
    let (m, _server, _nginx, port) = setup("gate-policy", &[], "");
    let olivia = m.token("olivia", &[], &[]);
    let alice = m.token("alice", &["analysts"], &[]);
    // The owner creates the schema.
    gate(
        port,
        &m.dir,
        "schema",
        &["--protocol", "4", "--token", &olivia],
        serde_json::json!([
            {"connect": "ok"},
            {"cql": "CREATE KEYSPACE IF NOT EXISTS shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", "expect": "unauthorized",
             "message": "User olivia has no CREATE permission on <all keyspaces> or any of its parents"},
        ]),
    );
    let admin = {
        // Keyspaces are made by whoever may: a second policy run is not needed, the
        // development server is reached directly.
        run_ok(
            Command::new(python())
                .arg("-c")
                .arg(format!(
                    "from cassandra.cluster import Cluster\n\
                     s = Cluster(['127.0.0.1'], port={}).connect()\n\
                     s.execute(\"CREATE KEYSPACE shop WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}\")\n",
                    _server.port
                )),
        )
    };
    drop(admin);
    for protocol in ["4", "5"] {
        let plan = serde_json::json!([
            {"connect": "ok"},
            {"cql": "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, item text)", "expect": "ok"},
            {"cql": "CREATE TABLE IF NOT EXISTS shop.customers (id int PRIMARY KEY, name text)", "expect": "ok"},
            {"cql": "CREATE TABLE other.t (id int PRIMARY KEY)", "expect": "unauthorized",
             "message": "User olivia has no CREATE permission on <keyspace other> or any of its parents"},
            {"cql": "INSERT INTO shop.orders (id, item) VALUES (1, 'tea')", "expect": "ok"},
            {"cql": "UPDATE shop.customers SET name = 'Bo' WHERE id = 1", "expect": "ok"},
            {"cql": "ALTER TABLE shop.orders ADD note text", "expect": "reaches"},
            {"cql": "GRANT SELECT ON TABLE shop.orders TO bob", "expect": "ok"},
            {"cql": "GRANT SELECT ON KEYSPACE shop TO bob", "expect": "unauthorized",
             "message": "User olivia has no AUTHORIZE permission on <keyspace shop> or any of its parents"},
            {"cql": "TRUNCATE shop.customers", "expect": "ok"},
            {"cql": "DELETE FROM shop.customers WHERE id = 1", "expect": "ok"},
            {"cql": "CREATE TABLE IF NOT EXISTS shop.scratch (id int PRIMARY KEY)", "expect": "ok"},
            {"cql": "DROP TABLE shop.scratch", "expect": "ok"},
            {"cql": "DROP KEYSPACE other", "expect": "unauthorized",
             "message": "User olivia has no DROP permission on <keyspace other> or any of its parents"},
            {"batch": ["INSERT INTO shop.orders (id, item) VALUES (2, 'a')", "INSERT INTO shop.customers (id, name) VALUES (2, 'b')"],
             "type": "unlogged", "expect": "unauthorized", "message": "UNLOGGED"},
            {"batch": ["INSERT INTO shop.orders (id, item) VALUES (2, 'a')", "INSERT INTO shop.customers (id, name) VALUES (2, 'b')"],
             "expect": "ok"},
        ]);
        gate(
            port,
            &m.dir,
            "owner",
            &["--protocol", protocol, "--token", &olivia],
            plan,
        );

        let plan = serde_json::json!([
            {"connect": "ok"},
            {"cql": "SELECT * FROM shop.orders", "expect": "ok"},
            {"cql": "INSERT INTO shop.orders (id, item) VALUES (3, 'x')", "expect": "unauthorized",
             "message": "User alice has no MODIFY permission on <table shop.orders> or any of its parents"},
            // The connection keeps working after a denial.
            {"cql": "SELECT * FROM shop.orders WHERE id = 1", "expect": "ok", "rows": 1},
            {"cql": "UPDATE shop.orders SET item = 'y' WHERE id = 1", "expect": "unauthorized"},
            {"cql": "DELETE FROM shop.orders WHERE id = 1", "expect": "unauthorized"},
            {"cql": "TRUNCATE shop.orders", "expect": "unauthorized"},
            {"cql": "DROP TABLE shop.orders", "expect": "unauthorized",
             "message": "User alice has no DROP permission on <table shop.orders> or any of its parents"},
            {"cql": "CREATE TABLE shop.x (id int PRIMARY KEY)", "expect": "unauthorized"},
            {"cql": "ALTER TABLE shop.orders ADD y text", "expect": "unauthorized"},
            {"cql": "GRANT SELECT ON TABLE shop.orders TO mallory", "expect": "unauthorized"},
            {"cql": "SELECT * FROM shop.orders WHERE item = 'tea' ALLOW FILTERING", "expect": "unauthorized",
             "message": "ALLOW FILTERING"},
            {"cql": "SELEKT * FROM shop.orders", "expect": "syntax_error", "message": "no viable alternative at input 'SELEKT'"},
            // USE, then unqualified names.
            {"cql": "USE shop", "expect": "ok"},
            {"cql": "SELECT * FROM orders", "expect": "ok"},
            {"cql": "DELETE FROM customers WHERE id = 2", "expect": "unauthorized", "message": "<table shop.customers>"},
            // Prepared statements: denied at PREPARE, allowed ones executed by id.
            {"prepare": "INSERT INTO shop.orders (id, item) VALUES (?, ?)", "name": "ins", "expect": "unauthorized"},
            {"prepare": "SELECT item FROM shop.orders WHERE id = ?", "name": "sel", "expect": "ok"},
            {"execute": "sel", "values": [1], "expect": "ok", "rows": 1},
            // A batch with one forbidden child is denied whole.
            {"batch": ["INSERT INTO shop.orders (id, item) VALUES (9, 'a')"], "expect": "unauthorized"},
        ]);
        gate(
            port,
            &m.dir,
            "reader",
            &["--protocol", protocol, "--token", &alice],
            plan,
        );
    }
}

#[test]
fn prepared_ids_survive_a_reload_and_the_new_policy_decides() {
    let m = Material::new("gate-reload");
    let _server = DevServer::start(&[]);
    let port = free_port();
    // Old workers end their connections a second after a reload, so the driver reconnects
    // to the new worker.
    let config = |m: &Material| {
        harness::config_with_stream(&m.server_block(port, _server.port, "")).replace(
            "worker_processes 1;\n",
            "worker_processes 1;\nworker_shutdown_timeout 1s;\n",
        )
    };
    let nginx = Nginx::start_with_config("gate-reload", &config(&m));
    run_ok(Command::new(python()).arg("-c").arg(format!(
        "from cassandra.cluster import Cluster\n\
         s = Cluster(['127.0.0.1'], port={}).connect()\n\
         s.execute(\"CREATE KEYSPACE shop WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}\")\n\
         s.execute('CREATE TABLE shop.orders (id int PRIMARY KEY, item text)')\n\
         s.execute(\"INSERT INTO shop.orders (id, item) VALUES (1, 'tea')\")\n",
        _server.port
    )));
    let alice = m.token("alice", &["analysts"], &[]);
    let plan = serde_json::json!([
        {"connect": "ok"},
        {"prepare": "SELECT item FROM shop.orders WHERE id = ?", "name": "sel"},
        {"execute": "sel", "values": [1], "rows": 1},
        {"pause": "reload with a new worker: its prepared registry is empty"},
        {"until_connected": 30},
        // The new worker never saw the id: Unprepared, the driver prepares again, carries on.
        {"execute": "sel", "values": [1], "rows": 1},
        {"pause": "reload with a policy that no longer grants SELECT"},
        {"until_connected": 30},
        {"execute": "sel", "values": [1], "expect": "unauthorized"},
    ]);
    let plan_file = m.dir.join("reload.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let mut child = Command::new(python())
        .arg(repo_dir().join("tests/clients/gate.py"))
        .args([
            "--port",
            &port.to_string(),
            "--protocol",
            "4",
            "--token",
            &alice,
        ])
        .arg(&plan_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut pauses = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("paused:") {
            pauses += 1;
            if pauses == 2 {
                let policy = POLICY.replace(
                    r#"grant = [ { permissions = ["SELECT"], on = "KEYSPACE shop" } ]"#,
                    r#"grant = [ { permissions = ["SELECT"], on = "TABLE shop.customers" } ]"#,
                );
                std::fs::write(m.dir.join("policy.toml"), policy).unwrap();
            }
            let old_workers = nginx.worker_pids();
            std::fs::write(nginx.prefix.join("conf/nginx.conf"), config(&m)).unwrap();
            harness::reload(&nginx.prefix, nginx.pid());
            // The old worker serves its connections with the old configuration until it
            // exits; only then does the driver reconnect to the new one.
            harness::wait_for(std::time::Duration::from_secs(15), || {
                old_workers
                    .iter()
                    .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
                    .then_some(())
            })
            .expect("the old worker exited");
            writeln!(stdin, "go").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}");
    assert_eq!(pauses, 2, "{seen}");
    assert!(seen.contains("denied:"), "{seen}");
}

#[test]
fn verified_client_certificates_are_identities() {
    let m = Material::new("gate-mtls");
    let dir = |name: &str| m.path(name);
    cql_token(&["ca", "--out", &dir("ca"), "--cn", "Test CA"]);
    cql_token(&["ca", "--out", &dir("rogue-ca"), "--cn", "Rogue CA"]);
    cql_token(&[
        "cert",
        "--ca",
        &dir("ca"),
        "--cn",
        "localhost",
        "--server",
        "--out",
        &dir("server"),
    ]);
    cql_token(&[
        "cert",
        "--ca",
        &dir("ca"),
        "--cn",
        "etl-loader",
        "--o",
        "Example",
        "--ou",
        "analysts",
        "--san-uri",
        "spiffe://example.org/ns/etl/sa/loader",
        "--out",
        &dir("client"),
    ]);
    cql_token(&[
        "cert",
        "--ca",
        &dir("rogue-ca"),
        "--cn",
        "etl-loader",
        "--ou",
        "analysts",
        "--out",
        &dir("rogue"),
    ]);
    let server = DevServer::start(&[]);
    run_ok(Command::new(python()).arg("-c").arg(format!(
        "from cassandra.cluster import Cluster\n\
         s = Cluster(['127.0.0.1'], port={}).connect()\n\
         s.execute(\"CREATE KEYSPACE shop WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}\")\n\
         s.execute('CREATE TABLE shop.orders (id int PRIMARY KEY, item text)')\n",
        server.port
    )));
    let port = free_port();
    let body = format!(
        "server {{\n\
             listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n\
             ssl_client_certificate {ca};\n\
             ssl_verify_client optional;\n\
             proxy_pass 127.0.0.1:{upstream};\n\
             cql on;\n\
             cql_auth mtls;\n\
             cql_policy {policy};\n\
         }}",
        cert = dir("server.pem"),
        key = dir("server.key"),
        ca = dir("ca/ca.pem"),
        upstream = server.port,
        policy = dir("policy.toml"),
    );
    let _nginx = Nginx::start("gate-mtls", &body);
    let ca = dir("ca/ca.pem");
    for protocol in ["4", "5"] {
        // The certificate's OU "analysts" binds the reader role; no password is asked.
        gate(
            port,
            &m.dir,
            "mtls-valid",
            &[
                "--protocol",
                protocol,
                "--ca",
                &ca,
                "--cert",
                &dir("client.pem"),
                "--key",
                &dir("client.key"),
            ],
            serde_json::json!([
                {"connect": "ok"},
                {"cql": "SELECT * FROM shop.orders", "expect": "ok"},
                {"cql": "INSERT INTO shop.orders (id, item) VALUES (1, 'x')", "expect": "unauthorized",
                 "message": "User etl-loader has no MODIFY permission on <table shop.orders>"},
            ]),
        );
    }
    let refused = serde_json::json!([{"connect": "refused", "reason": "requires a verified TLS client certificate"}]);
    gate(
        port,
        &m.dir,
        "mtls-none",
        &["--protocol", "4", "--ca", &ca],
        refused,
    );
    // A certificate of another CA: NGINX ends the TLS session itself and logs why.
    gate(
        port,
        &m.dir,
        "mtls-untrusted",
        &[
            "--protocol",
            "4",
            "--ca",
            &ca,
            "--cert",
            &dir("rogue.pem"),
            "--key",
            &dir("rogue.key"),
        ],
        serde_json::json!([{"connect": "refused"}]),
    );
    let log = _nginx.stop();
    assert!(log.contains("client SSL certificate verify error"), "{log}");
}

#[test]
fn a_token_that_expires_mid_session_is_refused_until_the_driver_reconnects_with_a_fresh_one() {
    let (m, _server, _nginx, port) = setup("gate-expiry", &[], "");
    let short = m.token("alice", &["analysts"], &["--exp-in", "3"]);
    let fresh = m.token("alice", &["analysts"], &[]);
    let out = gate(
        port,
        &m.dir,
        "expiry",
        &["--protocol", "5", "--token", &short],
        serde_json::json!([
            {"connect": "ok"},
            {"cql": "SELECT release_version FROM system.local", "rows": 1},
            {"sleep": 4.5},
            {"cql": "SELECT release_version FROM system.local", "expect": "unauthorized", "message": "token expired"},
            {"connect": "ok", "token": fresh},
            {"cql": "SELECT release_version FROM system.local", "rows": 1},
        ]),
    );
    assert!(out.contains("denied:"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

/// The audit log's JSON lines.
fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    harness::read_or_empty(path)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until `path` holds at least `n` lines matching `select`.
fn wait_for_lines(
    path: &Path,
    n: usize,
    select: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    harness::wait_for(std::time::Duration::from_secs(5), || {
        let lines: Vec<_> = audit_lines(path).into_iter().filter(&select).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} lines in {}:\n{}",
            path.display(),
            harness::read_or_empty(path)
        )
    })
}

/// A line without what changes from run to run (checked for shape, then removed).
fn stable(mut line: serde_json::Value) -> serde_json::Value {
    let o = line.as_object_mut().expect("an object");
    let time = o.remove("time").expect("time");
    let time = time.as_str().expect("time is text");
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert!(o.remove("session").expect("session").is_u64());
    let client = o.remove("client").expect("client");
    assert!(client.as_str().unwrap().starts_with("127.0.0.1:"));
    if let Some(latency) = o.remove("latency_us") {
        assert!(latency.is_u64(), "{latency}");
    }
    o.remove("server");
    line
}

fn create_shop(server: &DevServer) {
    run_ok(Command::new(python()).arg("-c").arg(format!(
        "from cassandra.cluster import Cluster\n\
         s = Cluster(['127.0.0.1'], port={}).connect()\n\
         s.execute(\"CREATE KEYSPACE shop WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}\")\n",
        server.port
    )));
}

#[test]
fn every_decision_is_an_audit_line_with_cassandras_outcome() {
    let stream_extra = "cql_audit_log logs/audit.log;";
    let (m, server, nginx, port) = setup("audit-lines", &[], stream_extra);
    create_shop(&server);
    let olivia = m.token("olivia", &[], &[]);
    harness::never_logged("bound-secret-c0ffee");
    gate(
        port,
        &m.dir,
        "audit",
        &["--protocol", "4", "--token", &olivia],
        serde_json::json!([
            {"connect": "ok"},
            {"cql": "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, item text)"},
            {"cql": "INSERT INTO shop.orders (id, item) VALUES (1, 'tea')"},
            {"cql": "SELECT * FROM shop.nope", "expect": "reaches"},
            {"cql": "DROP KEYSPACE other", "expect": "unauthorized"},
            {"prepare": "INSERT INTO shop.orders (id, item) VALUES (?, ?)", "name": "ins"},
            {"execute": "ins", "values": [7, "bound-secret-c0ffee"]},
            {"batch": ["INSERT INTO shop.orders (id, item) VALUES (2, 'a')",
                       "DELETE FROM shop.orders WHERE id = 1"]},
            {"cql": "SELECT * FROM system.local"},
        ]),
    );
    gate(
        port,
        &m.dir,
        "audit-refused",
        &["--protocol", "4", "--token", &olivia],
        serde_json::json!([
            {"connect": "refused", "token": m.token("olivia", &[], &["--exp-in", "-120"]),
             "reason": "token expired"},
        ]),
    );
    let log = nginx.prefix.join("logs/audit.log");
    let requests = wait_for_lines(&log, 7, |l| l["event"] == "request");
    let requests: Vec<_> = requests.into_iter().map(stable).collect();
    let who = serde_json::json!({"principal": "olivia", "roles": ["owner", "reader", "writer"], "auth": "jwt"});
    let expect = |fields: serde_json::Value| {
        let mut line = serde_json::json!({"event": "request"});
        let o = line.as_object_mut().unwrap();
        o.extend(who.as_object().unwrap().clone());
        o.extend(fields.as_object().unwrap().clone());
        line
    };
    let rule_owner = "role owner: grant CREATE, ALTER, DROP on KEYSPACE shop (line 13)";
    let want = [
        expect(serde_json::json!({
            "category": "DDL", "type": "CREATE_TABLE", "keyspace": "shop", "table": "orders",
            "statement": "CREATE TABLE IF NOT EXISTS shop.orders (id int PRIMARY KEY, item text)",
            "decision": "allow", "rule": rule_owner, "outcome": "success"})),
        expect(serde_json::json!({
            "category": "DML", "type": "UPDATE", "keyspace": "shop", "table": "orders",
            "statement": "INSERT INTO shop.orders (id, item) VALUES (1, 'tea')",
            "decision": "allow", "outcome": "success"})),
        expect(serde_json::json!({
            "category": "QUERY", "type": "SELECT", "keyspace": "shop", "table": "nope",
            "statement": "SELECT * FROM shop.nope",
            "decision": "allow", "outcome": "error", "error_code": "0x2200"})),
        expect(serde_json::json!({
            "category": "DDL", "type": "DROP_KEYSPACE", "keyspace": "other",
            "statement": "DROP KEYSPACE other", "decision": "deny",
            "reason": "User olivia has no DROP permission on <keyspace other> or any of its parents"})),
        expect(serde_json::json!({
            "category": "PREPARE", "type": "PREPARE_STATEMENT", "keyspace": "shop", "table": "orders",
            "statement": "INSERT INTO shop.orders (id, item) VALUES (?, ?)",
            "decision": "allow", "outcome": "success"})),
        expect(serde_json::json!({
            "category": "DML", "type": "UPDATE", "keyspace": "shop", "table": "orders",
            "statement": "INSERT INTO shop.orders (id, item) VALUES (?, ?)",
            "decision": "allow", "outcome": "success"})),
        expect(serde_json::json!({
            "category": "DML", "type": "BATCH", "keyspace": "shop",
            "batch": [
                {"type": "UPDATE", "keyspace": "shop", "table": "orders",
                 "statement": "INSERT INTO shop.orders (id, item) VALUES (2, 'a')"},
                {"type": "DELETE", "keyspace": "shop", "table": "orders",
                 "statement": "DELETE FROM shop.orders WHERE id = 1"},
            ],
            "decision": "allow", "outcome": "success"})),
    ];
    assert_eq!(requests.len(), want.len(), "{requests:#?}");
    for (got, want) in requests.iter().zip(want.iter()) {
        let mut got = got.clone();
        let o = got.as_object_mut().unwrap();
        // Stream ids and rules are the driver's and the policy's: checked where stable.
        assert!(o.remove("stream").is_some_and(|s| s.is_i64()), "{o:?}");
        if !want.as_object().unwrap().contains_key("rule") {
            o.remove("rule");
        }
        if want["type"] == "PREPARE_STATEMENT"
            || o.get("category") == Some(&"DML".into())
                && want
                    .get("statement")
                    .is_some_and(|s| s.as_str().unwrap().contains('?'))
        {
            let id = o.remove("prepared_id").expect("prepared_id");
            assert!(id.as_str().unwrap().starts_with("0x"), "{id}");
        }
        assert_eq!(&got, want);
    }
    let logins = wait_for_lines(&log, 2, |l| l["event"] == "login");
    assert!(logins.iter().any(|l| l["type"] == "LOGIN_SUCCESS"
        && l["principal"] == "olivia"
        && l["decision"] == "allow"));
    assert!(logins.iter().any(|l| l["type"] == "LOGIN_ERROR"
        && l["principal"].is_null()
        && l["decision"] == "deny"
        && l["reason"] == "token expired"));
    // Driver queries of system tables are left out, as Cassandra's default excludes them.
    assert!(!harness::read_or_empty(&log).contains("system.local"));
    // Every connection ends with its summary.
    let sessions = wait_for_lines(&log, 1, |l| l["event"] == "session" && l["denied"] == 1);
    // Seven requests above, and the driver's own query of system.local on that connection.
    assert!(
        sessions[0]["requests"].as_u64().unwrap() >= 8,
        "{:?}",
        sessions[0]
    );
    drop(nginx);
}

#[test]
fn audit_lines_reach_syslog_in_cassandras_format_and_survive_reopen() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let syslog_port = udp.local_addr().unwrap().port();
    let m = Material::new("audit-syslog");
    let server = DevServer::start(&[]);
    create_shop(&server);
    let (syslog_proxy, file_proxy) = (free_port(), free_port());
    let body = format!(
        "log_format cql '$cql_principal $cql_auth_method v$cql_protocol_version $cql_requests $cql_denied $cql_keyspace';\n\
         access_log logs/access.log cql;\n\
         {}\n{}",
        m.server_block(
            syslog_proxy,
            server.port,
            &format!(
                "cql_audit_log syslog:server=127.0.0.1:{syslog_port},tag=cql format=cassandra;\n\
                 cql_audit_denied_only on;"
            )
        ),
        m.server_block(
            file_proxy,
            server.port,
            "cql_audit_log logs/audit.log buffer=4k flush=300ms;"
        ),
    );
    let nginx = Nginx::start_with_config("audit-syslog", &harness::config_with_stream(&body));
    let alice = m.token("alice", &["analysts"], &[]);
    let plan = serde_json::json!([
        {"connect": "ok"},
        {"cql": "USE shop"},
        {"cql": "SELECT * FROM shop.orders", "expect": "reaches"},
        {"cql": "INSERT INTO shop.orders (id, item) VALUES (3, 'x')", "expect": "unauthorized"},
    ]);
    gate(
        syslog_proxy,
        &m.dir,
        "syslog",
        &["--protocol", "5", "--token", &alice],
        plan.clone(),
    );
    // Only the denial is sent (denied only), as Cassandra writes it.
    let mut buf = [0u8; 4096];
    let n = udp.recv(&mut buf).expect("a syslog datagram");
    let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(datagram.starts_with("<"), "{datagram}");
    assert!(
        datagram.contains(" cql: user:alice|host:127.0.0.1:"),
        "{datagram}"
    );
    assert!(
        datagram.ends_with(
            "|type:UNAUTHORIZED_ATTEMPT|category:AUTH|ks:shop|scope:orders|operation:User alice has no MODIFY permission on <table shop.orders> or any of its parents; INSERT INTO shop.orders (id, item) VALUES (3, 'x')"
        ),
        "{datagram}"
    );
    udp.set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .unwrap();
    assert!(udp.recv(&mut buf).is_err(), "only the denial is sent");

    // The file log, buffered: lines arrive after the flush time; a reopen starts a new file.
    let log = nginx.prefix.join("logs/audit.log");
    gate(
        file_proxy,
        &m.dir,
        "file-1",
        &["--protocol", "4", "--token", &alice],
        plan.clone(),
    );
    wait_for_lines(&log, 1, |l| l["type"] == "USE_KEYSPACE");
    std::fs::rename(&log, nginx.prefix.join("logs/audit.log.1")).unwrap();
    nginx.signal("reopen");
    harness::wait_for(std::time::Duration::from_secs(5), || {
        log.exists().then_some(())
    })
    .expect("reopen creates the log anew");
    gate(
        file_proxy,
        &m.dir,
        "file-2",
        &["--protocol", "4", "--token", &alice],
        plan,
    );
    // The driver repeats USE on each connection of its pool.
    let fresh = wait_for_lines(&log, 4, |l| l["event"] == "request");
    assert_eq!(fresh[3]["decision"], "deny");
    let old = audit_lines(&nginx.prefix.join("logs/audit.log.1"));
    assert_eq!(old.iter().filter(|l| l["event"] == "request").count(), 4);

    // $cql_* variables in the access log of the stream module.
    let access = nginx.prefix.join("logs/access.log");
    let line = harness::wait_for(std::time::Duration::from_secs(5), || {
        harness::read_or_empty(&access)
            .lines()
            .find(|l| l.starts_with("alice jwt v5 4 1 shop"))
            .map(str::to_string)
    });
    assert!(
        line.is_some(),
        "access log:\n{}",
        harness::read_or_empty(&access)
    );
    drop(nginx);
}
