//! The control port (`--control ADDR:PORT`), for tests: one command per line, answered by
//! its lines and then `ok` or `error: ...`.
//!
//! * `stop ADDR:PORT`, `start ADDR:PORT`: stop or start a node's listener.
//! * `served`: one JSON line per request served since start or `reset`.
//! * `connections`: one JSON line per client connection accepted since start or `reset`.
//! * `reset`: forgets both.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::Cluster;

/// Serves control connections until the process ends.
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(session(stream, cluster.clone()));
            }
            Err(e) => {
                eprintln!("cql-devserver: control accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Answers the commands of one control connection, in order.
async fn session(stream: TcpStream, cluster: Arc<Cluster>) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let answer = command(&cluster, line).await;
        if wr.write_all(answer.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// The answer to one command line: its lines, then `ok` or `error: ...`, each ending in `\n`.
pub async fn command(cluster: &Cluster, line: &str) -> String {
    let mut out = String::new();
    let (verb, arg) = match line.split_once(char::is_whitespace) {
        Some((v, a)) => (v, Some(a.trim())),
        None => (line, None),
    };
    let result = match (verb, arg) {
        ("stop", Some(a)) => match parse_addr(a) {
            Ok(addr) => cluster.stop_node(addr).await,
            Err(e) => Err(e),
        },
        ("start", Some(a)) => match parse_addr(a) {
            Ok(addr) => cluster.start_node(addr).await,
            Err(e) => Err(e),
        },
        ("stop" | "start", None) => Err(format!("{verb} needs a node address ADDR:PORT")),
        ("served", None) => {
            if let Some(r) = cluster.records() {
                for s in r.served_list() {
                    out.push_str(&s.json());
                    out.push('\n');
                }
            }
            Ok(())
        }
        ("connections", None) => {
            if let Some(r) = cluster.records() {
                for a in r.accepted_list() {
                    out.push_str(&a.json());
                    out.push('\n');
                }
            }
            Ok(())
        }
        ("reset", None) => {
            if let Some(r) = cluster.records() {
                r.reset();
            }
            Ok(())
        }
        ("served" | "connections" | "reset", Some(_)) => {
            Err(format!("{verb} takes no argument"))
        }
        _ => Err(format!(
            "unknown command {line:?}: expected stop ADDR:PORT, start ADDR:PORT, served, connections or reset"
        )),
    };
    match result {
        Ok(()) => out.push_str("ok\n"),
        Err(e) => {
            out.push_str("error: ");
            out.push_str(&e);
            out.push('\n');
        }
    }
    out
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("invalid node address {s:?}: expected ADDR:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeSpec;
    use crate::server::{AuthMode, Config};

    async fn cluster(record: bool) -> Arc<Cluster> {
        let cfg = Arc::new(Config {
            auth: AuthMode::None,
            users: Default::default(),
            quiet: true,
        });
        let specs = [
            NodeSpec::new("127.0.0.1:0".parse().unwrap()),
            NodeSpec::new("127.0.0.2:0".parse().unwrap()),
        ];
        Cluster::start(&specs, cfg, record).await.unwrap()
    }

    #[tokio::test]
    async fn stop_and_start_a_node() {
        let c = cluster(true).await;
        let second = c.addresses()[1];
        let stop = format!("stop {second}");
        let start = format!("start {second}");
        assert_eq!(command(&c, &stop).await, "ok\n");
        assert!(
            tokio::net::TcpStream::connect(second).await.is_err(),
            "the listener is closed"
        );
        assert_eq!(
            command(&c, &stop).await,
            format!("error: node {second} is already stopped\n")
        );
        assert_eq!(command(&c, &start).await, "ok\n");
        let conn = tokio::net::TcpStream::connect(second).await;
        assert!(conn.is_ok(), "listening again");
        assert_eq!(
            command(&c, &start).await,
            format!("error: node {second} is already running\n")
        );
        assert_eq!(
            command(&c, "stop 127.0.0.9:1").await,
            "error: no node 127.0.0.9:1\n"
        );
        assert_eq!(
            command(&c, "stop here").await,
            "error: invalid node address \"here\": expected ADDR:PORT\n"
        );
        assert_eq!(
            command(&c, "stop").await,
            "error: stop needs a node address ADDR:PORT\n"
        );
    }

    #[tokio::test]
    async fn records_and_reset() {
        let c = cluster(true).await;
        let first = c.addresses()[0];
        let records = c.records().unwrap();
        records.accepted(crate::cluster::Accepted {
            node: first,
            client: "127.0.0.1:5".into(),
            user: None,
        });
        assert_eq!(
            command(&c, "connections").await,
            format!("{{\"node\":\"{first}\",\"client\":\"127.0.0.1:5\",\"user\":null}}\nok\n")
        );
        assert_eq!(command(&c, "served").await, "ok\n");
        assert_eq!(command(&c, "reset").await, "ok\n");
        assert_eq!(command(&c, "connections").await, "ok\n");
        assert_eq!(
            command(&c, "reset now").await,
            "error: reset takes no argument\n"
        );
        assert!(command(&c, "shutdown")
            .await
            .starts_with("error: unknown command \"shutdown\""));
    }
}
