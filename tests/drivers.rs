//! Real clients through NGINX with `cql on`, against the development CQL server: the
//! Python driver (v3, v4, v5; lz4 and snappy) and cqlsh run the same scripted sessions
//! they run against the server directly, and get the same answers.

mod harness;

use std::process::Command;
use std::time::Duration;

use harness::{cqlsh, free_port, python, repo_dir, run_ok, wait_for, DevServer, Nginx};

/// NGINX with the module in front of the development server; returns its port.
fn proxy(name: &str, server: &DevServer) -> (Nginx, u16) {
    let port = free_port();
    let body = format!(
        "log_format counts '$cql_protocol_version $cql_client_frames $cql_server_frames';\n\
         server {{\n\
             listen 127.0.0.1:{port};\n\
             proxy_pass 127.0.0.1:{upstream};\n\
             cql on;\n\
             access_log logs/counts.log counts;\n\
         }}",
        upstream = server.port
    );
    (Nginx::start(name, &body), port)
}

fn workload(port: u16, keyspace: &str, extra: &[&str]) {
    run_ok(
        Command::new(python())
            .arg(repo_dir().join("tests/clients/workload.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--keyspace", keyspace])
            .args(extra),
    );
}

/// Access-log lines (version, client frames, server frames) of the connections so far.
fn logged_connections(nginx: &Nginx, at_least: usize) -> Vec<(String, u64, u64)> {
    wait_for(Duration::from_secs(10), || {
        let lines: Vec<(String, u64, u64)> = nginx
            .read_log("counts.log")
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some((
                    f.next()?.to_string(),
                    f.next()?.parse().ok()?,
                    f.next()?.parse().ok()?,
                ))
            })
            .collect();
        (lines.len() >= at_least).then_some(lines)
    })
    .unwrap_or_else(|| panic!("fewer than {at_least} connections logged"))
}

#[test]
fn python_driver_sessions_pass_through_nginx() {
    let server = DevServer::start(&[]);
    let (nginx, port) = proxy("python-driver", &server);
    workload(port, "px_default", &[]);
    workload(port, "px_v4", &["--protocol", "4"]);
    workload(
        port,
        "px_v4_lz4",
        &["--protocol", "4", "--compression", "lz4"],
    );
    workload(
        port,
        "px_v4_snappy",
        &["--protocol", "4", "--compression", "snappy"],
    );
    workload(port, "px_v3", &["--protocol", "3"]);
    workload(
        port,
        "px_v5_lz4",
        &["--protocol", "5", "--compression", "lz4"],
    );
    let lines = logged_connections(&nginx, 12);
    for version in ["3", "4", "5"] {
        assert!(
            lines
                .iter()
                .any(|(v, c, s)| v == version && *c > 10 && *s > 10),
            "no busy v{version} connection counted: {lines:?}"
        );
    }
    nginx.stop();
}

#[test]
fn cqlsh_and_password_logins_pass_through_nginx() {
    let server = DevServer::start(&["--auth", "password", "--user", "alice:secret"]);
    let (nginx, port) = proxy("cqlsh", &server);
    let port_arg = port.to_string();
    workload(
        port,
        "px_auth",
        &["--user", "alice", "--password", "secret"],
    );
    run_ok(
        Command::new(python())
            .arg(repo_dir().join("tests/clients/cqlsh_session.py"))
            .args(["--host", "127.0.0.1", "--port", &port_arg])
            .args([
                "--user",
                "alice",
                "--password",
                "secret",
                "--keyspace",
                "px_cqlsh",
            ])
            .env("CQL_TEST_CQLSH", cqlsh()),
    );
    let out = run_ok(
        Command::new(cqlsh())
            .args(["127.0.0.1", &port_arg, "-u", "alice", "-p", "secret", "-e"])
            .arg("SELECT key, cql_version FROM system.local"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" local |       3.4.5"),
        "cqlsh -e: {stdout}"
    );
    run_ok(
        Command::new(python())
            .arg(repo_dir().join("tests/clients/bad_password.py"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port_arg,
                "--user",
                "alice",
            ]),
    );
    nginx.stop();
}
