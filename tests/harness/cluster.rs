//! Helpers for tests in front of a cluster: the development server in cluster mode with its
//! control port, the CQL gate's keys and certificates, the Python driver as a process that
//! takes one command at a time (`tests/clients/cluster.py`), and the Rust `scylla` driver.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use serde::Deserialize;

use super::{cql_token, free_port, profile_dir, python, read_or_empty, repo_dir, wait_for};

/// The issuer of the test tokens.
pub const ISSUER: &str = "https://idp.example.test/realms/cluster";
/// The audience of the test tokens.
pub const AUDIENCE: &str = "cassandra";

// ---------------------------------------------------------------------------------------
// The development server as a cluster
// ---------------------------------------------------------------------------------------

/// One request a node served, as the control port's `served` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Served {
    /// The node that served it (`addr:port`).
    pub node: String,
    /// Who sent it (`addr:port`).
    pub client: String,
    /// The request's opcode (`QUERY`, `EXECUTE`, ...).
    pub opcode: String,
    /// `keyspace.table` of a statement on a user table.
    pub table: Option<String>,
    /// The token of a fully bound partition key.
    pub token: Option<i64>,
    /// The node owning that token in the ring.
    pub owner: Option<String>,
    /// The name its connection had logged in with (password mode), if it had.
    pub user: Option<String>,
}

/// One client connection a node accepted, as the control port's `connections` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    pub node: String,
    pub client: String,
    /// The name the connection logged in with (password mode), once it has.
    pub user: Option<String>,
}

/// `cql-devserver` serving several node addresses over one store (`--node`), with its
/// control port (`--control`); stopped on drop.
pub struct DevCluster {
    child: Child,
    /// Every node's address, in the order given.
    pub nodes: Vec<SocketAddr>,
    /// The control port's address.
    pub control: SocketAddr,
}

impl DevCluster {
    /// Starts one node per `--node` argument (`IP` or `IP,dc=DC,rack=RACK`), all on one free
    /// port; returns once every node accepts connections and the records are empty.
    pub fn start(nodes: &[&str]) -> DevCluster {
        DevCluster::start_with(nodes, &[])
    }

    /// As [`DevCluster::start`], with more arguments (`--auth password --users-file F`).
    pub fn start_with(nodes: &[&str], args: &[&str]) -> DevCluster {
        let binary = profile_dir().join("cql-devserver");
        assert!(
            binary.exists(),
            "{} is missing: build it with `cargo build -p cql-devserver`",
            binary.display()
        );
        let port = free_port();
        let control: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("control address");
        let mut cmd = Command::new(&binary);
        let mut addrs = Vec::new();
        for node in nodes {
            let (ip, options) = node.split_once(',').unwrap_or((node, ""));
            let addr: SocketAddr = format!("{ip}:{port}").parse().expect("node address");
            addrs.push(addr);
            let arg = if options.is_empty() {
                addr.to_string()
            } else {
                format!("{addr},{options}")
            };
            cmd.args(["--node", &arg]);
        }
        let child = cmd
            .args(args)
            .args(["--control", &control.to_string(), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cql-devserver");
        let cluster = DevCluster {
            child,
            nodes: addrs,
            control,
        };
        for addr in std::iter::once(&control).chain(cluster.nodes.iter()) {
            wait_for(Duration::from_secs(10), || TcpStream::connect(addr).ok())
                .unwrap_or_else(|| panic!("the development cluster does not listen on {addr}"));
        }
        // The probes above are connections too: wait until each is recorded, then clear.
        wait_for(Duration::from_secs(10), || {
            (cluster.connections().len() >= cluster.nodes.len()).then_some(())
        })
        .expect("the development cluster recorded the probe connections");
        cluster.reset();
        cluster
    }

    /// Node `i` (from 0).
    pub fn node(&self, i: usize) -> SocketAddr {
        self.nodes[i]
    }

    /// The port every node listens on.
    pub fn port(&self) -> u16 {
        self.nodes[0].port()
    }

    /// Sends one command to the control port; the lines before `ok`, or the error line.
    pub fn command(&self, line: &str) -> Result<Vec<String>, String> {
        let mut stream = TcpStream::connect(self.control).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        writeln!(stream, "{line}").map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        for got in BufReader::new(stream).lines() {
            let got = got.map_err(|e| format!("{line}: {e}"))?;
            if got == "ok" {
                return Ok(answer);
            }
            if got.starts_with("error") {
                return Err(format!("{line}: {got}"));
            }
            answer.push(got);
        }
        Err(format!("{line}: the control port closed before `ok`"))
    }

    fn command_ok(&self, line: &str) -> Vec<String> {
        self.command(line)
            .unwrap_or_else(|e| panic!("control port: {e}"))
    }

    /// Closes a node's listener and its connections (the others announce it DOWN).
    pub fn stop_node(&self, node: SocketAddr) {
        self.command_ok(&format!("stop {node}"));
    }

    /// Opens a stopped node's listener again (the others announce it UP).
    pub fn start_node(&self, node: SocketAddr) {
        self.command_ok(&format!("start {node}"));
    }

    /// What every node served since the start or the last [`DevCluster::reset`].
    pub fn served(&self) -> Vec<Served> {
        parse_records(&self.command_ok("served"))
    }

    /// The connections every node accepted since the start or the last reset.
    pub fn connections(&self) -> Vec<Accepted> {
        parse_records(&self.command_ok("connections"))
    }

    /// Clears both records.
    pub fn reset(&self) {
        self.command_ok("reset");
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_records<T: for<'de> Deserialize<'de>>(lines: &[String]) -> Vec<T> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record ({e}): {l}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The gate's keys, policy and certificates
// ---------------------------------------------------------------------------------------

/// A signing key, a policy and (on demand) certificates in a fresh folder.
pub struct Gate {
    pub dir: PathBuf,
}

impl Gate {
    /// Makes a signing key (`ec-1`, ES256: quick to make) and writes `policy`.
    pub fn new(name: &str, policy: &str) -> Gate {
        let dir = super::scratch_dir(name);
        signing_key(&dir.join("keys"));
        fs::write(dir.join("policy.toml"), policy).expect("write the policy");
        Gate { dir }
    }

    /// A file of this folder, as a string for a configuration.
    pub fn path(&self, name: &str) -> String {
        path_str(&self.dir.join(name))
    }

    /// A token for `sub`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        cql_token(&[
            "mint",
            "--key",
            &self.path("keys/ec-1.key"),
            "--sub",
            sub,
            "--iss",
            ISSUER,
            "--aud",
            AUDIENCE,
        ])
    }

    /// The directives of a gated `server`: tokens checked, the policy, an audit log.
    pub fn directives(&self) -> String {
        format!(
            "cql on;\n\
             cql_auth jwt;\n\
             cql_jwt_keys {keys};\n\
             cql_jwt_issuer {ISSUER};\n\
             cql_jwt_audience {AUDIENCE};\n\
             cql_policy {policy};\n\
             cql_audit_log logs/audit.log;\n",
            keys = self.path("keys/jwks.json"),
            policy = self.path("policy.toml"),
        )
    }

    /// A CA (`ca/`), a CA nobody trusts (`rogue-ca/`), the proxy's certificate for
    /// localhost and 127.0.0.1 (`server.pem`, `server.key`), and an upstream certificate
    /// for `upstream_name` (`upstream.pem`, `upstream.key`).
    pub fn certificates(&self, upstream_name: &str) {
        cql_token(&["ca", "--out", &self.path("ca"), "--cn", "Cluster Test CA"]);
        cql_token(&["ca", "--out", &self.path("rogue-ca"), "--cn", "Rogue CA"]);
        cql_token(&[
            "cert",
            "--ca",
            &self.path("ca"),
            "--cn",
            "localhost",
            "--server",
            "--out",
            &self.path("server"),
        ]);
        cql_token(&[
            "cert",
            "--ca",
            &self.path("ca"),
            "--cn",
            upstream_name,
            "--san-dns",
            upstream_name,
            "--server",
            "--out",
            &self.path("upstream"),
        ]);
    }
}

/// Makes a signing key `ec-1` (ES256: quick to make) in the folder `out`: `ec-1.key` and the
/// public keys beside it.
pub fn signing_key(out: &Path) {
    cql_token(&[
        "keygen",
        "--kid",
        "ec-1",
        "--alg",
        "ES256",
        "--out",
        &path_str(out),
    ]);
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}

// ---------------------------------------------------------------------------------------
// The Python driver, one command at a time
// ---------------------------------------------------------------------------------------

/// A Python driver script (`tests/clients/cluster.py` unless another is named) in a process
/// of its own, answering each JSON command with one JSON line.
pub struct PyDriver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: PathBuf,
    script: String,
}

impl PyDriver {
    /// Starts `tests/clients/cluster.py` with its arguments (`--host`, `--port`, `--token`,
    /// `--ca`, ...); what the driver logs goes to `stderr_dir/python.log`.
    pub fn start(stderr_dir: &Path, args: &[&str]) -> PyDriver {
        PyDriver::spawn("cluster.py", stderr_dir.join("python.log"), args)
    }

    /// Starts `tests/clients/SCRIPT` with its arguments; what it logs goes to
    /// `stderr_dir/NAME-python.log` (`NAME` is the script's name without `.py`).
    pub fn start_script(script: &str, stderr_dir: &Path, args: &[&str]) -> PyDriver {
        let name = script.strip_suffix(".py").unwrap_or(script);
        let stderr = stderr_dir.join(format!("{name}-python.log"));
        PyDriver::spawn(script, stderr, args)
    }

    fn spawn(script: &str, stderr: PathBuf, args: &[&str]) -> PyDriver {
        let log = fs::File::create(&stderr).expect("create the Python log");
        let mut child = Command::new(python())
            .arg(repo_dir().join("tests/clients").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e:?}"));
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("{script} stdout"));
        PyDriver {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr,
            script: script.to_string(),
        }
    }

    /// Sends a command; its answer (`"ok"` true or false).
    pub fn call(&mut self, command: serde_json::Value) -> serde_json::Value {
        let script = &self.script;
        let Some(stdin) = self.stdin.as_mut() else {
            panic!("{script} stdin");
        };
        if writeln!(stdin, "{command}")
            .and_then(|_| stdin.flush())
            .is_err()
        {
            panic!("{script} ended:\n{}", read_or_empty(&self.stderr));
        }
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{script} answered {line:?} ({e})")),
            _ => panic!(
                "{script} ended on {command}:\n{}",
                read_or_empty(&self.stderr)
            ),
        }
    }

    /// Sends a command that must succeed; its answer.
    pub fn ok(&mut self, command: serde_json::Value) -> serde_json::Value {
        let answer = self.call(command.clone());
        assert_eq!(
            answer["ok"],
            true,
            "{command} failed: {answer}\n--- driver log\n{}",
            read_or_empty(&self.stderr)
        );
        answer
    }

    /// The driver's hosts (`ip:port`), sorted.
    pub fn hosts(&mut self) -> Vec<String> {
        let answer = self.ok(serde_json::json!({"cmd": "hosts"}));
        let mut hosts: Vec<String> = answer["hosts"]
            .as_array()
            .expect("a host list")
            .iter()
            .filter_map(|h| h["address"].as_str().map(str::to_string))
            .collect();
        hosts.sort();
        hosts
    }
}

impl Drop for PyDriver {
    fn drop(&mut self) {
        // End of input ends the script; kill it if the driver's shutdown hangs.
        drop(self.stdin.take());
        let ended = wait_for(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        });
        if ended.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scylla driver
// ---------------------------------------------------------------------------------------

/// A small multi-threaded runtime for the `scylla` driver.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A `scylla` session through `contact`, logging in with `token` as the password.
pub async fn scylla_session(contact: &str, user: &str, token: &str) -> Result<Session, String> {
    SessionBuilder::new()
        .known_node(contact)
        .user(user, token)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|e| format!("scylla session through {contact}: {e}"))
}

/// The nodes the `scylla` driver knows (`ip:port`), sorted.
pub fn scylla_hosts(session: &Session) -> Vec<String> {
    let mut hosts: Vec<String> = session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .map(|n| format!("{}:{}", n.address.ip(), n.address.port()))
        .collect();
    hosts.sort();
    hosts
}

/// Whether the `scylla` driver has an open connection to the node at `address`.
pub fn scylla_connected(session: &Session, address: &str) -> Option<bool> {
    session
        .get_cluster_state()
        .get_nodes_info()
        .iter()
        .find(|n| format!("{}:{}", n.address.ip(), n.address.port()) == address)
        .map(|n| n.is_connected())
}
