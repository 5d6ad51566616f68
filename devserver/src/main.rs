//! cql-devserver: an in-memory CQL server for development and tests.
//!
//! It speaks the CQL native protocol v3, v4 and v5 (with lz4 and snappy
//! compression and v5 segment framing) well enough for real drivers and cqlsh,
//! and keeps everything in memory. It is a development tool, not a database.

mod cluster;
mod control;
mod cql;
mod db;
mod frame;
mod server;
mod system;
mod token;
mod types;
mod util;
mod wire;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use cluster::{Cluster, NodeSpec};
use server::{AuthMode, Config};

const USAGE: &str =
    "usage: cql-devserver [--listen ADDR:PORT | --node ADDR:PORT[,dc=DC][,rack=RACK]...] \
[--control ADDR:PORT] [--auth none|password] [--user NAME:PASSWORD]... [--users-file FILE] [--quiet]

  --listen ADDR:PORT   address to serve CQL on (default 127.0.0.1:9042; port 0 picks a free port)
  --node ADDR:PORT[,dc=DC][,rack=RACK]
                       a node of a development cluster (repeatable, instead of --listen): one
                       process serves every node over one shared store; each answers
                       system.local as itself and system.peers with the others
                       (defaults dc=datacenter1, rack=rack1)
  --control ADDR:PORT  a control port for tests, one command a line, answered by lines then
                       `ok` or `error: ...`: stop ADDR:PORT, start ADDR:PORT (a node's listener),
                       served, connections (JSON lines since start or reset), reset
  --auth MODE          none (READY after STARTUP, default) or password (PasswordAuthenticator)
  --user NAME:PASSWORD a login accepted in password mode (repeatable)
  --users-file FILE    logins, one `name:password` per line, `#` starts a comment
  --quiet              log nothing but errors";

/// Where `--listen` serves when neither it nor `--node` is given.
const DEFAULT_LISTEN: &str = "127.0.0.1:9042";

struct Args {
    /// The nodes to serve: the `--listen` address alone, or every `--node`.
    nodes: Vec<NodeSpec>,
    control: Option<SocketAddr>,
    auth: AuthMode,
    users: HashMap<String, String>,
    quiet: bool,
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(format!("invalid user {s:?}: expected NAME:PASSWORD")),
    }
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut listen: Option<SocketAddr> = None;
    let mut a = Args {
        nodes: Vec::new(),
        control: None,
        auth: AuthMode::None,
        users: HashMap::new(),
        quiet: false,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag {
            "--listen" => {
                let v = value("--listen")?;
                listen =
                    Some(v.parse().map_err(|_| {
                        format!("invalid --listen address {v:?}: expected ADDR:PORT")
                    })?);
            }
            "--node" => {
                let spec = NodeSpec::parse(&value("--node")?)?;
                // Port 0 picks a port per node: several nodes may share an address then.
                if spec.addr.port() != 0 && a.nodes.iter().any(|n| n.addr == spec.addr) {
                    return Err(format!("--node {} is given twice", spec.addr));
                }
                a.nodes.push(spec);
            }
            "--control" => {
                let v = value("--control")?;
                a.control =
                    Some(v.parse().map_err(|_| {
                        format!("invalid --control address {v:?}: expected ADDR:PORT")
                    })?);
            }
            "--auth" => {
                a.auth = match value("--auth")?.as_str() {
                    "none" => AuthMode::None,
                    "password" => AuthMode::Password,
                    other => {
                        return Err(format!(
                            "invalid --auth {other:?}: expected none or password"
                        ))
                    }
                }
            }
            "--user" => {
                let (u, p) = parse_user(&value("--user")?)?;
                a.users.insert(u, p);
            }
            "--users-file" => {
                let path = value("--users-file")?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read --users-file {path}: {e}"))?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (u, p) = parse_user(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
                    a.users.insert(u, p);
                }
            }
            "--quiet" | "-q" => a.quiet = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (listen, a.nodes.is_empty()) {
        (Some(_), false) => return Err("--listen and --node cannot be used together".into()),
        (Some(addr), true) => a.nodes.push(NodeSpec::new(addr)),
        (None, true) => a.nodes.push(NodeSpec::new(
            DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?,
        )),
        (None, false) => {}
    }
    if a.auth == AuthMode::Password && a.users.is_empty() {
        return Err("--auth password needs at least one --user or --users-file".into());
    }
    Ok(a)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cql-devserver: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cql-devserver: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let cfg = Arc::new(Config {
        auth: args.auth,
        users: args.users,
        quiet: args.quiet,
    });
    let control = match args.control {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("cql-devserver: cannot listen on {addr}: {e}");
                return 1;
            }
        },
        None => None,
    };
    let cluster = match Cluster::start(&args.nodes, cfg.clone(), control.is_some()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cql-devserver: {e}");
            return 1;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        for addr in cluster.addresses() {
            let _ = writeln!(out, "cql-devserver listening on {addr}");
        }
        if let Some(addr) = control.as_ref().and_then(|l| l.local_addr().ok()) {
            let _ = writeln!(out, "cql-devserver control on {addr}");
        }
        let _ = out.flush();
    }
    if let Some(listener) = control {
        tokio::spawn(control::serve(listener, cluster.clone()));
    }
    if !cfg.quiet {
        eprintln!(
            "cql-devserver: auth {}, protocol v3/v4/v5, {} node(s), in-memory (development only)",
            match cfg.auth {
                AuthMode::None => "none",
                AuthMode::Password => "password",
            },
            args.nodes.len()
        );
    }
    shutdown_signal().await;
    if !cfg.quiet {
        eprintln!("cql-devserver: shutting down");
    }
    0
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args() {
        let a = parse_args(&s(&[
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "password",
            "--user",
            "alice:se:cret",
        ]))
        .unwrap();
        assert_eq!(a.nodes.len(), 1);
        assert_eq!(a.nodes[0].addr.port(), 0);
        assert_eq!(a.users.get("alice").map(String::as_str), Some("se:cret"));
        assert!(parse_args(&s(&["--auth", "password"])).is_err());
        assert!(parse_args(&s(&["--auth", "ldap"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
        let q = parse_args(&s(&["--quiet"])).unwrap();
        assert!(q.quiet);
        assert_eq!(
            q.nodes,
            vec![NodeSpec::new(DEFAULT_LISTEN.parse().unwrap())]
        );
        assert_eq!(q.control, None);
    }

    #[test]
    fn cluster_args() {
        let a = parse_args(&s(&[
            "--node",
            "127.0.0.1:9042",
            "--node=127.0.0.2:9042,dc=dc2",
            "--node",
            "127.0.0.3:9042,rack=r3,dc=dc3",
            "--control",
            "127.0.0.1:0",
        ]))
        .unwrap();
        let addrs: Vec<String> = a.nodes.iter().map(|n| n.addr.to_string()).collect();
        assert_eq!(
            addrs,
            ["127.0.0.1:9042", "127.0.0.2:9042", "127.0.0.3:9042"]
        );
        assert_eq!(a.nodes[0].data_center, "datacenter1");
        assert_eq!(a.nodes[1].data_center, "dc2");
        assert_eq!(a.nodes[1].rack, "rack1");
        assert_eq!(
            (a.nodes[2].data_center.as_str(), a.nodes[2].rack.as_str()),
            ("dc3", "r3")
        );
        assert_eq!(a.control, Some("127.0.0.1:0".parse().unwrap()));
        let one = parse_args(&s(&["--node", "127.0.0.2:9042"])).unwrap();
        assert_eq!(
            one.nodes,
            vec![NodeSpec::new("127.0.0.2:9042".parse().unwrap())]
        );
        let e = |v: &[&str]| parse_args(&s(v)).err().unwrap_or_default();
        assert_eq!(
            e(&["--listen", "127.0.0.1:1", "--node", "127.0.0.2:1"]),
            "--listen and --node cannot be used together"
        );
        assert_eq!(
            e(&["--node", "127.0.0.2:1", "--node", "127.0.0.2:1,dc=x"]),
            "--node 127.0.0.2:1 is given twice"
        );
        let two = parse_args(&s(&["--node", "127.0.0.1:0", "--node", "127.0.0.1:0"])).unwrap();
        assert_eq!(two.nodes.len(), 2, "port 0 twice: two free ports");
        assert!(e(&["--node", "localhost"]).contains("expected ADDR:PORT"));
        assert!(e(&["--control", "nowhere"]).contains("invalid --control"));
        assert!(e(&["--node"]).contains("needs a value"));
    }
}
