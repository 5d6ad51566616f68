//! Integration-test harness: runs the real NGINX binary with the module.
//!
//! It finds the NGINX binary and the module that this build produced, writes a
//! configuration into a fresh prefix with free loopback ports, starts NGINX (a master and
//! one worker) and stops it by its PID. Every test fails if the error log shows a worker
//! that exited on a signal.
//!
//! Overrides: `CQL_NGINX_BIN` (an NGINX binary), `CQL_MODULE` (the module's `.so`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod cql;
pub mod replay;

/// `target/<profile>`, found from the running test binary (`target/<profile>/deps/x`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The repository root.
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The NGINX binary of the build the module was compiled against (see build.rs).
pub fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CQL_NGINX_BIN") {
        return PathBuf::from(path);
    }
    let Some(build_dir) = option_env!("CQL_NGINX_BUILD_DIR") else {
        panic!("build.rs did not report the NGINX build folder; set CQL_NGINX_BIN");
    };
    let path = PathBuf::from(build_dir).join("nginx");
    assert!(
        path.exists(),
        "no NGINX binary at {}: with NGINX_BUILD_DIR set, build NGINX there or set CQL_NGINX_BIN",
        path.display()
    );
    path
}

/// The module built by this profile.
pub fn module_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CQL_MODULE") {
        return PathBuf::from(path);
    }
    let path = profile_dir().join("libngx_stream_cql_module.so");
    assert!(path.exists(), "module not built: {}", path.display());
    path
}

/// Runs the `cql-token` tool of this build; a minted token is registered as a secret that no
/// log may hold ([`never_logged`]).
pub fn cql_token(args: &[&str]) -> String {
    let out = run_ok(Command::new(profile_dir().join("cql-token")).args(args));
    let out = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    if args.first() == Some(&"mint") {
        never_logged(&out);
    }
    out
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh, empty directory for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = profile_dir()
        .join("it")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("logs")).expect("create test prefix");
    fs::create_dir_all(dir.join("conf")).expect("create test prefix");
    dir
}

/// `load_module` lines for this module, preceded by any modules it needs loaded first
/// (`CQL_PRELOAD_MODULES`, colon-separated: e.g. Debian's dynamic stream module).
pub fn load_module_lines() -> String {
    let mut lines = String::new();
    if let Some(preload) = std::env::var_os("CQL_PRELOAD_MODULES") {
        for path in std::env::split_paths(&preload) {
            lines.push_str(&format!("load_module {};\n", path.display()));
        }
    }
    lines.push_str(&format!("load_module {};\n", module_path().display()));
    lines
}

/// The line of the generated nginx.conf on which line `n` (from 1) of the stream body stands.
pub fn stream_body_line(n: usize) -> usize {
    load_module_lines().lines().count() + 5 + n
}

/// A whole nginx.conf around a `stream { ... }` body, loading the module.
pub fn config_with_stream(stream_body: &str) -> String {
    format!(
        "{modules}\
         worker_processes 1;\n\
         error_log logs/error.log info;\n\
         pid logs/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         stream {{\n{stream_body}\n}}\n",
        modules = load_module_lines()
    )
}

/// Runs `nginx -t` on a configuration text; returns whether it passed and what it said.
pub fn test_config(name: &str, config: &str) -> (bool, String, PathBuf) {
    let prefix = scratch_dir(name);
    let conf = prefix.join("conf/nginx.conf");
    fs::write(&conf, config).expect("write nginx.conf");
    let out = nginx_command(&prefix)
        .arg("-t")
        .output()
        .expect("run nginx -t");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), text, conf)
}

fn nginx_command(prefix: &Path) -> Command {
    let mut cmd = Command::new(nginx_binary());
    cmd.arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(prefix.join("conf/nginx.conf"))
        .arg("-e")
        .arg(prefix.join("logs/error.log"));
    cmd
}

/// A running NGINX: master and one worker.
pub struct Nginx {
    pub prefix: PathBuf,
    pid: u32,
    stopped: bool,
}

impl Nginx {
    /// Starts NGINX with the given `stream` body; panics with the error log if it fails.
    pub fn start(name: &str, stream_body: &str) -> Nginx {
        Self::start_with_config(name, &config_with_stream(stream_body))
    }

    pub fn start_with_config(name: &str, config: &str) -> Nginx {
        let prefix = scratch_dir(name);
        fs::write(prefix.join("conf/nginx.conf"), config).expect("write nginx.conf");
        let out = nginx_command(&prefix).output().expect("run nginx");
        if !out.status.success() {
            panic!(
                "nginx did not start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                read_or_empty(&prefix.join("logs/error.log"))
            );
        }
        let pid_file = prefix.join("logs/nginx.pid");
        let pid = wait_for(Duration::from_secs(10), || {
            fs::read_to_string(&pid_file)
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .expect("nginx wrote its pid file");
        let nginx = Nginx {
            prefix,
            pid,
            stopped: false,
        };
        wait_for(Duration::from_secs(10), || {
            nginx.worker_pids().first().copied()
        })
        .expect("nginx started a worker");
        nginx
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker processes of this master.
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid)
    }

    pub fn error_log(&self) -> String {
        read_or_empty(&self.prefix.join("logs/error.log"))
    }

    pub fn read_log(&self, name: &str) -> String {
        read_or_empty(&self.prefix.join("logs").join(name))
    }

    /// Replaces the configuration and reloads (`nginx -s reload`), waiting for a new worker.
    pub fn reload_with(&self, stream_body: &str) {
        fs::write(
            self.prefix.join("conf/nginx.conf"),
            config_with_stream(stream_body),
        )
        .expect("write nginx.conf");
        reload(&self.prefix, self.pid);
    }

    /// `nginx -s <signal>` against this instance.
    pub fn signal(&self, signal: &str) {
        signal_nginx(&self.prefix, signal);
    }

    /// Stops NGINX and fails if any worker exited on a signal (a crash).
    pub fn stop(mut self) -> String {
        self.shutdown();
        let log = self.error_log();
        assert_no_crash(&log);
        log
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let gone = wait_for(Duration::from_secs(10), || {
            (!Path::new(&format!("/proc/{}", self.pid)).exists()).then_some(())
        });
        if gone.is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        if !std::thread::panicking() {
            assert_no_secrets(&self.prefix.join("logs"));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let was_running = !self.stopped;
        self.shutdown();
        if was_running && !std::thread::panicking() {
            assert_no_crash(&self.error_log());
        }
    }
}

static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Registers a token, password or bound value that must never appear in a log file: every
/// NGINX a test started has its log folder scanned when it stops.
pub fn never_logged(secret: &str) {
    if let Ok(mut secrets) = SECRETS.lock() {
        secrets.push(secret.to_string());
    }
}

/// Fails when a file under `logs` holds a registered secret or anything shaped like a JWT
/// (`eyJ...` header, a dot, `eyJ...` claims).
pub fn assert_no_secrets(logs: &Path) {
    let secrets = SECRETS.lock().map(|s| s.clone()).unwrap_or_default();
    let Ok(entries) = fs::read_dir(logs) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} contains a secret: {}",
                path.display(),
                secret
            );
        }
        if let Some(at) = find_jwt(&text) {
            panic!(
                "{} contains a token: {}",
                path.display(),
                &text[at..(at + 60).min(text.len())]
            );
        }
    }
}

/// Where a JWT-shaped run starts in `text`.
fn find_jwt(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    let mut from = 0;
    while let Some(i) = text[from..].find("eyJ").map(|i| i + from) {
        let mut j = i;
        while j < b.len() && b64(b[j]) {
            j += 1;
        }
        if j - i >= 10 && b.get(j) == Some(&b'.') && text[j + 1..].starts_with("eyJ") {
            return Some(i);
        }
        from = i + 3;
    }
    None
}

/// `nginx -s <signal>` against the instance running in `prefix`.
pub fn signal_nginx(prefix: &Path, signal: &str) {
    let out = nginx_command(prefix)
        .args(["-s", signal])
        .output()
        .expect("run nginx -s");
    assert!(
        out.status.success(),
        "nginx -s {signal}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `nginx -s reload` of the instance in `prefix` (master `pid`), waiting for a new worker.
pub fn reload(prefix: &Path, pid: u32) {
    let before = children_of(pid);
    signal_nginx(prefix, "reload");
    wait_for(Duration::from_secs(10), || {
        children_of(pid)
            .iter()
            .any(|p| !before.contains(p))
            .then_some(())
    })
    .expect("a new worker after reload");
}

/// Fails when an error log shows a worker that exited on a signal.
pub fn assert_no_crash(error_log: &str) {
    let crashes: Vec<&str> = error_log
        .lines()
        .filter(|l| l.contains("exited on signal"))
        .collect();
    assert!(
        crashes.is_empty(),
        "NGINX worker crashed:\n{}",
        crashes.join("\n")
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    read_or_empty(Path::new(&path))
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

pub fn read_or_empty(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// Polls `f` until it returns something or the time is up.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something accepts connections on a loopback port.
pub fn wait_for_port(port: u16) {
    wait_for(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("nothing listens on 127.0.0.1:{port}"));
}

/// The development CQL server, started on a free port; stopped on drop.
pub struct DevServer {
    child: Child,
    pub port: u16,
}

impl DevServer {
    /// Starts `cql-devserver` with extra arguments (e.g. `--auth password --user u:p`).
    pub fn start(args: &[&str]) -> DevServer {
        let binary = profile_dir().join("cql-devserver");
        assert!(
            binary.exists(),
            "{} is missing: build it with `cargo build -p cql-devserver` (or run `make test`)",
            binary.display()
        );
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cql-devserver");
        let stdout = child.stdout.take().expect("devserver stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the devserver's first line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected devserver banner: {line:?}"));
        DevServer { child, port }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python interpreter with cassandra-driver (`CQL_TEST_PYTHON`, default `.venv/bin/python`).
pub fn python() -> PathBuf {
    tool("CQL_TEST_PYTHON", ".venv/bin/python")
}

/// cqlsh (`CQL_TEST_CQLSH`, default `.venv/bin/cqlsh`).
pub fn cqlsh() -> PathBuf {
    tool("CQL_TEST_CQLSH", ".venv/bin/cqlsh")
}

fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join(default));
    assert!(
        path.exists(),
        "{} is missing: run `make venv` (or set {var})",
        path.display()
    );
    path
}

/// Runs a command and returns its output, failing the test with everything it printed.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One scrape of a `cql_metrics` handler on loopback `port`: the body, after checking the
/// status and the content type of Prometheus's text format.
pub fn scrape_metrics(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the handler");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    body.to_string()
}

/// The samples of an exposition: `name{label="value",...}` → value.
pub fn metric_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Reads exactly `n` bytes or fails after `limit`.
pub fn read_exact_within(stream: &mut TcpStream, n: usize, limit: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(limit)).expect("set timeout");
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read from proxy");
    buf
}
