//! Fuzzes the topology rewriter. The first byte picks the table, the protocol version, the
//! proxy address the client connected to, and whether the rest is taken as a body as it is or
//! read as the recipe of a well-formed Rows body (columns of the names and types the rewriter
//! acts on, address cells of nodes and proxies, paging, No_metadata with the columns of a
//! PREPARED body built alike), then damaged a little. Every body goes through `rewrite_rows` in
//! every layout (with and without the prepared columns) and through `rewrite_event`.
//!
//! Asserted: nothing panics; an Ok rewrite re-parses as a Rows body with the same columns and
//! `rows_out` rows, with the rows count it read; under `Off` it is the body as it came; in the
//! other layouts every non-null cell of an address column names a proxy, never a node. A
//! replaced event names a proxy; only a SCHEMA_CHANGE is kept.
#![no_main]
use std::net::{IpAddr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::codec::messages::EventBody;
use ngx_stream_cql_module::topology::{
    rewrite_event, rewrite_rows, Columns, EventRewrite, Kind, Memo, Rows, Table, Topology,
};

const NODES: [&str; 4] = [
    "10.0.0.1:9042",
    "10.0.0.2:9042",
    "10.0.0.3:9042",
    "[fd00::3]:9042",
];
/// The last one is not listed in any layout: a client connected to an unlisted instance.
const PROXIES: [&str; 4] = [
    "127.0.0.2:9042",
    "127.0.0.3:9142",
    "[::1]:9042",
    "127.0.0.9:9042",
];

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn topologies() -> Vec<Topology> {
    let p: Vec<SocketAddr> = PROXIES.iter().map(|s| sa(s)).collect();
    let n: Vec<SocketAddr> = NODES.iter().map(|s| sa(s)).collect();
    vec![
        Topology::Off,
        Topology::Proxy {
            instances: p[..3].to_vec(),
        },
        Topology::Proxy {
            instances: Vec::new(),
        },
        // Node 3 (10.0.0.3) has no proxy; [fd00::3] has.
        Topology::Nodes {
            map: vec![(n[0], p[0]), (n[1], p[1]), (n[3], p[2])],
        },
    ]
}

const NAMES: [&str; 22] = [
    "peer",
    "rpc_address",
    "preferred_ip",
    "native_address",
    "broadcast_address",
    "listen_address",
    "rpc_port",
    "native_port",
    "peer_port",
    "preferred_port",
    "broadcast_port",
    "listen_port",
    "tokens",
    "host_id",
    "data_center",
    "rack",
    "release_version",
    "schema_version",
    "partitioner",
    "key",
    "truncated_at",
    "x",
];

const TYPES: [&[u8]; 10] = [
    &[0, 0x10],                               // inet
    &[0, 0x10],                               // inet, twice as likely
    &[0, 0x09],                               // int
    &[0, 0x0c],                               // uuid
    &[0, 0x0d],                               // varchar
    &[0, 0x22, 0, 0x0d],                      // set<varchar>
    &[0, 0x21, 0, 0x0c, 0, 0x03],             // map<uuid, blob>
    &[0, 0x31, 0, 2, 0, 1, 0, 0x20, 0, 0x10], // tuple<ascii, list<inet>>
    &[0, 0x00, 0, 3, b'f', b'o', b'o'],       // custom
    &[0, 0x03],                               // blob
];

/// Reads the recipe; zeros once it is used up.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }
}

fn put_int(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_int(out, b.len() as i32);
            out.extend_from_slice(b);
        }
        None => put_int(out, -1),
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// A cell: null, an address of a node or a proxy, unspecified, a port, a token set, or bytes.
fn cell(r: &mut Recipe<'_>) -> Option<Vec<u8>> {
    match r.byte() % 9 {
        0 => None,
        1 | 2 => Some(ip_bytes(sa(r.pick(&NODES)).ip())),
        3 => Some(ip_bytes(sa(r.pick(&PROXIES)).ip())),
        4 => Some(vec![0; 4]),
        5 => Some(9042i32.to_be_bytes().to_vec()),
        6 => {
            let mut b = Vec::new();
            put_int(&mut b, 1);
            put_bytes(&mut b, Some(b"-42"));
            Some(b)
        }
        7 => Some(vec![7; 16]),
        _ => {
            let n = usize::from(r.byte() % 20);
            Some((0..n).map(|_| r.byte()).collect())
        }
    }
}

/// A Rows body, and the PREPARED body announcing its columns, from the recipe.
fn build(r: &mut Recipe<'_>, version: u8) -> (Vec<u8>, Vec<u8>) {
    let flags = i32::from(r.byte() & 0x0f);
    let columns: Vec<(&str, &[u8])> = (0..r.byte() % 10)
        .map(|_| (r.pick(&NAMES), r.pick(&TYPES)))
        .collect();
    let specs = |out: &mut Vec<u8>, global: bool| {
        if global {
            put_string(out, "system");
            put_string(out, "peers");
        }
        for (name, ty) in &columns {
            if !global {
                put_string(out, "system");
                put_string(out, "local");
            }
            put_string(out, name);
            out.extend_from_slice(ty);
        }
    };
    let mut body = Vec::new();
    put_int(&mut body, 2);
    put_int(&mut body, flags);
    put_int(&mut body, columns.len() as i32);
    if flags & 0x02 != 0 {
        let paging = cell(r);
        put_bytes(&mut body, paging.as_deref());
    }
    if version >= 5 && flags & 0x08 != 0 {
        body.extend_from_slice(&[0, 2, 0xaa, 0xbb]);
    }
    if flags & 0x04 == 0 {
        specs(&mut body, flags & 0x01 != 0);
    }
    let rows = r.byte() % 5;
    put_int(&mut body, i32::from(rows));
    for _ in 0..rows {
        for _ in 0..columns.len() {
            let c = cell(r);
            put_bytes(&mut body, c.as_deref());
        }
    }
    let mut prepared = Vec::new();
    put_int(&mut prepared, 4);
    prepared.extend_from_slice(&[0, 1, 0x11]);
    if version >= 5 {
        prepared.extend_from_slice(&[0, 1, 0x22]);
    }
    put_int(&mut prepared, 1);
    put_int(&mut prepared, 0);
    if version >= 4 {
        put_int(&mut prepared, 0);
    }
    put_string(&mut prepared, "system");
    put_string(&mut prepared, "local");
    let global = r.byte() & 1 != 0;
    put_int(&mut prepared, i32::from(global));
    put_int(&mut prepared, columns.len() as i32);
    specs(&mut prepared, global);
    // A little damage now and then.
    match r.byte() {
        d @ 0..=15 if !body.is_empty() => {
            let at = usize::from(r.byte()) % body.len();
            body.truncate(at.max(usize::from(d) % body.len()));
        }
        16..=31 if !body.is_empty() => {
            let at = usize::from(r.byte()) % body.len();
            body[at] ^= r.byte() | 1;
        }
        _ => {}
    }
    (body, prepared)
}

/// An EVENT body from the recipe.
fn build_event(r: &mut Recipe<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    let kind = r.pick(&["TOPOLOGY_CHANGE", "STATUS_CHANGE", "SCHEMA_CHANGE", "NOPE"]);
    put_string(&mut b, kind);
    if kind == "SCHEMA_CHANGE" {
        for s in ["CREATED", "TABLE", "ks", "t"] {
            put_string(&mut b, s);
        }
        return b;
    }
    put_string(&mut b, r.pick(&["NEW_NODE", "REMOVED_NODE", "UP", "DOWN"]));
    let a = if r.byte() & 1 == 0 {
        sa(r.pick(&NODES))
    } else {
        sa(r.pick(&PROXIES))
    };
    let ip = ip_bytes(a.ip());
    b.push(ip.len() as u8);
    b.extend_from_slice(&ip);
    let port = if r.byte() & 3 == 0 {
        i32::from(r.byte()) - 100
    } else {
        i32::from(a.port())
    };
    put_int(&mut b, port);
    b
}

fn is_proxy(ip: IpAddr) -> bool {
    PROXIES.iter().any(|p| sa(p).ip() == ip)
}

fn address_of(cell: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(cell) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(cell).ok().map(IpAddr::from)
    }
}

fn check_rows(
    topology: &Topology,
    table: Table,
    local: Option<SocketAddr>,
    version: u8,
    body: &[u8],
    columns: Option<&Columns>,
    memo: &mut Memo,
) {
    let mut out = Vec::new();
    let Ok(outcome) = rewrite_rows(
        topology, table, local, version, body, columns, memo, &mut out,
    ) else {
        assert!(out.is_empty(), "nothing written on error");
        return;
    };
    let before = Rows::parse(body, version, columns).expect("an accepted body parses");
    let after = Rows::parse(&out, version, columns).expect("the output re-parses");
    assert_eq!(before.columns(), after.columns());
    assert_eq!(after.len(), outcome.rows_out);
    assert_eq!(before.len(), outcome.rows_in);
    if *topology == Topology::Off {
        assert_eq!(out, body);
        return;
    }
    for (i, c) in after.columns().iter().enumerate() {
        if c.kind != Kind::Inet || !table.address_columns().contains(&c.name) {
            continue;
        }
        for row in after.rows() {
            if let Some(v) = row.value(i) {
                let ip = address_of(v).expect("an address cell holds an address");
                assert!(is_proxy(ip), "{} names {ip}, not a proxy", c.name);
            }
        }
    }
}

fn check_event(topology: &Topology, version: u8, body: &[u8]) {
    let mut out = Vec::new();
    match rewrite_event(topology, version, body, &mut out) {
        Ok(EventRewrite::Replaced) => match EventBody::decode(&out).expect("the event re-parses") {
            EventBody::TopologyChange { address, .. } | EventBody::StatusChange { address, .. } => {
                let ip = address_of(address).expect("address");
                assert!(is_proxy(ip), "the event names {ip}");
            }
            EventBody::SchemaChange(_) => panic!("a schema change is not replaced"),
        },
        Ok(EventRewrite::Keep) if *topology != Topology::Off => {
            assert!(matches!(
                EventBody::decode(body),
                Ok(EventBody::SchemaChange(_))
            ));
        }
        Ok(_) | Err(_) => assert!(out.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let table = [Table::Local, Table::Peers, Table::PeersV2][usize::from(ctl % 3)];
    let version = 3 + (ctl >> 2) % 3;
    let local = match (ctl >> 4) % 4 {
        0 => None,
        i => Some(sa(PROXIES[usize::from(i)])),
    };
    let (body, prepared, event) = if ctl & 0x80 != 0 {
        let mut r = Recipe(rest);
        let (body, prepared) = build(&mut r, version);
        (body, prepared, build_event(&mut r))
    } else {
        (rest.to_vec(), rest.to_vec(), rest.to_vec())
    };
    let columns = Columns::from_prepared(&prepared, version).ok().flatten();
    if let Some(c) = &columns {
        assert!(c.heap_bytes() >= c.len());
    }
    for topology in topologies() {
        let mut memo = Memo::default();
        check_rows(&topology, table, local, version, &body, None, &mut memo);
        check_rows(
            &topology,
            table,
            local,
            version,
            &body,
            columns.as_ref(),
            &mut memo,
        );
        // After a local answer filled the memo.
        check_rows(
            &topology,
            Table::PeersV2,
            local,
            version,
            &body,
            columns.as_ref(),
            &mut memo,
        );
        check_event(&topology, version, &event);
    }
});
