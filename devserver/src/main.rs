//! cql-devserver: an in-memory CQL server for development and tests.
//!
//! It speaks the CQL native protocol v3, v4 and v5 (with lz4 and snappy
//! compression and v5 segment framing) well enough for real drivers and cqlsh,
//! and keeps everything in memory. It is a development tool, not a database.

mod cql;
mod db;
mod frame;
mod server;
mod system;
mod types;
mod util;
mod wire;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use server::{AuthMode, Config};

const USAGE: &str = "usage: cql-devserver [--listen ADDR:PORT] [--auth none|password] \
[--user NAME:PASSWORD]... [--users-file FILE] [--quiet]

  --listen ADDR:PORT   address to serve CQL on (default 127.0.0.1:9042; port 0 picks a free port)
  --auth MODE          none (READY after STARTUP, default) or password (PasswordAuthenticator)
  --user NAME:PASSWORD a login accepted in password mode (repeatable)
  --users-file FILE    logins, one `name:password` per line, `#` starts a comment
  --quiet              log nothing but errors";

struct Args {
    listen: SocketAddr,
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
    let mut a = Args {
        listen: "127.0.0.1:9042".parse().map_err(|e| format!("{e}"))?,
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
                a.listen = v
                    .parse()
                    .map_err(|_| format!("invalid --listen address {v:?}: expected ADDR:PORT"))?;
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
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cql-devserver: cannot listen on {}: {e}", args.listen);
            return 1;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cql-devserver: {e}");
            return 1;
        }
    };
    let node = system::NodeInfo {
        address: local.ip(),
        native_port: local.port(),
        host_id: util::uuid_v4(),
        cluster_name: "cql-devserver".into(),
        gossip_generation: (util::now_millis() / 1000) as i32,
    };
    let db = Arc::new(db::Db::new(node));
    let cfg = Arc::new(Config {
        auth: args.auth,
        users: args.users,
        quiet: args.quiet,
    });
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "cql-devserver listening on {local}");
        let _ = out.flush();
    }
    if !cfg.quiet {
        eprintln!(
            "cql-devserver: auth {}, protocol v3/v4/v5, in-memory (development only)",
            match cfg.auth {
                AuthMode::None => "none",
                AuthMode::Password => "password",
            }
        );
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                if !cfg.quiet {
                    eprintln!("cql-devserver: shutting down");
                }
                return 0;
            }
            acc = listener.accept() => match acc {
                Ok((stream, _)) => {
                    tokio::spawn(server::handle(stream, db.clone(), cfg.clone()));
                }
                Err(e) => {
                    eprintln!("cql-devserver: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
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
        assert_eq!(a.listen.port(), 0);
        assert_eq!(a.users.get("alice").map(String::as_str), Some("se:cret"));
        assert!(parse_args(&s(&["--auth", "password"])).is_err());
        assert!(parse_args(&s(&["--auth", "ldap"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
        assert!(parse_args(&s(&["--quiet"])).unwrap().quiet);
    }
}
