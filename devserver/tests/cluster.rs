//! A three-node development cluster (`--node` x3, `--control`), driven over raw sockets:
//! each node's view of the topology, STATUS_CHANGE events when a node stops and starts,
//! one shared store, and the control port's records with tokens and owners.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a read may wait before the test fails (a bound, not a pause).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

const OP_ERROR: u8 = 0x00;
const OP_STARTUP: u8 = 0x01;
const OP_READY: u8 = 0x02;
const OP_AUTHENTICATE: u8 = 0x03;
const OP_QUERY: u8 = 0x07;
const OP_RESULT: u8 = 0x08;
const OP_PREPARE: u8 = 0x09;
const OP_EXECUTE: u8 = 0x0A;
const OP_REGISTER: u8 = 0x0B;
const OP_EVENT: u8 = 0x0C;
const OP_AUTH_RESPONSE: u8 = 0x0F;
const OP_AUTH_SUCCESS: u8 = 0x10;

/// The devserver serving three nodes, with its control connection; killed on drop.
struct DevCluster {
    child: Child,
    nodes: Vec<SocketAddr>,
    control: BufReader<TcpStream>,
}

impl DevCluster {
    /// Three nodes, the third in another data centre and rack.
    fn start() -> DevCluster {
        DevCluster::start_with(&[
            "--node",
            "127.0.0.1:0",
            "--node",
            "127.0.0.2:0",
            "--node",
            "127.0.0.3:0,dc=dc2,rack=r3",
        ])
    }

    /// The nodes and options of `args`, with a control port.
    fn start_with(args: &[&str]) -> DevCluster {
        let count = args.iter().filter(|a| **a == "--node").count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cql-devserver"))
            .args(args)
            .args(["--control", "127.0.0.1:0", "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cql-devserver");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = || {
            let mut l = String::new();
            out.read_line(&mut l).expect("read a banner line");
            l.trim().to_string()
        };
        let nodes: Vec<SocketAddr> = (0..count)
            .map(|_| {
                let l = line();
                l.strip_prefix("cql-devserver listening on ")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected banner line {l:?}"))
            })
            .collect();
        let l = line();
        let control: SocketAddr = l
            .strip_prefix("cql-devserver control on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected banner line {l:?}"));
        let control = TcpStream::connect(control).expect("connect to the control port");
        control.set_read_timeout(Some(READ_TIMEOUT)).ok();
        DevCluster {
            child,
            nodes,
            control: BufReader::new(control),
        }
    }

    /// Sends a control command; its answer lines, or a panic on `error: ...`.
    fn control(&mut self, cmd: &str) -> Vec<String> {
        writeln!(self.control.get_mut(), "{cmd}").expect("write a control command");
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self
                .control
                .read_line(&mut l)
                .expect("read the control answer");
            assert!(n > 0, "control port closed after {cmd:?}");
            match l.trim_end() {
                "ok" => return lines,
                e if e.starts_with("error: ") => panic!("{cmd:?}: {e}"),
                other => lines.push(other.to_string()),
            }
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A v4 client connection on raw sockets.
struct Client {
    s: TcpStream,
}

struct Frame {
    stream: i16,
    opcode: u8,
    body: Vec<u8>,
}

fn put_string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Reads the protocol's types from a frame body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "body too short");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u16() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn short_bytes(&mut self) -> Vec<u8> {
        let n = self.u16() as usize;
        self.take(n).to_vec()
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.i32();
        (n >= 0).then(|| self.take(n as usize).to_vec())
    }
    fn inet(&mut self) -> SocketAddr {
        let n = self.take(1)[0] as usize;
        let ip: std::net::IpAddr = match self.take(n) {
            [a, b, c, d] => std::net::Ipv4Addr::new(*a, *b, *c, *d).into(),
            v => panic!("unexpected inet {v:?}"),
        };
        SocketAddr::new(ip, self.i32() as u16)
    }
    /// Skips an [option] (a column type).
    fn option(&mut self) {
        match self.u16() {
            0x0000 => {
                self.string();
            }
            0x0020 | 0x0022 => self.option(),
            0x0021 => {
                self.option();
                self.option();
            }
            _ => {}
        }
    }
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        s.set_read_timeout(Some(READ_TIMEOUT)).ok();
        let mut c = Client { s };
        let mut b = Vec::new();
        b.extend_from_slice(&1u16.to_be_bytes());
        put_string(&mut b, "CQL_VERSION");
        put_string(&mut b, "3.0.0");
        let f = c.request(OP_STARTUP, &b);
        assert_eq!(f.opcode, OP_READY, "STARTUP on {addr}");
        c
    }

    /// STARTUP answered by AUTHENTICATE, then SASL PLAIN `user` / `password`: the answer.
    fn login(addr: SocketAddr, user: &str, password: &str) -> (Client, Frame) {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        s.set_read_timeout(Some(READ_TIMEOUT)).ok();
        let mut c = Client { s };
        let mut b = Vec::new();
        b.extend_from_slice(&1u16.to_be_bytes());
        put_string(&mut b, "CQL_VERSION");
        put_string(&mut b, "3.0.0");
        let f = c.request(OP_STARTUP, &b);
        assert_eq!(f.opcode, OP_AUTHENTICATE, "STARTUP on {addr}");
        let token = format!("\0{user}\0{password}");
        let mut b = Vec::new();
        b.extend_from_slice(&(token.len() as i32).to_be_bytes());
        b.extend_from_slice(token.as_bytes());
        c.send(1, OP_AUTH_RESPONSE, &b);
        let f = c.read();
        (c, f)
    }

    fn send(&mut self, stream: i16, opcode: u8, body: &[u8]) {
        let mut f = vec![0x04, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.push(opcode);
        f.extend_from_slice(&(body.len() as u32).to_be_bytes());
        f.extend_from_slice(body);
        self.s.write_all(&f).expect("write a frame");
    }

    fn read(&mut self) -> Frame {
        let mut h = [0u8; 9];
        self.s.read_exact(&mut h).expect("read a header");
        assert_eq!(h[0], 0x84, "a v4 response");
        let n = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) as usize;
        let mut body = vec![0u8; n];
        self.s.read_exact(&mut body).expect("read a body");
        Frame {
            stream: i16::from_be_bytes([h[2], h[3]]),
            opcode: h[4],
            body,
        }
    }

    fn request(&mut self, opcode: u8, body: &[u8]) -> Frame {
        self.send(1, opcode, body);
        let f = self.read();
        assert_eq!(f.stream, 1);
        if f.opcode == OP_ERROR {
            let mut b = Body(&f.body);
            let code = b.i32();
            panic!("ERROR {code:#x}: {}", b.string());
        }
        f
    }

    /// Runs a query (with values) and returns its rows, or an empty list for other results.
    fn query(&mut self, q: &str, values: &[&[u8]]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut b = Vec::new();
        b.extend_from_slice(&(q.len() as u32).to_be_bytes());
        b.extend_from_slice(q.as_bytes());
        params(&mut b, values);
        let f = self.request(OP_QUERY, &b);
        rows(&f)
    }
}

/// QUERY/EXECUTE parameters: consistency ONE and the values.
fn params(b: &mut Vec<u8>, values: &[&[u8]]) {
    b.extend_from_slice(&1u16.to_be_bytes());
    if values.is_empty() {
        b.push(0);
        return;
    }
    b.push(0x01);
    b.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v);
    }
}

/// The rows of a RESULT Rows (empty for other results).
fn rows(f: &Frame) -> Vec<Vec<Option<Vec<u8>>>> {
    assert_eq!(f.opcode, OP_RESULT);
    let mut b = Body(&f.body);
    if b.i32() != 2 {
        return Vec::new();
    }
    let flags = b.i32();
    let cols = b.i32() as usize;
    if flags & 0x02 != 0 {
        b.bytes();
    }
    if flags & 0x04 == 0 {
        if flags & 0x01 != 0 {
            b.string();
            b.string();
        }
        for _ in 0..cols {
            b.string();
            b.option();
        }
    }
    let n = b.i32() as usize;
    (0..n)
        .map(|_| (0..cols).map(|_| b.bytes()).collect())
        .collect()
}

fn ip(a: SocketAddr) -> Option<Vec<u8>> {
    match a.ip() {
        std::net::IpAddr::V4(v4) => Some(v4.octets().to_vec()),
        std::net::IpAddr::V6(v6) => Some(v6.octets().to_vec()),
    }
}

fn int(v: i32) -> Option<Vec<u8>> {
    Some(v.to_be_bytes().to_vec())
}

/// Reads the next EVENT and returns (event type, change, address).
fn status_event(c: &mut Client) -> (String, String, SocketAddr) {
    let f = c.read();
    assert_eq!(
        (f.stream, f.opcode),
        (-1, OP_EVENT),
        "an EVENT on stream -1"
    );
    let mut b = Body(&f.body);
    (b.string(), b.string(), b.inet())
}

#[test]
fn three_nodes_report_each_other_and_stopping_one_is_an_event() {
    let mut dc = DevCluster::start();
    let [n1, n2, n3] = [dc.nodes[0], dc.nodes[1], dc.nodes[2]];

    // Node 2 is itself in system.local and lists nodes 1 and 3 as peers.
    let mut on2 = Client::connect(n2);
    let local = on2.query(
        "SELECT rpc_address, rpc_port, broadcast_address, data_center FROM system.local",
        &[],
    );
    assert_eq!(
        local,
        vec![vec![
            ip(n2),
            int(n2.port() as i32),
            ip(n2),
            Some(b"datacenter1".to_vec())
        ]]
    );
    let peers = on2.query(
        "SELECT peer, rpc_address, data_center, rack, host_id FROM system.peers",
        &[],
    );
    let host_id = |last: u8| {
        let mut id = vec![0u8; 16];
        id[6] = 0x40;
        id[8] = 0x80;
        id[15] = last;
        Some(id)
    };
    assert_eq!(
        peers,
        vec![
            vec![
                ip(n1),
                ip(n1),
                Some(b"datacenter1".to_vec()),
                Some(b"rack1".to_vec()),
                host_id(1)
            ],
            vec![
                ip(n3),
                ip(n3),
                Some(b"dc2".to_vec()),
                Some(b"r3".to_vec()),
                host_id(3)
            ],
        ]
    );
    let peers_v2 = on2.query(
        "SELECT native_address, native_port FROM system.peers_v2",
        &[],
    );
    assert_eq!(
        peers_v2,
        vec![
            vec![ip(n1), int(n1.port() as i32)],
            vec![ip(n3), int(n3.port() as i32)]
        ]
    );

    // A connection on node 1 registered for status and topology changes.
    let mut on1 = Client::connect(n1);
    let mut b = Vec::new();
    b.extend_from_slice(&2u16.to_be_bytes());
    put_string(&mut b, "STATUS_CHANGE");
    put_string(&mut b, "TOPOLOGY_CHANGE");
    assert_eq!(on1.request(OP_REGISTER, &b).opcode, OP_READY);

    // Stopping node 2 closes its connection and its listener, and node 1 tells.
    dc.control(&format!("stop {n2}"));
    let mut rest = Vec::new();
    let closed = on2.s.read_to_end(&mut rest);
    assert!(
        closed.is_err() || rest.is_empty(),
        "node 2's connection is closed: {closed:?} {rest:?}"
    );
    assert!(TcpStream::connect(n2).is_err(), "node 2 does not listen");
    assert_eq!(
        status_event(&mut on1),
        ("STATUS_CHANGE".into(), "DOWN".into(), n2)
    );
    // A stopped node is still a peer, as in Cassandra.
    let peers = on1.query("SELECT peer FROM system.peers", &[]);
    assert_eq!(peers, vec![vec![ip(n2)], vec![ip(n3)]]);

    // Starting it again: UP, and it serves the store the others write.
    dc.control(&format!("start {n2}"));
    assert_eq!(
        status_event(&mut on1),
        ("STATUS_CHANGE".into(), "UP".into(), n2)
    );
    on1.query(
        "CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    );
    on1.query("CREATE TABLE ks.t (k int PRIMARY KEY, v text)", &[]);
    dc.control("reset");

    // A prepared INSERT through node 2 carries its partition key index, and its
    // EXECUTE is recorded with the key's token and the node owning it.
    let mut on2 = Client::connect(n2);
    let q = "INSERT INTO ks.t (v, k) VALUES (?, ?)";
    let mut b = Vec::new();
    b.extend_from_slice(&(q.len() as u32).to_be_bytes());
    b.extend_from_slice(q.as_bytes());
    let f = on2.request(OP_PREPARE, &b);
    let mut r = Body(&f.body);
    assert_eq!(r.i32(), 4, "RESULT Prepared");
    let id = r.short_bytes();
    let _flags = r.i32();
    assert_eq!(r.i32(), 2, "two bind markers");
    assert_eq!((r.i32(), r.u16()), (1, 1), "pk_count 1, pk_index 1 (k)");
    let mut b = Vec::new();
    b.extend_from_slice(&(id.len() as u16).to_be_bytes());
    b.extend_from_slice(&id);
    params(&mut b, &[b"one", &1i32.to_be_bytes()]);
    assert_eq!(on2.request(OP_EXECUTE, &b).opcode, OP_RESULT);

    // One store: node 3 reads what node 2 wrote.
    let mut on3 = Client::connect(n3);
    let got = on3.query("SELECT v FROM ks.t WHERE k = ?", &[&1i32.to_be_bytes()]);
    assert_eq!(got, vec![vec![Some(b"one".to_vec())]]);

    let client2 = on2.s.local_addr().expect("local address");
    let client3 = on3.s.local_addr().expect("local address");
    assert_eq!(
        dc.control("connections"),
        vec![
            format!(r#"{{"node":"{n2}","client":"{client2}","user":null}}"#),
            format!(r#"{{"node":"{n3}","client":"{client3}","user":null}}"#),
        ]
    );
    // int 1 has the token -4069959284402364209: the range of node 2's second token.
    let served = dc.control("served");
    let execute = format!(
        r#"{{"node":"{n2}","client":"{client2}","opcode":"EXECUTE","table":"ks.t","token":-4069959284402364209,"owner":"{n2}","user":null}}"#
    );
    let select = format!(
        r#"{{"node":"{n3}","client":"{client3}","opcode":"QUERY","table":"ks.t","token":-4069959284402364209,"owner":"{n2}","user":null}}"#
    );
    let opcodes: Vec<&str> = served
        .iter()
        .map(|l| {
            l.split("\"opcode\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        opcodes,
        ["STARTUP", "PREPARE", "EXECUTE", "STARTUP", "QUERY"],
        "{served:#?}"
    );
    assert_eq!(served[2], execute);
    assert_eq!(served[4], select);
    assert!(served[1].contains(r#""opcode":"PREPARE","table":"ks.t","token":null"#));
}

#[test]
fn the_records_name_the_login_of_each_connection() {
    let mut dc = DevCluster::start_with(&[
        "--node",
        "127.0.0.1:0",
        "--auth",
        "password",
        "--user",
        "svc_a:pa",
        "--user",
        "svc_b:pb",
    ]);
    let node = dc.nodes[0];
    let (mut a, answer) = Client::login(node, "svc_a", "pa");
    assert_eq!(answer.opcode, OP_AUTH_SUCCESS, "svc_a logs in");
    let (mut b, answer) = Client::login(node, "svc_b", "pb");
    assert_eq!(answer.opcode, OP_AUTH_SUCCESS, "svc_b logs in");
    let (refused, answer) = Client::login(node, "svc_a", "wrong");
    assert_eq!(answer.opcode, OP_ERROR, "a wrong password is refused");
    a.query("SELECT release_version FROM system.local", &[]);
    b.query("SELECT release_version FROM system.local", &[]);

    let address = |c: &Client| c.s.local_addr().expect("local address").to_string();
    let (ca, cb, cr) = (address(&a), address(&b), address(&refused));
    assert_eq!(
        dc.control("connections"),
        vec![
            format!(r#"{{"node":"{node}","client":"{ca}","user":"svc_a"}}"#),
            format!(r#"{{"node":"{node}","client":"{cb}","user":"svc_b"}}"#),
            format!(r#"{{"node":"{node}","client":"{cr}","user":null}}"#),
        ]
    );
    // Each request names the login its connection had when it was served: none before the
    // login, the name from the AUTH_RESPONSE that logged in on; a refused one logs in no one.
    let served: Vec<(String, String, String)> = dc
        .control("served")
        .iter()
        .map(|l| {
            let field = |name: &str| {
                l.split(&format!("\"{name}\":"))
                    .nth(1)
                    .and_then(|r| r.split([',', '}']).next())
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string()
            };
            (field("client"), field("opcode"), field("user"))
        })
        .collect();
    let t = |c: &str, op: &str, user: &str| (c.to_string(), op.to_string(), user.to_string());
    assert_eq!(
        served,
        [
            t(&ca, "STARTUP", "null"),
            t(&ca, "AUTH_RESPONSE", "svc_a"),
            t(&cb, "STARTUP", "null"),
            t(&cb, "AUTH_RESPONSE", "svc_b"),
            t(&cr, "STARTUP", "null"),
            t(&cr, "AUTH_RESPONSE", "null"),
            t(&ca, "QUERY", "svc_a"),
            t(&cb, "QUERY", "svc_b"),
        ]
    );
}
