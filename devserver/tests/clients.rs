//! Runs the real Python driver and cqlsh (tests/clients/) against the built server.
//!
//! The interpreter comes from `CQL_TEST_PYTHON` (default: ../.venv/bin/python next to
//! this crate) and cqlsh from `CQL_TEST_CQLSH` (default: ../.venv/bin/cqlsh). If they are
//! missing the tests fail: run `make venv` first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn tool(env: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    assert!(
        p.exists(),
        "{} not found ({env}); run `make venv` to create the Python environment \
         with cassandra-driver and cqlsh (tests/clients/requirements.txt)",
        p.display()
    );
    p
}

fn python() -> PathBuf {
    tool("CQL_TEST_PYTHON", ".venv/bin/python")
}

fn cqlsh() -> PathBuf {
    tool("CQL_TEST_CQLSH", ".venv/bin/cqlsh")
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cql-devserver"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cql-devserver");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let port = line
            .trim()
            .strip_prefix("cql-devserver listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Server { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    eprintln!("{what}: {}", stdout.lines().last().unwrap_or(""));
}

fn workload(server: &Server, ks: &str, extra: &[&str]) {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/clients/workload.py"))
        .args(["--host", "127.0.0.1", "--port", &server.port.to_string()])
        .args(["--keyspace", ks])
        .args(extra);
    run(&format!("workload {extra:?}"), &mut cmd);
}

#[test]
fn python_driver_workloads() {
    let s = Server::start(&[]);
    workload(&s, "wl_default", &[]);
    workload(&s, "wl_v4", &["--protocol", "4"]);
    workload(
        &s,
        "wl_v4_lz4",
        &["--protocol", "4", "--compression", "lz4"],
    );
    workload(
        &s,
        "wl_v4_snappy",
        &["--protocol", "4", "--compression", "snappy"],
    );
    workload(&s, "wl_v3", &["--protocol", "3"]);
    workload(
        &s,
        "wl_v5_lz4",
        &["--protocol", "5", "--compression", "lz4"],
    );
}

#[test]
fn password_mode_cqlsh_and_bad_password() {
    let s = Server::start(&["--auth", "password", "--user", "alice:secret"]);
    let port = s.port.to_string();
    workload(&s, "wl_auth", &["--user", "alice", "--password", "secret"]);
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/clients/cqlsh_session.py"))
        .args(["--host", "127.0.0.1", "--port", &port])
        .args([
            "--user",
            "alice",
            "--password",
            "secret",
            "--keyspace",
            "cqlsh_it",
        ])
        .env("CQL_TEST_CQLSH", cqlsh());
    run("cqlsh session", &mut cmd);
    // A plain one-shot cqlsh, as in the README.
    let mut cmd = Command::new(cqlsh());
    cmd.args(["127.0.0.1", &port, "-u", "alice", "-p", "secret", "-e"])
        .arg("SELECT key, cql_version FROM system.local");
    let out = cmd.output().expect("cqlsh -e");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(" local |       3.4.5"),
        "cqlsh -e: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/clients/bad_password.py")).args([
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "alice",
    ]);
    run("bad password", &mut cmd);
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h).expect("header");
    let n = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
    let mut body = vec![0u8; n];
    s.read_exact(&mut body).expect("body");
    let mut f = h.to_vec();
    f.extend_from_slice(&body);
    f
}

#[test]
fn unsupported_versions_and_garbage() {
    let s = Server::start(&[]);
    for vb in [0x42u8, 0x41, 0x06] {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).ok();
        c.write_all(&[vb, 0, 0, 0, 5, 0, 0, 0, 0]).expect("write");
        let f = read_frame(&mut c);
        assert_eq!(&f[2..5], &[0, 0, 0], "stream 0, opcode ERROR");
        assert_eq!(&f[9..13], &[0, 0, 0, 0x0A], "code 0x000A");
        let msg = String::from_utf8_lossy(&f[15..]).to_string();
        assert_eq!(
            msg,
            format!(
                "Invalid or unsupported protocol version ({}); supported versions are (3/v3, 4/v4, 5/v5)",
                vb & 0x7f
            )
        );
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "connection closed after the error");
    }
    // A v4 STARTUP whose body is truncated gets a protocol error and a close.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    c.write_all(&[0x04, 0, 0, 7, 1, 0, 0, 0, 3, 0, 9, 0])
        .expect("write");
    let f = read_frame(&mut c);
    assert_eq!(f[0], 0x84);
    assert_eq!(&f[2..4], &[0, 7], "same stream");
    assert_eq!(&f[9..13], &[0, 0, 0, 0x0A]);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
}
