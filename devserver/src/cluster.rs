//! The nodes one process serves over one shared store: their listeners (which the control
//! port stops and starts), their place in the ring, and the record of what each served.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::db::{Db, Event};
use crate::server::{self, Config, Serving};
use crate::system::{self, NodeInfo};
use crate::token;
use crate::util;

/// How many tokens each node owns (evenly spread and interleaved over the ring).
pub const TOKENS_PER_NODE: usize = 4;

/// A node as `--node ADDR:PORT[,dc=DC][,rack=RACK]` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub addr: SocketAddr,
    pub data_center: String,
    pub rack: String,
}

impl NodeSpec {
    /// A node in the default data centre and rack.
    pub fn new(addr: SocketAddr) -> NodeSpec {
        NodeSpec {
            addr,
            data_center: system::DEFAULT_DATA_CENTER.into(),
            rack: system::DEFAULT_RACK.into(),
        }
    }

    /// Parses `ADDR:PORT[,dc=DC][,rack=RACK]`.
    pub fn parse(s: &str) -> Result<NodeSpec, String> {
        let mut parts = s.split(',');
        let addr = parts.next().unwrap_or_default();
        let addr = addr
            .parse()
            .map_err(|_| format!("invalid --node address {addr:?}: expected ADDR:PORT"))?;
        let mut spec = NodeSpec::new(addr);
        for opt in parts {
            match opt.split_once('=') {
                Some(("dc", v)) if !v.is_empty() => spec.data_center = v.to_string(),
                Some(("rack", v)) if !v.is_empty() => spec.rack = v.to_string(),
                _ => {
                    return Err(format!(
                        "invalid --node option {opt:?} in {s:?}: expected dc=DC or rack=RACK"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// One request a node served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub node: SocketAddr,
    pub client: String,
    pub opcode: &'static str,
    /// `keyspace.table` of the statement.
    pub table: Option<String>,
    /// The token of the partition key, when the statement gives all of it.
    pub token: Option<i64>,
    /// The node owning that token.
    pub owner: Option<SocketAddr>,
    /// The name the connection logged in with (password mode), when it had logged in.
    pub user: Option<String>,
}

/// One client connection a node accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub node: SocketAddr,
    pub client: String,
    /// The name the connection logged in with (password mode), once it has.
    pub user: Option<String>,
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string, or null.
fn json_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "null".into(), json_string)
}

impl Served {
    /// `{"node":..,"client":..,"opcode":..,"table":..,"token":..,"owner":..,"user":..}`.
    pub fn json(&self) -> String {
        format!(
            "{{\"node\":{},\"client\":{},\"opcode\":{},\"table\":{},\"token\":{},\"owner\":{},\"user\":{}}}",
            json_string(&self.node.to_string()),
            json_string(&self.client),
            json_string(self.opcode),
            json_opt(self.table.as_deref()),
            self.token.map_or_else(|| "null".into(), |t| t.to_string()),
            json_opt(self.owner.map(|o| o.to_string()).as_deref()),
            json_opt(self.user.as_deref()),
        )
    }
}

impl Accepted {
    /// `{"node":..,"client":..,"user":..}`.
    pub fn json(&self) -> String {
        format!(
            "{{\"node\":{},\"client\":{},\"user\":{}}}",
            json_string(&self.node.to_string()),
            json_string(&self.client),
            json_opt(self.user.as_deref()),
        )
    }
}

/// What every node served and accepted, since start or the last reset (kept only when
/// the control port is on, so that a long benchmark does not fill the memory).
#[derive(Debug, Default)]
pub struct Records {
    served: Mutex<Vec<Served>>,
    accepted: Mutex<Vec<Accepted>>,
}

impl Records {
    pub fn served(&self, s: Served) {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(s);
    }

    pub fn accepted(&self, a: Accepted) {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a);
    }

    /// The connection from `client` to `node` logged in as `user`: its record (the latest
    /// with that address pair, unless a reset forgot it) says so from now on.
    pub fn logged_in(&self, node: SocketAddr, client: &str, user: &str) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = accepted
            .iter_mut()
            .rev()
            .find(|a| a.node == node && a.client == client)
        {
            a.user = Some(user.to_string());
        }
    }

    /// The served requests so far, oldest first.
    pub fn served_list(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The accepted connections so far, oldest first.
    pub fn accepted_list(&self) -> Vec<Accepted> {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn reset(&self) {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// A node's listener while it runs.
struct Running {
    /// Set to true to stop the listener and every connection of the node.
    stop: watch::Sender<bool>,
    /// The accept loop; it ends once the listener and all connections are closed.
    task: JoinHandle<()>,
}

/// A node of the cluster and its listener, if it runs.
struct Node {
    addr: SocketAddr,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// Every node this process serves.
pub struct Cluster {
    db: Arc<Db>,
    cfg: Arc<Config>,
    records: Option<Arc<Records>>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Binds every node's listener (port 0 picks a free port per node), builds the shared
    /// store with their identities and starts serving. `record` keeps the records.
    pub async fn start(
        specs: &[NodeSpec],
        cfg: Arc<Config>,
        record: bool,
    ) -> Result<Arc<Cluster>, String> {
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in specs {
            let l = TcpListener::bind(spec.addr)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", spec.addr))?;
            let local = l.local_addr().map_err(|e| format!("{}: {e}", spec.addr))?;
            listeners.push((l, local));
        }
        let tokens = token::evenly_spaced(specs.len(), TOKENS_PER_NODE);
        let generation = (util::now_millis() / 1000) as i32;
        let infos: Vec<NodeInfo> = specs
            .iter()
            .zip(&listeners)
            .zip(tokens)
            .enumerate()
            .map(|(i, ((spec, (_, local)), tokens))| NodeInfo {
                address: local.ip(),
                native_port: local.port(),
                host_id: system::host_id(i),
                data_center: spec.data_center.clone(),
                rack: spec.rack.clone(),
                tokens,
                cluster_name: "cql-devserver".into(),
                gossip_generation: generation,
            })
            .collect();
        let cluster = Arc::new(Cluster {
            db: Arc::new(Db::new(infos)),
            cfg,
            records: record.then(Arc::default),
            nodes: listeners
                .iter()
                .map(|(_, addr)| Node {
                    addr: *addr,
                    running: tokio::sync::Mutex::new(None),
                })
                .collect(),
        });
        for (i, (listener, _)) in listeners.into_iter().enumerate() {
            let running = cluster.spawn(i, listener);
            if let Some(node) = cluster.nodes.get(i) {
                *node.running.lock().await = Some(running);
            }
        }
        Ok(cluster)
    }

    /// The addresses the nodes serve CQL on, in `--node` order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// The records, when they are kept.
    pub fn records(&self) -> Option<&Arc<Records>> {
        self.records.as_ref()
    }

    fn log(&self, msg: &str) {
        if !self.cfg.quiet {
            eprintln!("cql-devserver: {msg}");
        }
    }

    fn find(&self, addr: SocketAddr) -> Result<(usize, &Node), String> {
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.addr == addr)
            .ok_or_else(|| format!("no node {addr}"))
    }

    /// Starts the accept loop of node `index` on `listener`.
    fn spawn(&self, index: usize, listener: TcpListener) -> Running {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            index,
            self.db.clone(),
            self.cfg.clone(),
            self.records.clone(),
            stopped,
        ));
        Running { stop, task }
    }

    /// Stops a node: its listener closes, then its client connections; once they are
    /// closed the other nodes' registered connections get STATUS_CHANGE DOWN.
    pub async fn stop_node(&self, addr: SocketAddr) -> Result<(), String> {
        let (index, node) = self.find(addr)?;
        let mut slot = node.running.lock().await;
        let running = slot
            .take()
            .ok_or_else(|| format!("node {addr} is already stopped"))?;
        let _ = running.stop.send(true);
        let _ = running.task.await;
        let _ = self.db.events.send(Event::Status {
            node: index,
            up: false,
        });
        self.log(&format!("node {addr} stopped"));
        Ok(())
    }

    /// Starts a stopped node on its address again; the other nodes' registered
    /// connections get STATUS_CHANGE UP.
    pub async fn start_node(&self, addr: SocketAddr) -> Result<(), String> {
        let (index, node) = self.find(addr)?;
        let mut slot = node.running.lock().await;
        if slot.is_some() {
            return Err(format!("node {addr} is already running"));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        *slot = Some(self.spawn(index, listener));
        let _ = self.db.events.send(Event::Status {
            node: index,
            up: true,
        });
        self.log(&format!("node {addr} started"));
        Ok(())
    }
}

/// Accepts the connections of one node until `stopped` turns true; then closes the
/// listener and waits until every connection of the node has closed.
async fn accept_loop(
    listener: TcpListener,
    index: usize,
    db: Arc<Db>,
    cfg: Arc<Config>,
    records: Option<Arc<Records>>,
    mut stopped: watch::Receiver<bool>,
) {
    let node_addr = listener.local_addr().ok();
    let conn_stop = stopped.clone();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = server::until_stopped(&mut stopped) => break,
            acc = listener.accept() => match acc {
                Ok((stream, client)) => {
                    if let (Some(r), Some(node)) = (&records, node_addr) {
                        r.accepted(Accepted { node, client: client.to_string(), user: None });
                    }
                    let serving = Serving {
                        node: index,
                        records: records.clone(),
                        stop: conn_stop.clone(),
                    };
                    conns.spawn(server::handle(stream, db.clone(), cfg.clone(), serving));
                }
                Err(e) => {
                    eprintln!("cql-devserver: accept: {e}");
                    // Out of descriptors, typically: give connections time to close.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs() {
        let n = NodeSpec::parse("127.0.0.2:9042").unwrap();
        assert_eq!(n, NodeSpec::new("127.0.0.2:9042".parse().unwrap()));
        assert_eq!(n.data_center, "datacenter1");
        assert_eq!(n.rack, "rack1");
        let n = NodeSpec::parse("127.0.0.3:9043,dc=dc2,rack=r7").unwrap();
        assert_eq!(n.addr.port(), 9043);
        assert_eq!((n.data_center.as_str(), n.rack.as_str()), ("dc2", "r7"));
        let n = NodeSpec::parse("[::1]:9042,rack=r2").unwrap();
        assert_eq!(
            (n.data_center.as_str(), n.rack.as_str()),
            ("datacenter1", "r2")
        );
        assert!(NodeSpec::parse("127.0.0.2").is_err());
        assert!(NodeSpec::parse("127.0.0.2:9042,zone=a").is_err());
        assert!(NodeSpec::parse("127.0.0.2:9042,dc=").is_err());
        assert!(NodeSpec::parse("").is_err());
    }

    #[test]
    fn records_as_json_lines() {
        let s = Served {
            node: "127.0.0.2:9042".parse().unwrap(),
            client: "127.0.0.1:54012".into(),
            opcode: "EXECUTE",
            table: Some("ks.t".into()),
            token: Some(-4069959284402364209),
            owner: Some("127.0.0.3:9042".parse().unwrap()),
            user: Some("svc_app".into()),
        };
        assert_eq!(
            s.json(),
            r#"{"node":"127.0.0.2:9042","client":"127.0.0.1:54012","opcode":"EXECUTE","table":"ks.t","token":-4069959284402364209,"owner":"127.0.0.3:9042","user":"svc_app"}"#
        );
        let s = Served {
            table: None,
            token: None,
            owner: None,
            user: None,
            opcode: "OPTIONS",
            ..s
        };
        assert_eq!(
            s.json(),
            r#"{"node":"127.0.0.2:9042","client":"127.0.0.1:54012","opcode":"OPTIONS","table":null,"token":null,"owner":null,"user":null}"#
        );
        let a = Accepted {
            node: "127.0.0.1:9042".parse().unwrap(),
            client: "127.0.0.1:5".into(),
            user: None,
        };
        assert_eq!(
            a.json(),
            r#"{"node":"127.0.0.1:9042","client":"127.0.0.1:5","user":null}"#
        );
        let a = Accepted {
            user: Some("svc_\"x".into()),
            ..a
        };
        assert_eq!(
            a.json(),
            r#"{"node":"127.0.0.1:9042","client":"127.0.0.1:5","user":"svc_\"x"}"#
        );
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn a_login_names_the_latest_connection_of_its_address_pair() {
        let r = Records::default();
        let node: SocketAddr = "127.0.0.1:9042".parse().unwrap();
        let other: SocketAddr = "127.0.0.2:9042".parse().unwrap();
        let accepted = |node, client: &str| Accepted {
            node,
            client: client.into(),
            user: None,
        };
        // An earlier connection from the same client port, since closed, keeps its user.
        r.accepted(accepted(node, "127.0.0.1:5"));
        r.logged_in(node, "127.0.0.1:5", "svc_old");
        r.accepted(accepted(node, "127.0.0.1:5"));
        r.accepted(accepted(other, "127.0.0.1:5"));
        r.accepted(accepted(node, "127.0.0.1:6"));
        r.logged_in(node, "127.0.0.1:5", "svc_new");
        let users: Vec<Option<String>> = r.accepted_list().into_iter().map(|a| a.user).collect();
        let want = [Some("svc_old"), Some("svc_new"), None, None].map(|u| u.map(String::from));
        assert_eq!(users, want);
        // A login of a connection the records forgot changes nothing.
        r.reset();
        r.logged_in(node, "127.0.0.1:5", "svc_gone");
        assert!(r.accepted_list().is_empty());
    }

    #[test]
    fn records_reset() {
        let r = Records::default();
        r.accepted(Accepted {
            node: "127.0.0.1:1".parse().unwrap(),
            client: "c".into(),
            user: None,
        });
        assert_eq!(r.accepted_list().len(), 1);
        r.reset();
        assert!(r.accepted_list().is_empty() && r.served_list().is_empty());
    }
}
