//! Tests of the topology rewriter: the recorded answers of a real Apache Cassandra 4.0
//! (`tests/captures/`), multi-node answers built here, EXECUTE results without metadata,
//! paging, events, hostile bodies, and the recorded multi-row answers of the development
//! cluster (`tests/captures/devcluster/`).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::metadata::{HAS_MORE_PAGES, METADATA_CHANGED, NO_METADATA};
use super::*;
use crate::codec::messages::{strip_prefixes, EventBody, Query, Startup};
use crate::codec::primitives::write;
use crate::codec::{CodecError, Compression, Direction, Event, FrameReader, Header, Opcode};

// ---------------------------------------------------------------------------------------------
// Building bodies.

/// [option] types as on the wire.
const INET: &[u8] = &[0, 0x10];
const INT: &[u8] = &[0, 0x09];
const UUID: &[u8] = &[0, 0x0c];
const TEXT: &[u8] = &[0, 0x0d];
const TEXT_SET: &[u8] = &[0, 0x22, 0, 0x0d];
const BLOB: &[u8] = &[0, 0x03];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The nodes layout: each node, at the first address of a pair, behind the proxy at the second.
fn nodes_map(pairs: &[(&str, &str)]) -> Topology {
    Topology::Nodes {
        map: pairs
            .iter()
            .map(|&(node, proxy)| (addr(node), addr(proxy)))
            .collect(),
    }
}

/// The proxy layout: a ring of the proxy instances at `instances`.
fn proxy_layout(instances: &[&str]) -> Topology {
    Topology::Proxy {
        instances: instances.iter().map(|i| addr(i)).collect(),
    }
}

fn ip4(s: &str) -> Vec<u8> {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn int_cell(v: i32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn text_set(items: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    write::int(&mut b, items.len() as i32);
    for s in items {
        write::bytes(&mut b, Some(s.as_bytes()));
    }
    b
}

/// Decodes a set<text> cell.
fn read_text_set(cell: &[u8]) -> Vec<String> {
    let (mut rest, n) = crate::codec::primitives::int(cell).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let (r, b) = crate::codec::primitives::bytes(rest).unwrap();
        out.push(String::from_utf8(b.unwrap().to_vec()).unwrap());
        rest = r;
    }
    assert!(rest.is_empty());
    out
}

/// What goes into a Rows body built by [`rows_body`].
#[derive(Default)]
struct Body<'a> {
    version: u8,
    flags: i32,
    table: &'a str,
    columns: Vec<(&'a str, &'a [u8])>,
    paging: Option<&'a [u8]>,
    new_metadata_id: Option<&'a [u8]>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
}

fn rows_body(b: &Body<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write::int(&mut out, 2);
    write::int(&mut out, b.flags);
    write::int(&mut out, b.columns.len() as i32);
    if b.flags & HAS_MORE_PAGES != 0 {
        write::bytes(&mut out, b.paging);
    }
    if b.version >= 5 && b.flags & METADATA_CHANGED != 0 {
        write::short_bytes(&mut out, b.new_metadata_id.unwrap_or_default());
    }
    if b.flags & NO_METADATA == 0 {
        let global = b.flags & 1 != 0;
        if global {
            write::string(&mut out, "system");
            write::string(&mut out, b.table);
        }
        for (name, ty) in &b.columns {
            if !global {
                write::string(&mut out, "system");
                write::string(&mut out, b.table);
            }
            write::string(&mut out, name);
            out.extend_from_slice(ty);
        }
    }
    write::int(&mut out, b.rows.len() as i32);
    for row in &b.rows {
        for cell in row {
            write::bytes(&mut out, cell.as_deref());
        }
    }
    out
}

/// The values of column `name` in every row.
fn column(rows: &Rows<'_>, name: &str) -> Vec<Option<Vec<u8>>> {
    let i = rows
        .column_index(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    rows.rows()
        .map(|r| r.value(i).map(<[u8]>::to_vec))
        .collect()
}

/// The bytes before the rows count (kind and metadata).
fn metadata_bytes<'a>(body: &'a [u8], version: u8, columns: Option<&Columns>) -> &'a [u8] {
    let rows = Rows::parse(body, version, columns).unwrap();
    let mut rows_part = 4usize;
    for r in rows.rows() {
        rows_part += r.raw().len();
    }
    &body[..body.len() - rows_part]
}

/// A Rows body of protocol `version` with a global table spec: `columns` of `system.<table>`,
/// then `rows`.
fn table_body(
    version: u8,
    table: &str,
    columns: Vec<(&str, &[u8])>,
    rows: Vec<Vec<Option<Vec<u8>>>>,
) -> Vec<u8> {
    rows_body(&Body {
        version,
        flags: 1,
        table,
        columns,
        rows,
        ..Body::default()
    })
}

/// Decodes a Rows body that carries its own metadata.
fn parsed(body: &[u8], version: u8) -> Rows<'_> {
    Rows::parse(body, version, None).unwrap()
}

/// The items of the set<text> cell of column `name` in row `row`, in their order.
fn text_set_of(rows: &Rows<'_>, name: &str, row: usize) -> Vec<String> {
    read_text_set(&column(rows, name)[row].clone().expect("a set"))
}

/// The outcome of a rewrite that read `rows_in` rows, wrote `rows_out` and left `left_out` out.
fn outcome_with(rows_in: usize, rows_out: usize, left_out: &[&str]) -> Outcome {
    Outcome {
        rows_in,
        rows_out,
        left_out: left_out.iter().map(|s| s.to_string()).collect(),
    }
}

/// Checks that a rewritten body has the metadata of the original, byte for byte.
fn check_metadata_kept(original: &[u8], rewritten: &[u8], version: u8) {
    assert_eq!(
        metadata_bytes(rewritten, version, None),
        metadata_bytes(original, version, None),
        "metadata as it came"
    );
}

/// The arguments of a rewrite besides the body and the memo.
#[derive(Clone, Copy)]
struct Call<'a> {
    topology: &'a Topology,
    table: Table,
    local: Option<SocketAddr>,
    version: u8,
    columns: Option<&'a Columns>,
}

impl<'a> Call<'a> {
    /// A rewrite under `topology` of a `table` answer of protocol `version`, through the proxy
    /// at `local`; the answer carries its own metadata.
    fn new(topology: &'a Topology, table: Table, local: Option<SocketAddr>, version: u8) -> Self {
        Call {
            topology,
            table,
            local,
            version,
            columns: None,
        }
    }

    fn with_topology(self, topology: &'a Topology) -> Self {
        Call { topology, ..self }
    }

    fn with_table(self, table: Table) -> Self {
        Call { table, ..self }
    }

    fn with_local(self, local: Option<SocketAddr>) -> Self {
        Call { local, ..self }
    }

    fn with_version(self, version: u8) -> Self {
        Call { version, ..self }
    }

    fn with_columns(self, columns: Option<&'a Columns>) -> Self {
        Call { columns, ..self }
    }
}

/// [`rewrite_rows`] with the arguments of `call`.
fn try_rewrite(
    call: Call<'_>,
    body: &[u8],
    memo: &mut Memo,
    out: &mut Vec<u8>,
) -> Result<Outcome, CodecError> {
    rewrite_rows(
        call.topology,
        call.table,
        call.local,
        call.version,
        body,
        call.columns,
        memo,
        out,
    )
}

/// A rewrite that must succeed: it appends to the buffer it is given, and what it wrote
/// re-parses with as many rows as it reports.
fn rewrite(call: Call<'_>, body: &[u8], memo: &mut Memo) -> (Outcome, Vec<u8>) {
    let mut out = b"prefix".to_vec();
    let outcome =
        try_rewrite(call, body, memo, &mut out).unwrap_or_else(|e| panic!("rewrite failed: {e}"));
    assert_eq!(&out[..6], b"prefix", "appends to out");
    let out = out.split_off(6);
    let rows = Rows::parse(&out, call.version, call.columns).expect("the output re-parses");
    assert_eq!(rows.len(), outcome.rows_out);
    (outcome, out)
}

/// A rewrite with an empty memo that must succeed and leave no row out: what it wrote.
fn rewrite_leaving_none_out(call: Call<'_>, body: &[u8]) -> Vec<u8> {
    let (outcome, out) = rewrite(call, body, &mut Memo::default());
    assert!(outcome.left_out.is_empty(), "{:?}", outcome.left_out);
    out
}

// ---------------------------------------------------------------------------------------------
// The recorded answers of a real Cassandra.

/// A query of the capture and the RESULT that answered it (prefixes stripped).
struct Exchange {
    query: String,
    version: u8,
    result: Vec<u8>,
}

/// Every frame of one direction of a connection, decoded with the crate's reader; `after`
/// sees each frame and may switch the framing.
fn frames(
    bin: &[u8],
    direction: Direction,
    mut after: impl FnMut(&Header, &[u8], &mut FrameReader),
) -> Vec<(Header, Vec<u8>)> {
    let mut reader = FrameReader::new(direction, 16 << 20);
    let mut frames = Vec::new();
    let mut pos = 0;
    loop {
        let (n, frame) = match reader.next(&bin[pos..]).expect("the capture decodes") {
            (n, Event::NeedMore) => (n, None),
            (n, Event::Header(_)) => (n, Some(None)),
            (n, Event::Frame { header, body }) => (n, Some(Some((header, body.unwrap().to_vec())))),
            (n, Event::SegmentEnd { .. }) => (n, Some(None)),
        };
        pos += n;
        match frame {
            None => break,
            Some(None) => reader.capture_body(),
            Some(Some((h, body))) => {
                after(&h, &body, &mut reader);
                frames.push((h, body));
            }
        }
    }
    assert_eq!(pos, bin.len());
    frames
}

/// The RESULTs of connection `conn` of capture `session` answering a query on system.local
/// or system.peers(_v2), in arrival order.
fn exchanges(session: &str, conn: u32) -> Vec<Exchange> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(session);
    let c2s = std::fs::read(dir.join(format!("conn-{conn}.c2s.bin"))).unwrap();
    let s2c = std::fs::read(dir.join(format!("conn-{conn}.s2c.bin"))).unwrap();
    let mut compression = Compression::None;
    let requests = frames(&c2s, Direction::ClientToServer, |h, body, r| {
        if h.opcode == Opcode::Startup {
            let s = Startup::decode(body).unwrap();
            compression = s
                .compression()
                .and_then(Compression::from_startup_option)
                .unwrap_or(Compression::None);
            if h.version >= 5 {
                r.start_segments(compression == Compression::Lz4);
            } else {
                r.set_compression(compression);
            }
        }
    });
    let responses = frames(&s2c, Direction::ServerToClient, |h, _, r| {
        if h.version >= 5 && matches!(h.opcode, Opcode::Ready | Opcode::Authenticate) {
            r.start_segments(compression == Compression::Lz4);
        } else if h.version < 5 {
            r.set_compression(compression);
        }
    });
    let mut out = Vec::new();
    for (h, body) in &responses {
        if h.opcode != Opcode::Result {
            continue;
        }
        let Some((qh, qbody)) = requests
            .iter()
            .find(|(q, _)| q.opcode == Opcode::Query && q.stream == h.stream)
        else {
            continue;
        };
        let (_, qb) = strip_prefixes(qh, qbody).unwrap();
        let query = Query::decode(qb, qh.version).unwrap().query.to_string();
        if !(query.contains("system.local") || query.contains("system.peers")) {
            continue;
        }
        let (_, rb) = strip_prefixes(h, body).unwrap();
        out.push(Exchange {
            query,
            version: h.version,
            result: rb.to_vec(),
        });
    }
    out
}

fn table_of(query: &str) -> Table {
    if query.contains("system.local") {
        Table::Local
    } else if query.contains("system.peers_v2") {
        Table::PeersV2
    } else {
        Table::Peers
    }
}

impl Exchange {
    /// The system table the query asked.
    fn table(&self) -> Table {
        table_of(&self.query)
    }

    /// The rewrite of this answer under `topology`, through the proxy at `local`.
    fn call<'a>(&self, topology: &'a Topology, local: Option<SocketAddr>) -> Call<'a> {
        Call::new(topology, self.table(), local, self.version)
    }

    /// The answer as Cassandra sent it.
    fn rows(&self) -> Rows<'_> {
        parsed(&self.result, self.version)
    }
}

const CAPTURES: [&str; 7] = [
    "py-v3-plain",
    "py-v4-plain",
    "py-v4-lz4",
    "py-v4-snappy",
    "py-v5-plain",
    "py-v5-lz4",
    "py-negotiate",
];

/// The node of the captures, and the proxy in front of it.
const NODE: &str = "127.0.0.1:9042";
const PROXY: &str = "10.9.0.1:9142";
const OTHER_PROXY: &str = "10.9.0.2:9142";

/// The system table answers of every connection of the captures, a connection at a time, with
/// the name of its capture. The driver's connections are 0 and 1; in `py-negotiate`, 2 and 3
/// (on 0 and 1 the server refused the protocol versions the driver tried first).
fn capture_connections() -> Vec<(&'static str, Vec<Exchange>)> {
    let mut out = Vec::new();
    for session in CAPTURES {
        let conns = if session == "py-negotiate" {
            [2, 3]
        } else {
            [0, 1]
        };
        for conn in conns {
            out.push((session, exchanges(session, conn)));
        }
    }
    out
}

/// Checks row `row` of a rewritten answer against the original: address and port columns
/// that were not null name `proxy`, `changed` columns differ, every other cell is
/// byte-identical.
fn check_row(
    table: Table,
    before: &Rows<'_>,
    after: &Rows<'_>,
    row: usize,
    proxy: SocketAddr,
    changed: &[&str],
) {
    assert_eq!(before.columns(), after.columns());
    let b = before.rows().nth(row).unwrap();
    let a = after.rows().nth(row).unwrap();
    for (i, c) in after.columns().iter().enumerate() {
        let (old, new) = (b.value(i), a.value(i));
        if table.address_columns().contains(&c.name) && old.is_some() {
            assert_eq!(new, Some(&ip4(&proxy.ip().to_string())[..]), "{}", c.name);
        } else if table.port_columns().contains(&c.name) && old.is_some() {
            assert_eq!(new, Some(&int_cell(proxy.port().into())[..]), "{}", c.name);
        } else if changed.contains(&c.name) {
            assert_ne!(old, new, "{}", c.name);
        } else {
            assert_eq!(b.cell(i).unwrap().raw, a.cell(i).unwrap().raw, "{}", c.name);
        }
    }
}

/// Checks the cells that the made-up peers row of a recorded answer copies from the local row:
/// data centre `datacenter1`, rack `rack1`, and `release_version`.
fn check_copied_from_local(after: &Rows<'_>, release_version: &[Option<Vec<u8>>]) {
    assert_eq!(
        column(after, "data_center"),
        [Some(b"datacenter1".to_vec())]
    );
    assert_eq!(column(after, "rack"), [Some(b"rack1".to_vec())]);
    assert_eq!(column(after, "release_version"), release_version);
}

#[test]
fn recorded_answers_of_cassandra_in_the_nodes_layout() {
    let topology = nodes_map(&[(NODE, PROXY)]);
    let mut seen = 0;
    for (session, xs) in capture_connections() {
        let mut memo = Memo::default();
        for x in xs {
            let table = x.table();
            let (outcome, out) =
                rewrite(x.call(&topology, Some(addr(PROXY))), &x.result, &mut memo);
            let (before, after) = (x.rows(), parsed(&out, x.version));
            assert!(
                outcome.left_out.is_empty(),
                "{session}: {:?}",
                outcome.left_out
            );
            assert_eq!(
                (outcome.rows_in, outcome.rows_out),
                (before.len(), before.len())
            );
            check_metadata_kept(&x.result, &out, x.version);
            match table {
                Table::Local => {
                    assert_eq!(after.len(), 1, "{session} {}", x.query);
                    check_row(table, &before, &after, 0, addr(PROXY), &[]);
                    if x.query.starts_with("SELECT *") {
                        // Tokens and host id kept; the node's addresses are gone.
                        assert_eq!(column(&after, "tokens"), column(&before, "tokens"));
                        assert_eq!(column(&after, "host_id"), column(&before, "host_id"));
                        assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.1"))]);
                        assert_eq!(column(&after, "rpc_port"), [Some(int_cell(9142))]);
                        assert_eq!(column(&after, "broadcast_address"), [Some(ip4("10.9.0.1"))]);
                        assert_eq!(text_set_of(&after, "tokens", 0).len(), 16);
                        seen += 1;
                    } else {
                        // SELECT schema_version: nothing names the node.
                        assert_eq!(out, x.result);
                    }
                }
                Table::Peers | Table::PeersV2 => {
                    // A single node: no peers, the answer goes on unchanged.
                    assert_eq!(after.len(), 0);
                    assert_eq!(out, x.result);
                }
            }
        }
    }
    assert_eq!(
        seen,
        CAPTURES.len(),
        "one SELECT * FROM system.local per capture"
    );
}

#[test]
fn recorded_answers_of_cassandra_in_the_proxy_layout() {
    let topology = proxy_layout(&[PROXY, OTHER_PROXY]);
    let mut local_rows = 0;
    let mut made_up = 0;
    for (session, xs) in capture_connections() {
        // Local answers first, so that the memo is filled, then in arrival order.
        let mut memo = Memo::default();
        let mut order: Vec<&Exchange> = xs.iter().filter(|x| x.query.contains("local")).collect();
        order.extend(xs.iter());
        for x in order {
            let table = x.table();
            let (outcome, out) =
                rewrite(x.call(&topology, Some(addr(PROXY))), &x.result, &mut memo);
            let (before, after) = (x.rows(), parsed(&out, x.version));
            assert!(outcome.left_out.is_empty());
            assert_eq!(after.columns(), before.columns());
            match table {
                Table::Local if x.query.starts_with("SELECT *") => {
                    check_row(
                        table,
                        &before,
                        &after,
                        0,
                        addr(PROXY),
                        &["tokens", "host_id"],
                    );
                    // Instance 0 of 2 on the Murmur3 ring.
                    assert_eq!(text_set_of(&after, "tokens", 0), ["-9223372036854775808"]);
                    assert_eq!(
                        column(&after, "host_id"),
                        [Some(host_id(addr(PROXY)).to_vec())]
                    );
                    assert_eq!(
                        memo.get(Field::DataCenter),
                        Some(&b"datacenter1"[..]),
                        "{session}"
                    );
                    assert_eq!(
                        memo.get(Field::Partitioner),
                        Some(&b"org.apache.cassandra.dht.Murmur3Partitioner"[..])
                    );
                    local_rows += 1;
                }
                Table::Local => assert_eq!(out, x.result),
                Table::Peers | Table::PeersV2 => {
                    // The other instance, made up from the memo.
                    assert_eq!(before.len(), 0);
                    assert_eq!(after.len(), 1);
                    let other = addr(OTHER_PROXY);
                    assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.2"))]);
                    assert_eq!(column(&after, "native_address"), [Some(ip4("10.9.0.2"))]);
                    assert_eq!(column(&after, "native_port"), [Some(int_cell(9142))]);
                    assert_eq!(column(&after, "peer_port"), [Some(int_cell(9142))]);
                    assert_eq!(column(&after, "host_id"), [Some(host_id(other).to_vec())]);
                    assert_eq!(
                        column(&after, "schema_version"),
                        [memo.get(Field::SchemaVersion).map(<[u8]>::to_vec)]
                    );
                    if x.query.starts_with("SELECT *") {
                        assert_eq!(text_set_of(&after, "tokens", 0), ["0"]);
                        check_copied_from_local(&after, &[Some(b"4.0-rc1-SNAPSHOT".to_vec())]);
                        assert_eq!(column(&after, "preferred_ip"), [Some(ip4("10.9.0.2"))]);
                    }
                    made_up += 1;
                }
            }
        }
    }
    // Each SELECT * FROM system.local is rewritten twice (first, then in arrival order).
    assert_eq!(local_rows, 2 * CAPTURES.len());
    assert!(made_up >= 2 * CAPTURES.len(), "{made_up}");
}

#[test]
fn recorded_peers_answer_in_arrival_order_has_no_memo_yet() {
    // The driver asks for peers_v2 before local on its control connection: the made-up row
    // has nulls where the memo would fill in.
    let topology = proxy_layout(&[PROXY, OTHER_PROXY]);
    let x = exchanges("py-v4-plain", 0);
    let first = x.first().unwrap();
    assert_eq!(first.query, "SELECT * FROM system.peers_v2");
    let call = Call::new(&topology, Table::PeersV2, Some(addr(PROXY)), 4);
    let (_, out) = rewrite(call, &first.result, &mut Memo::default());
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "data_center"), [None]);
    assert_eq!(column(&after, "schema_version"), [None]);
    assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.2"))]);
}

// ---------------------------------------------------------------------------------------------
// A three-node cluster, built here.

/// `SELECT * FROM system.peers` columns (Cassandra 3 and later), and a row.
fn peers_columns() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("peer", INET),
        ("data_center", TEXT),
        ("host_id", UUID),
        ("preferred_ip", INET),
        ("rack", TEXT),
        ("release_version", TEXT),
        ("rpc_address", INET),
        ("schema_version", UUID),
        ("tokens", TEXT_SET),
    ]
}

fn peers_row(ip: &str, rpc: Option<&str>, dc: &str, host: u8) -> Vec<Option<Vec<u8>>> {
    vec![
        Some(ip4(ip)),
        Some(dc.as_bytes().to_vec()),
        Some(vec![host; 16]),
        None,
        Some(b"rack1".to_vec()),
        Some(b"4.1.3".to_vec()),
        rpc.map(ip4),
        Some(vec![7; 16]),
        Some(text_set(&["-100", &format!("{host}00")])),
    ]
}

fn peers_v2_columns() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("peer", INET),
        ("peer_port", INT),
        ("data_center", TEXT),
        ("host_id", UUID),
        ("native_address", INET),
        ("native_port", INT),
        ("preferred_ip", INET),
        ("preferred_port", INT),
        ("rack", TEXT),
        ("release_version", TEXT),
        ("schema_version", UUID),
        ("tokens", TEXT_SET),
    ]
}

fn peers_v2_row(ip: &str, port: i32, host: u8) -> Vec<Option<Vec<u8>>> {
    vec![
        Some(ip4(ip)),
        Some(int_cell(7000)),
        Some(b"dc1".to_vec()),
        Some(vec![host; 16]),
        Some(ip4(ip)),
        Some(int_cell(port)),
        None,
        None,
        Some(b"rack1".to_vec()),
        Some(b"4.1.3".to_vec()),
        Some(vec![7; 16]),
        Some(text_set(&[&format!("{host}")])),
    ]
}

fn local_columns() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("key", TEXT),
        ("broadcast_address", INET),
        ("broadcast_port", INT),
        ("data_center", TEXT),
        ("host_id", UUID),
        ("listen_address", INET),
        ("partitioner", TEXT),
        ("rack", TEXT),
        ("release_version", TEXT),
        ("rpc_address", INET),
        ("rpc_port", INT),
        ("schema_version", UUID),
        ("tokens", TEXT_SET),
        ("truncated_at", &[0, 0x21, 0, 0x0c, 0, 0x03]),
    ]
}

fn local_row(ip: &str, partitioner: &str) -> Vec<Option<Vec<u8>>> {
    vec![
        Some(b"local".to_vec()),
        Some(ip4(ip)),
        Some(int_cell(7000)),
        Some(b"dc1".to_vec()),
        Some(vec![1; 16]),
        Some(ip4(ip)),
        Some(partitioner.as_bytes().to_vec()),
        Some(b"rack1".to_vec()),
        Some(b"4.1.3".to_vec()),
        Some(ip4(ip)),
        Some(int_cell(9042)),
        Some(vec![7; 16]),
        Some(text_set(&["-5", "5"])),
        None,
    ]
}

const MURMUR3: &str = "org.apache.cassandra.dht.Murmur3Partitioner";

/// A `SELECT * FROM system.local` answer of protocol `version`: the node at `ip`, on a ring of
/// `partitioner`.
fn local_body(version: u8, ip: &str, partitioner: &str) -> Vec<u8> {
    table_body(
        version,
        "local",
        local_columns(),
        vec![local_row(ip, partitioner)],
    )
}

/// A protocol v4 `SELECT * FROM system.peers` answer with `rows`.
fn peers_body(rows: Vec<Vec<Option<Vec<u8>>>>) -> Vec<u8> {
    table_body(4, "peers", peers_columns(), rows)
}

/// A protocol v4 `SELECT * FROM system.peers_v2` answer with `rows`.
fn peers_v2_body(rows: Vec<Vec<Option<Vec<u8>>>>) -> Vec<u8> {
    table_body(4, "peers_v2", peers_v2_columns(), rows)
}

fn three_nodes_map() -> Topology {
    nodes_map(&[
        ("10.0.1.1:9042", "10.9.0.1:9042"),
        ("10.0.1.2:9042", "10.9.0.2:9042"),
    ])
}

#[test]
fn three_nodes_peers_rows_in_the_nodes_layout_leave_the_unmapped_peer_out() {
    let topology = three_nodes_map();
    // Connected to the proxy of node 1: the peers are nodes 2 (mapped) and 3 (not).
    for table in [Table::Peers, Table::PeersV2] {
        let body = if table == Table::Peers {
            peers_body(vec![
                peers_row("10.0.1.3", Some("10.0.1.3"), "dc1", 3),
                peers_row("10.0.1.2", Some("10.0.1.2"), "dc2", 2),
            ])
        } else {
            peers_v2_body(vec![
                peers_v2_row("10.0.1.3", 9042, 3),
                peers_v2_row("10.0.1.2", 9042, 2),
            ])
        };
        let call = Call::new(&topology, table, Some(addr("10.9.0.1:9042")), 4);
        let (outcome, out) = rewrite(call, &body, &mut Memo::default());
        let want_left = if table == Table::Peers {
            "10.0.1.3"
        } else {
            "10.0.1.3:9042"
        };
        assert_eq!(outcome, outcome_with(2, 1, &[want_left]));
        let before = parsed(&body, 4);
        let after = parsed(&out, 4);
        assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.2"))]);
        // Node 2's row, addresses rewritten, the rest kept.
        let host_id = column(&before, "host_id")[1].clone();
        assert_eq!(column(&after, "host_id"), [host_id]);
        assert_eq!(
            column(&after, "tokens"),
            [column(&before, "tokens")[1].clone()]
        );
        assert_eq!(column(&after, "preferred_ip"), [None], "null stays null");
        if table == Table::Peers {
            assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.2"))]);
            assert_eq!(column(&after, "data_center"), [Some(b"dc2".to_vec())]);
        } else {
            assert_eq!(column(&after, "native_address"), [Some(ip4("10.9.0.2"))]);
            assert_eq!(column(&after, "native_port"), [Some(int_cell(9042))]);
            assert_eq!(column(&after, "peer_port"), [Some(int_cell(9042))]);
            assert_eq!(column(&after, "preferred_port"), [None]);
        }
    }
}

#[test]
fn three_nodes_local_row_in_the_nodes_layout() {
    let topology = three_nodes_map();
    let body = local_body(5, "10.0.1.2", MURMUR3);
    let call = Call::new(&topology, Table::Local, Some(addr("10.9.0.2:9042")), 5);
    let mut memo = Memo::default();
    let (outcome, out) = rewrite(call, &body, &mut memo);
    assert!(outcome.left_out.is_empty());
    let before = parsed(&body, 5);
    let after = parsed(&out, 5);
    check_row(Table::Local, &before, &after, 0, addr("10.9.0.2:9042"), &[]);
    assert_eq!(memo.get(Field::DataCenter), Some(&b"dc1"[..]));

    // Node 3 has no proxy: the row names the proxy the client connected to, and is reported.
    let body = local_body(5, "10.0.1.3", MURMUR3);
    let (outcome, out) = rewrite(call, &body, &mut memo);
    assert_eq!(outcome.left_out, ["10.0.1.3:9042"]);
    assert_eq!(outcome.rows_out, 1);
    let after = parsed(&out, 5);
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.2"))]);
    assert_eq!(column(&after, "listen_address"), [Some(ip4("10.9.0.2"))]);
    // Unknown local address: left out.
    let (outcome, _) = rewrite(call.with_local(None), &body, &mut memo);
    assert_eq!((outcome.rows_out, outcome.left_out.len()), (0, 1));
}

#[test]
fn three_nodes_in_the_proxy_layout() {
    let instances = vec![
        addr("10.9.0.1:9042"),
        addr("10.9.0.2:9042"),
        addr("10.9.0.3:9042"),
    ];
    let topology = Topology::Proxy {
        instances: instances.clone(),
    };
    let mut memo = Memo::default();
    let local = local_body(4, "10.0.1.1", MURMUR3);
    let call = Call::new(&topology, Table::Local, Some(addr("10.9.0.2:9042")), 4);
    let (outcome, out) = rewrite(call, &local, &mut memo);
    assert_eq!((outcome.rows_in, outcome.rows_out), (1, 1));
    let after = parsed(&out, 4);
    // Instance 1 of 3: -2^63 + floor(2^64 / 3).
    let t = text_set_of(&after, "tokens", 0);
    assert_eq!(t, ["-3074457345618258603"]);
    assert_eq!(t[0], token(1, 3, false));
    assert_eq!(
        column(&after, "host_id"),
        [Some(host_id(instances[1]).to_vec())]
    );
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.2"))]);
    assert_eq!(column(&after, "broadcast_port"), [Some(int_cell(9042))]);
    assert_eq!(column(&after, "truncated_at"), [None]);

    // Peers: the two other instances, whatever the real rows were; data_center from the
    // first real row, schema_version too.
    let peers = peers_body(vec![
        peers_row("10.0.1.2", Some("10.0.1.2"), "dc-east", 2),
        peers_row("10.0.1.3", None, "dc-west", 3),
    ]);
    let (outcome, out) = rewrite(call.with_table(Table::Peers), &peers, &mut memo);
    assert_eq!(outcome, outcome_with(2, 2, &[]));
    let after = parsed(&out, 4);
    assert_eq!(
        column(&after, "peer"),
        [Some(ip4("10.9.0.1")), Some(ip4("10.9.0.3"))]
    );
    assert_eq!(column(&after, "rpc_address"), column(&after, "peer"));
    assert_eq!(column(&after, "preferred_ip"), column(&after, "peer"));
    assert_eq!(
        column(&after, "data_center"),
        [Some(b"dc-east".to_vec()), Some(b"dc-east".to_vec())]
    );
    assert_eq!(
        column(&after, "schema_version"),
        [Some(vec![7; 16]), Some(vec![7; 16])]
    );
    assert_eq!(
        column(&after, "host_id"),
        [
            Some(host_id(instances[0]).to_vec()),
            Some(host_id(instances[2]).to_vec())
        ]
    );
    let tokens: Vec<Vec<String>> = column(&after, "tokens")
        .into_iter()
        .map(|c| read_text_set(&c.unwrap()))
        .collect();
    assert_eq!(tokens, [vec![token(0, 3, false)], vec![token(2, 3, false)]]);

    // A narrower query: exactly its columns, in its order; the others from the memo.
    let narrow = table_body(
        4,
        "peers",
        vec![
            ("schema_version", UUID),
            ("rack", TEXT),
            ("peer", INET),
            ("other", BLOB),
        ],
        vec![],
    );
    let (outcome, out) = rewrite(call.with_table(Table::Peers), &narrow, &mut memo);
    assert_eq!((outcome.rows_in, outcome.rows_out), (0, 2));
    let after = parsed(&out, 4);
    assert_eq!(after.columns().len(), 4);
    assert_eq!(column(&after, "schema_version")[0], Some(vec![7; 16]));
    assert_eq!(column(&after, "rack")[1], Some(b"rack1".to_vec()));
    assert_eq!(column(&after, "other"), [None, None]);
}

#[test]
fn proxy_layout_without_instances_is_a_ring_of_one() {
    let topology = Topology::default();
    let mut memo = Memo::default();
    let local = local_body(4, "10.0.1.1", MURMUR3);
    let me = addr("127.0.0.2:9042");
    let call = Call::new(&topology, Table::Local, Some(me), 4);
    let (_, out) = rewrite(call, &local, &mut memo);
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("127.0.0.2"))]);
    let t = text_set_of(&after, "tokens", 0);
    assert_eq!(t, ["-9223372036854775808"]);
    assert_eq!(column(&after, "host_id"), [Some(host_id(me).to_vec())]);

    // A real peers answer becomes no rows.
    let peers = peers_body(vec![peers_row("10.0.1.2", Some("10.0.1.2"), "dc1", 2)]);
    let (outcome, _) = rewrite(call.with_table(Table::Peers), &peers, &mut memo);
    assert_eq!((outcome.rows_in, outcome.rows_out), (1, 0));

    // No local address and no instances: the local row is left out.
    let (outcome, _) = rewrite(call.with_local(None), &local, &mut memo);
    assert_eq!(outcome.rows_out, 0);
    assert_eq!(outcome.left_out, ["10.0.1.1:9042"]);
}

#[test]
fn proxy_layout_local_not_in_the_list_is_appended_to_the_ring() {
    let instances = vec![addr("10.9.0.1:9042"), addr("10.9.0.2:9042")];
    let topology = Topology::Proxy {
        instances: instances.clone(),
    };
    let me = addr("10.9.0.7:9042");
    let mut memo = Memo::default();
    let call = Call::new(&topology, Table::Local, Some(me), 4);
    let local = local_body(4, "10.0.1.1", MURMUR3);
    let (_, out) = rewrite(call, &local, &mut memo);
    let after = parsed(&out, 4);
    let t = text_set_of(&after, "tokens", 0);
    assert_eq!(t, [token(2, 3, false)]);
    assert_eq!(column(&after, "host_id"), [Some(host_id(me).to_vec())]);
    // Its peers are the whole list.
    let peers = peers_v2_body(vec![]);
    let (_, out) = rewrite(call.with_table(Table::PeersV2), &peers, &mut memo);
    let after = parsed(&out, 4);
    assert_eq!(
        column(&after, "native_address"),
        [Some(ip4("10.9.0.1")), Some(ip4("10.9.0.2"))]
    );

    // No local address: instance 0 stands for the proxy.
    let (_, out) = rewrite(call.with_local(None), &local, &mut memo);
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.1"))]);
    assert_eq!(
        column(&after, "host_id"),
        [Some(host_id(instances[0]).to_vec())]
    );
}

#[test]
fn random_partitioner_tokens() {
    let topology = proxy_layout(&["10.9.0.1:9042", "10.9.0.2:9042"]);
    let mut memo = Memo::default();
    let local = local_body(4, "10.0.1.1", "org.apache.cassandra.dht.RandomPartitioner");
    let call = Call::new(&topology, Table::Local, Some(addr("10.9.0.2:9042")), 4);
    let (_, out) = rewrite(call, &local, &mut memo);
    let after = parsed(&out, 4);
    let t = text_set_of(&after, "tokens", 0);
    assert_eq!(t, ["85070591730234615865843651857942052864"]);
    // The peers rows use the partitioner remembered from local.
    let peers = table_body(
        4,
        "peers",
        vec![("peer", INET), ("tokens", TEXT_SET)],
        vec![],
    );
    let (_, out) = rewrite(call.with_table(Table::Peers), &peers, &mut memo);
    let after = parsed(&out, 4);
    let t = text_set_of(&after, "tokens", 0);
    assert_eq!(t, ["0"]);
}

#[test]
fn tokens_and_host_ids() {
    assert_eq!(token(0, 1, false), i64::MIN.to_string());
    assert_eq!(token(0, 2, false), i64::MIN.to_string());
    assert_eq!(token(1, 2, false), "0");
    assert_eq!(token(2, 3, false), "3074457345618258602");
    assert_eq!(
        token(0, 0, false),
        i64::MIN.to_string(),
        "no ring: one node"
    );
    assert_eq!(token(1, 2, true), (1u128 << 126).to_string());
    assert_eq!(token(0, 4, true), "0");
    // Every Murmur3 token is a valid long.
    for n in 1..50usize {
        for i in 0..n {
            token(i, n, false).parse::<i64>().unwrap();
        }
    }
    let a = host_id(addr("10.9.0.1:9042"));
    assert_eq!(a, host_id(addr("10.9.0.1:9042")), "stable");
    assert_ne!(a, host_id(addr("10.9.0.1:9043")));
    assert_eq!(a[6] >> 4, 4, "version 4");
    assert_eq!(a[8] >> 6, 0b10, "RFC 4122 variant");
    // An IPv4-mapped address is its IPv4 address.
    assert_eq!(a, host_id(addr("[::ffff:10.9.0.1]:9042")));
}

#[test]
fn ipv6_addresses() {
    let topology = nodes_map(&[
        ("[fd00::1]:9042", "[2001:db8::1]:9042"),
        ("[fd00::2]:9042", "10.9.0.2:9042"),
    ]);
    let body = peers_v2_body(vec![
        peers_v2_row("fd00::1", 9042, 1),
        peers_v2_row("fd00::2", 9042, 2),
    ]);
    let call = Call::new(
        &topology,
        Table::PeersV2,
        Some(addr("[::ffff:10.9.0.9]:9042")),
        4,
    );
    let out = rewrite_leaving_none_out(call, &body);
    let after = parsed(&out, 4);
    assert_eq!(
        column(&after, "native_address"),
        [Some(ip4("2001:db8::1")), Some(ip4("10.9.0.2"))]
    );
    // IPv4-mapped local address: 4 bytes.
    let topology = Topology::default();
    let local = local_body(4, "fd00::1", MURMUR3);
    let local_call = call.with_topology(&topology).with_table(Table::Local);
    let (_, out) = rewrite(local_call, &local, &mut Memo::default());
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.9"))]);
    // An unmapped IPv6 peer is named with brackets.
    let topology = nodes_map(&[]);
    let (outcome, _) = rewrite(call.with_topology(&topology), &body, &mut Memo::default());
    assert_eq!(outcome.left_out, ["[fd00::1]:9042", "[fd00::2]:9042"]);
}

#[test]
fn null_or_unspecified_rpc_address_falls_back_to_peer() {
    let topology = three_nodes_map();
    let mut row_null = peers_row("10.0.1.2", None, "dc1", 2);
    let mut row_any = peers_row("10.0.1.1", Some("0.0.0.0"), "dc1", 1);
    let body = peers_body(vec![row_null.clone(), row_any.clone()]);
    let call = Call::new(&topology, Table::Peers, None, 4);
    let out = rewrite_leaving_none_out(call, &body);
    let after = parsed(&out, 4);
    assert_eq!(
        column(&after, "peer"),
        [Some(ip4("10.9.0.2")), Some(ip4("10.9.0.1"))]
    );
    // Null stays null; 0.0.0.0 is an address cell like any other.
    assert_eq!(column(&after, "rpc_address"), [None, Some(ip4("10.9.0.1"))]);

    // No address at all: unknown, left out.
    row_null[0] = None;
    row_any[0] = Some(vec![1, 2, 3]);
    row_any[6] = None;
    let body = peers_body(vec![row_null, row_any]);
    let (outcome, _) = rewrite(call, &body, &mut Memo::default());
    assert_eq!(outcome.left_out, ["unknown", "unknown"]);
    assert_eq!(outcome.rows_out, 0);
}

#[test]
fn peers_row_without_port_is_ambiguous_when_two_entries_share_its_address() {
    let topology = nodes_map(&[
        ("10.0.1.1:9042", "10.9.0.1:9042"),
        ("10.0.1.1:9043", "10.9.0.2:9042"),
        ("10.0.1.2:9042", "10.9.0.3:9042"),
    ]);
    let body = peers_body(vec![
        peers_row("10.0.1.1", Some("10.0.1.1"), "dc1", 1),
        peers_row("10.0.1.2", Some("10.0.1.2"), "dc1", 2),
    ]);
    let call = Call::new(&topology, Table::Peers, None, 4);
    let (outcome, out) = rewrite(call, &body, &mut Memo::default());
    assert_eq!(outcome.left_out, ["10.0.1.1"]);
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.3"))]);
    // With a port the row is not ambiguous.
    let v2 = peers_v2_body(vec![peers_v2_row("10.0.1.1", 9043, 1)]);
    let out = rewrite_leaving_none_out(call.with_table(Table::PeersV2), &v2);
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.2"))]);
}

#[test]
fn address_columns_of_another_type_are_left_alone() {
    let topology = three_nodes_map();
    let body = table_body(
        4,
        "peers",
        vec![
            ("peer", INET),
            ("rpc_address", TEXT),
            ("preferred_ip", BLOB),
        ],
        vec![vec![
            Some(ip4("10.0.1.1")),
            Some(b"10.0.1.1".to_vec()),
            Some(ip4("10.0.1.1")),
        ]],
    );
    let call = Call::new(&topology, Table::Peers, None, 4);
    let (_, out) = rewrite(call, &body, &mut Memo::default());
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "peer"), [Some(ip4("10.9.0.1"))]);
    assert_eq!(column(&after, "rpc_address"), [Some(b"10.0.1.1".to_vec())]);
    assert_eq!(column(&after, "preferred_ip"), [Some(ip4("10.0.1.1"))]);
}

// ---------------------------------------------------------------------------------------------
// EXECUTE without metadata, paging, v5 metadata changes.

/// A RESULT Prepared body with `bind` bind columns and `result` result columns.
fn prepared_body(version: u8, bind: &[(&str, &[u8])], result: Option<&[(&str, &[u8])]>) -> Vec<u8> {
    let mut b = Vec::new();
    write::int(&mut b, 4);
    write::short_bytes(&mut b, &[0xab; 16]);
    if version >= 5 {
        write::short_bytes(&mut b, &[0xcd; 16]);
    }
    write::int(&mut b, 1);
    write::int(&mut b, bind.len() as i32);
    if version >= 4 {
        write::int(&mut b, 1);
        write::short(&mut b, 0);
    }
    write::string(&mut b, "system");
    write::string(&mut b, "local");
    for (name, ty) in bind {
        write::string(&mut b, name);
        b.extend_from_slice(ty);
    }
    match result {
        None => {
            write::int(&mut b, NO_METADATA);
            write::int(&mut b, 0);
        }
        Some(cols) => {
            // Per-column table specs this time.
            write::int(&mut b, 0);
            write::int(&mut b, cols.len() as i32);
            for (name, ty) in cols {
                write::string(&mut b, "system");
                write::string(&mut b, "local");
                write::string(&mut b, name);
                b.extend_from_slice(ty);
            }
        }
    }
    b
}

#[test]
fn columns_from_prepared_bodies() {
    let cols = local_columns();
    for version in 3..=5 {
        let body = prepared_body(version, &[("key", TEXT)], Some(&cols));
        let c = Columns::from_prepared(&body, version).unwrap().unwrap();
        assert_eq!(c.len(), cols.len());
        let names: Vec<&str> = c.iter().map(|c| c.name).collect();
        assert_eq!(names, cols.iter().map(|c| c.0).collect::<Vec<_>>());
        assert_eq!(c.iter().nth(1).unwrap().kind, Kind::Inet);
        assert_eq!(c.iter().nth(12).unwrap().kind, Kind::TextSet);
        assert_eq!(c.iter().nth(13).unwrap().kind, Kind::Other);
        assert!(c.heap_bytes() >= 100, "{}", c.heap_bytes());
        // No result metadata, or no columns.
        let body = prepared_body(version, &[("key", TEXT)], None);
        assert_eq!(Columns::from_prepared(&body, version).unwrap(), None);
        let body = prepared_body(version, &[], Some(&[]));
        assert_eq!(Columns::from_prepared(&body, version).unwrap(), None);
        // Truncated anywhere, or one byte too many: an error.
        let body = prepared_body(version, &[("key", TEXT)], Some(&cols));
        for n in 0..body.len() {
            assert!(Columns::from_prepared(&body[..n], version).is_err());
        }
        let mut long = body.clone();
        long.push(0);
        assert!(Columns::from_prepared(&long, version).is_err());
    }
    // Not Prepared; not a version the proxy speaks.
    assert!(Columns::from_prepared(&[0, 0, 0, 2], 4).is_err());
    let body = prepared_body(4, &[], Some(&cols));
    assert!(Columns::from_prepared(&body, 6).is_err());
}

#[test]
fn recorded_prepared_results() {
    // The captures prepare INSERTs only: no result columns.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/captures/py-v4-plain");
    let s2c = std::fs::read(dir.join("conn-1.s2c.bin")).unwrap();
    let mut prepared = 0;
    for (h, body) in frames(&s2c, Direction::ServerToClient, |_, _, _| {}) {
        let (_, b) = strip_prefixes(&h, &body).unwrap();
        if h.opcode == Opcode::Result && b.get(..4) == Some(&[0, 0, 0, 4]) {
            assert_eq!(Columns::from_prepared(b, h.version).unwrap(), None);
            prepared += 1;
        }
    }
    assert!(prepared >= 1);
}

#[test]
fn execute_results_without_metadata_use_the_prepared_columns() {
    let cols = local_columns();
    let prepared = prepared_body(5, &[("key", TEXT)], Some(&cols));
    let columns = Columns::from_prepared(&prepared, 5).unwrap().unwrap();
    let body = rows_body(&Body {
        version: 5,
        flags: NO_METADATA,
        table: "local",
        columns: cols.clone(),
        rows: vec![local_row("10.0.1.1", MURMUR3)],
        ..Body::default()
    });
    let topology = three_nodes_map();
    let call = Call::new(&topology, Table::Local, None, 5).with_columns(Some(&columns));
    let out = rewrite_leaving_none_out(call, &body);
    let after = Rows::parse(&out, 5, Some(&columns)).unwrap();
    assert!(!after.has_metadata(), "still No_metadata");
    assert_eq!(after.flags(), NO_METADATA);
    assert_eq!(column(&after, "rpc_address"), [Some(ip4("10.9.0.1"))]);
    // Without the prepared columns: an error, and nothing written.
    let mut out = vec![1, 2, 3];
    let e = try_rewrite(
        call.with_columns(None),
        &body,
        &mut Memo::default(),
        &mut out,
    );
    assert!(matches!(e, Err(CodecError::Malformed(_))), "{e:?}");
    assert_eq!(out, [1, 2, 3]);
    // Prepared columns that do not fit the result.
    let fewer = Columns::new(columns.iter().take(3));
    let e = try_rewrite(
        call.with_columns(Some(&fewer)),
        &body,
        &mut Memo::default(),
        &mut out,
    );
    assert!(e.is_err());
    // With metadata, the prepared columns are not needed (and not used).
    let with_meta = table_body(5, "local", cols, vec![local_row("10.0.1.1", MURMUR3)]);
    rewrite(
        call.with_columns(Some(&fewer)),
        &with_meta,
        &mut Memo::default(),
    );
}

#[test]
fn paging_state_is_kept_except_in_made_up_answers() {
    let paging = [9u8; 12];
    let body = rows_body(&Body {
        version: 5,
        flags: 1 | HAS_MORE_PAGES | METADATA_CHANGED,
        table: "peers_v2",
        columns: peers_v2_columns(),
        paging: Some(&paging),
        new_metadata_id: Some(&[5; 16]),
        rows: vec![peers_v2_row("10.0.1.2", 9042, 2)],
    });
    let topology = three_nodes_map();
    let call = Call::new(&topology, Table::PeersV2, None, 5);
    let (_, out) = rewrite(call, &body, &mut Memo::default());
    let after = parsed(&out, 5);
    assert_eq!(after.paging_state(), Some(Some(&paging[..])));
    assert_eq!(after.new_metadata_id(), Some(&[5u8; 16][..]));
    check_metadata_kept(&body, &out, 5);

    let topology = proxy_layout(&["10.9.0.1:9042", "10.9.0.2:9042"]);
    let call = call
        .with_topology(&topology)
        .with_local(Some(addr("10.9.0.1:9042")));
    let (_, out) = rewrite(call, &body, &mut Memo::default());
    let after = parsed(&out, 5);
    assert_eq!(after.paging_state(), None);
    assert_eq!(after.flags(), 1 | METADATA_CHANGED);
    assert_eq!(after.new_metadata_id(), Some(&[5u8; 16][..]));
    assert_eq!(after.len(), 1);

    // A null paging state; in v4 the Metadata_changed bit announces nothing.
    let body = rows_body(&Body {
        version: 4,
        flags: 1 | HAS_MORE_PAGES,
        table: "peers_v2",
        columns: peers_v2_columns(),
        rows: vec![],
        ..Body::default()
    });
    let after = parsed(&body, 4);
    assert_eq!(after.paging_state(), Some(None));
    let mut v4 = table_body(4, "peers_v2", vec![("peer", INET)], vec![]);
    v4[7] |= METADATA_CHANGED as u8;
    assert_eq!(parsed(&v4, 4).new_metadata_id(), None);
}

#[test]
fn off_copies_the_body() {
    let body = peers_body(vec![peers_row("10.0.1.2", Some("10.0.1.2"), "dc1", 2)]);
    let call = Call::new(&Topology::Off, Table::Peers, None, 4);
    let (outcome, out) = rewrite(call, &body, &mut Memo::default());
    assert_eq!(out, body);
    assert_eq!((outcome.rows_in, outcome.rows_out), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// Events.

fn event(kind: &str, change: &str, ip: &str, port: i32) -> Vec<u8> {
    let mut b = Vec::new();
    write::string(&mut b, kind);
    write::string(&mut b, change);
    let a = ip4(ip);
    b.push(a.len() as u8);
    b.extend_from_slice(&a);
    write::int(&mut b, port);
    b
}

/// The rewrite of an event that is dropped: it named `node`, which no proxy stands for.
fn dropped(node: &str) -> EventRewrite {
    EventRewrite::Drop { node: node.into() }
}

fn rewrite_ev(topology: &Topology, body: &[u8]) -> (EventRewrite, Vec<u8>) {
    let mut out = Vec::new();
    let r = rewrite_event(topology, 4, body, &mut out).unwrap();
    (r, out)
}

#[test]
fn events_in_the_nodes_layout() {
    let topology = three_nodes_map();
    for kind in ["TOPOLOGY_CHANGE", "STATUS_CHANGE"] {
        let (r, out) = rewrite_ev(&topology, &event(kind, "UP", "10.0.1.2", 9042));
        assert_eq!(r, EventRewrite::Replaced);
        let decoded = EventBody::decode(&out).unwrap();
        assert_eq!(decoded.event_type(), kind);
        match decoded {
            EventBody::TopologyChange {
                change,
                address,
                port,
            }
            | EventBody::StatusChange {
                change,
                address,
                port,
            } => {
                assert_eq!((change, address, port), ("UP", &[10, 9, 0, 2][..], 9042));
            }
            other => panic!("{other:?}"),
        }
        // Another port, but the only entry with the address.
        let (r, _) = rewrite_ev(&topology, &event(kind, "UP", "10.0.1.2", 9142));
        assert_eq!(r, EventRewrite::Replaced);
        let (r, out) = rewrite_ev(&topology, &event(kind, "NEW_NODE", "10.0.1.3", 9042));
        assert_eq!(r, dropped("10.0.1.3:9042"));
        assert!(out.is_empty());
    }
    // IPv6 node to IPv6 proxy.
    let topology = nodes_map(&[("[fd00::1]:9042", "[2001:db8::1]:9142")]);
    let (r, out) = rewrite_ev(&topology, &event("STATUS_CHANGE", "DOWN", "fd00::1", 9042));
    assert_eq!(r, EventRewrite::Replaced);
    assert_eq!(out, event("STATUS_CHANGE", "DOWN", "2001:db8::1", 9142));
    // Ambiguous: two entries with the address, none with the port.
    let topology = nodes_map(&[
        ("10.0.1.1:9042", "10.9.0.1:9042"),
        ("10.0.1.1:9043", "10.9.0.2:9042"),
    ]);
    let (r, _) = rewrite_ev(&topology, &event("STATUS_CHANGE", "UP", "10.0.1.1", 9044));
    assert!(matches!(r, EventRewrite::Drop { .. }));
    let (r, out) = rewrite_ev(&topology, &event("STATUS_CHANGE", "UP", "10.0.1.1", 9043));
    assert_eq!(r, EventRewrite::Replaced);
    assert_eq!(out, event("STATUS_CHANGE", "UP", "10.9.0.2", 9042));
    // A port out of range is named as sent.
    let (r, _) = rewrite_ev(
        &nodes_map(&[]),
        &event("STATUS_CHANGE", "UP", "fd00::9", -1),
    );
    assert_eq!(r, dropped("[fd00::9]:-1"));
}

#[test]
fn events_in_the_proxy_layout_and_off() {
    let proxy = proxy_layout(&["10.9.0.1:9042"]);
    for kind in ["TOPOLOGY_CHANGE", "STATUS_CHANGE"] {
        let (r, out) = rewrite_ev(&proxy, &event(kind, "REMOVED_NODE", "10.0.1.2", 9042));
        assert_eq!(r, dropped("10.0.1.2:9042"));
        assert!(out.is_empty());
        let (r, _) = rewrite_ev(&Topology::Off, &event(kind, "UP", "10.0.1.2", 9042));
        assert_eq!(r, EventRewrite::Keep);
    }
    let mut schema = Vec::new();
    for s in ["SCHEMA_CHANGE", "CREATED", "TABLE", "ks", "t"] {
        write::string(&mut schema, s);
    }
    for t in [&proxy, &three_nodes_map(), &Topology::Off] {
        assert_eq!(rewrite_ev(t, &schema), (EventRewrite::Keep, vec![]));
    }
}

#[test]
fn garbage_events_are_errors() {
    let topology = three_nodes_map();
    let good = event("STATUS_CHANGE", "UP", "10.0.1.2", 9042);
    let mut out = Vec::new();
    for n in 0..good.len() {
        assert!(rewrite_event(&topology, 4, &good[..n], &mut out).is_err());
    }
    let mut long = good.clone();
    long.push(0);
    assert!(rewrite_event(&topology, 4, &long, &mut out).is_err());
    let mut bad_len = good.clone();
    bad_len[2 + 13 + 2 + 2] = 5;
    assert!(rewrite_event(&topology, 4, &bad_len, &mut out).is_err());
    assert!(rewrite_event(&topology, 2, &good, &mut out).is_err());
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Hostile bodies.

#[test]
fn truncated_or_garbage_rows_bodies_are_errors() {
    let bodies = [
        rows_body(&Body {
            version: 5,
            flags: 1 | HAS_MORE_PAGES | METADATA_CHANGED,
            table: "peers_v2",
            columns: peers_v2_columns(),
            paging: Some(&[1, 2, 3]),
            new_metadata_id: Some(&[4; 16]),
            rows: vec![
                peers_v2_row("10.0.1.2", 9042, 2),
                peers_v2_row("10.0.1.3", 9042, 3),
            ],
        }),
        rows_body(&Body {
            version: 5,
            flags: 0,
            table: "local",
            columns: local_columns(),
            rows: vec![local_row("10.0.1.1", MURMUR3)],
            ..Body::default()
        }),
    ];
    let topologies = [
        Topology::Off,
        three_nodes_map(),
        proxy_layout(&["10.9.0.1:9042", "10.9.0.2:9042"]),
    ];
    for body in &bodies {
        for topology in &topologies {
            for table in [Table::Local, Table::Peers, Table::PeersV2] {
                let call = Call::new(topology, table, None, 5);
                let mut memo = Memo::default();
                for n in 0..body.len() {
                    let mut out = Vec::new();
                    let r = try_rewrite(call, &body[..n], &mut memo, &mut out);
                    assert!(r.is_err(), "prefix of {n} bytes");
                    assert!(out.is_empty());
                }
                let mut long = body.clone();
                long.push(0);
                let mut out = Vec::new();
                assert!(try_rewrite(call, &long, &mut memo, &mut out).is_err());
                // Every byte flipped: Ok or Err, never a panic; Ok re-parses.
                for i in 0..body.len() {
                    let mut b = body.clone();
                    b[i] ^= 0xa5;
                    let mut out = Vec::new();
                    if let Ok(o) = try_rewrite(call, &b, &mut memo, &mut out) {
                        assert_eq!(parsed(&out, 5).len(), o.rows_out);
                    }
                }
            }
        }
    }
}

/// The start of a `system.peers` Rows body: its kind, the global table spec flag, `count`
/// columns and the table spec; the column specs follow.
fn peers_metadata(count: u8) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, count];
    write::string(&mut b, "system");
    write::string(&mut b, "peers");
    b
}

#[test]
fn hostile_metadata() {
    let mut memo = Memo::default();
    let topology = three_nodes_map();
    let call = Call::new(&topology, Table::Peers, None, 4);
    let run = |body: &[u8], memo: &mut Memo| try_rewrite(call, body, memo, &mut Vec::new());
    // Not Rows.
    assert!(run(&[0, 0, 0, 1], &mut memo).is_err());
    // A huge column count, a negative one.
    assert!(run(&[0, 0, 0, 2, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff], &mut memo).is_err());
    assert!(run(&[0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff], &mut memo).is_err());
    // Rows without columns, a huge rows count: refused at once.
    let mut b = peers_metadata(0);
    write::int(&mut b, i32::MAX);
    assert!(run(&b, &mut memo).is_err());
    // Types nested too deep.
    let mut deep = peers_metadata(1);
    write::string(&mut deep, "peer");
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0, 0x20]);
    }
    deep.extend_from_slice(INET);
    write::int(&mut deep, 0);
    assert!(run(&deep, &mut memo).is_err());
    // Nested types that parse: map<text, frozen<list<tuple<int, udt<a int, b set<text>>>>>>,
    // and a custom type.
    let mut nested = peers_metadata(2);
    write::string(&mut nested, "peer");
    nested.extend_from_slice(INET);
    write::string(&mut nested, "x");
    nested.extend_from_slice(&[0, 0x21, 0, 0x0d, 0, 0x20, 0, 0x31, 0, 2, 0, 9, 0, 0x30]);
    write::string(&mut nested, "ks");
    write::string(&mut nested, "udt");
    write::short(&mut nested, 2);
    write::string(&mut nested, "a");
    nested.extend_from_slice(INT);
    write::string(&mut nested, "b");
    nested.extend_from_slice(TEXT_SET);
    write::int(&mut nested, 1);
    write::bytes(&mut nested, Some(&ip4("10.0.1.1")));
    write::bytes(&mut nested, Some(&[1, 2, 3]));
    let mut out = Vec::new();
    let o = try_rewrite(call, &nested, &mut memo, &mut out).unwrap();
    assert_eq!(o.rows_out, 1);
    let after = parsed(&out, 4);
    assert_eq!(column(&after, "x"), [Some(vec![1, 2, 3])]);
    // Unknown type id.
    let mut unknown = peers_metadata(1);
    write::string(&mut unknown, "peer");
    unknown.extend_from_slice(&[0, 0x40]);
    write::int(&mut unknown, 0);
    assert!(run(&unknown, &mut memo).is_err());
    let mut custom = peers_metadata(1);
    write::string(&mut custom, "peer");
    custom.extend_from_slice(&[0, 0]);
    write::string(
        &mut custom,
        "org.apache.cassandra.db.marshal.InetAddressType",
    );
    write::int(&mut custom, 1);
    write::bytes(&mut custom, Some(&ip4("10.0.1.1")));
    // A custom-typed "peer" is not an address column: the row names no node.
    let o = run(&custom, &mut memo).unwrap();
    assert_eq!(o.rows_out, 1);
    // No columns: no made-up rows either.
    let mut empty = peers_metadata(0);
    write::int(&mut empty, 0);
    let proxy = proxy_layout(&["10.9.0.1:9042", "10.9.0.2:9042"]);
    let (o, _) = rewrite(call.with_topology(&proxy), &empty, &mut memo);
    assert_eq!(o.rows_out, 0);
    // Unsupported versions.
    let mut out = Vec::new();
    assert!(try_rewrite(call.with_version(6), &custom, &mut memo, &mut out).is_err());
}

#[test]
fn memo_is_bounded() {
    let mut memo = Memo::default();
    memo.remember(Field::DataCenter, b"dc1");
    assert_eq!(memo.get(Field::DataCenter), Some(&b"dc1"[..]));
    memo.remember(Field::DataCenter, &[b'x'; 1000]);
    assert_eq!(memo.get(Field::DataCenter), None);
    for f in Field::ALL {
        memo.remember(f, &[b'y'; 128]);
    }
    assert!(memo.heap_bytes() <= 5 * 256, "{}", memo.heap_bytes());
}

#[test]
fn table_names() {
    assert_eq!(Table::of("system", "peers_v2"), Some(Table::PeersV2));
    assert_eq!(Table::of("system", "peers_v3"), None);
    assert_eq!(Table::Local.name(), "system.local");
}

// ---------------------------------------------------------------------------------------------
// The recorded answers of the development cluster (`tests/captures/devcluster/`): three nodes
// 127.0.1.1-3:9042 (node 3 in dc2, rack2), the driver connected to node 2, so that every peers
// answer has two real rows.

/// The recorded sessions (v4, v4 with lz4, v5).
const DEV_SESSIONS: [&str; 3] = ["dev-v4-plain", "dev-v4-lz4", "dev-v5-plain"];

/// The development cluster's nodes, and the proxy in front of each (same index).
const DEV_NODES: [&str; 3] = ["127.0.1.1:9042", "127.0.1.2:9042", "127.0.1.3:9042"];
const DEV_PROXIES: [&str; 3] = ["127.0.2.1:9142", "127.0.2.2:9142", "127.0.2.3:9142"];

/// The tokens of each node, as the driver decoded them (`client-output.txt`), sorted.
const DEV_TOKENS: [[&str; 4]; 3] = [
    [
        "-4611686018427387904",
        "-9223372036854775808",
        "0",
        "4611686018427387904",
    ],
    [
        "-3074457345618258603",
        "-7686143364045646507",
        "1537228672809129301",
        "6148914691236517205",
    ],
    [
        "-1537228672809129302",
        "-6148914691236517206",
        "3074457345618258602",
        "7686143364045646506",
    ],
];

/// Data centre and rack of each node.
const DEV_PLACES: [(&str, &str); 3] = [
    ("datacenter1", "rack1"),
    ("datacenter1", "rack1"),
    ("dc2", "rack2"),
];

/// The devserver's host id of node `i` (from 0): `00000000-0000-4000-8000-0000000000NN`,
/// NN = i + 1.
fn dev_host_id(i: usize) -> Vec<u8> {
    let mut id = vec![0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0];
    id[15] = u8::try_from(i + 1).unwrap();
    id
}

/// The nodes `nodes` (indices into [`DEV_NODES`]) mapped to their proxies, the others to none.
fn dev_map(nodes: &[usize]) -> Topology {
    Topology::Nodes {
        map: nodes
            .iter()
            .map(|&i| (addr(DEV_NODES[i]), addr(DEV_PROXIES[i])))
            .collect(),
    }
}

/// The system table answers of both connections (control and pool) of a development-cluster
/// session, and how many of each table there are.
fn dev_exchanges(session: &str) -> Vec<Exchange> {
    let path = format!("devcluster/{session}");
    let xs: Vec<Exchange> = (0..2).flat_map(|conn| exchanges(&path, conn)).collect();
    let count = |t: Table| xs.iter().filter(|x| x.table() == t).count();
    // Control connection: peers_v2 and local; pool: local, peers, peers_v2.
    assert_eq!(
        (
            count(Table::Local),
            count(Table::Peers),
            count(Table::PeersV2)
        ),
        (2, 1, 2),
        "{session}"
    );
    let version = if session.contains("v5") { 5 } else { 4 };
    assert!(xs.iter().all(|x| x.version == version), "{session}");
    xs
}

/// Every system table answer of the development-cluster sessions rewritten under `topology`
/// through the proxy at `local`, session after session (the answers of a session share a
/// memo): the session, the answer, what the rewrite did and what it wrote.
fn dev_rewrites(
    topology: &Topology,
    local: SocketAddr,
) -> Vec<(&'static str, Exchange, Outcome, Vec<u8>)> {
    let mut rewrites = Vec::new();
    for session in DEV_SESSIONS {
        let mut memo = Memo::default();
        for x in dev_exchanges(session) {
            let (outcome, out) = rewrite(x.call(topology, Some(local)), &x.result, &mut memo);
            rewrites.push((session, x, outcome, out));
        }
    }
    rewrites
}

/// The node (index into [`DEV_NODES`]) a recorded row describes, from its native address.
fn dev_node_of(table: Table, rows: &Rows<'_>, row: usize) -> usize {
    let (native, _, _) = table.node_columns();
    let ip = column(rows, native)[row].clone().expect("a native address");
    DEV_NODES
        .iter()
        .position(|n| ip4(&addr(n).ip().to_string()) == ip)
        .unwrap_or_else(|| panic!("row {row} names {ip:?}"))
}

/// The sorted items of the set<text> cell of column `name` in row `row`.
fn sorted_set(rows: &Rows<'_>, name: &str, row: usize) -> Vec<String> {
    let mut items = text_set_of(rows, name, row);
    items.sort();
    items
}

/// Checks row `row` of a rewritten answer against the recorded one, which describes `node`:
/// every address column names the proxy in front of the node (for node 2, the one the driver
/// connected to), every port column holds its port (the recorded cells are all non-null), every
/// other cell is byte-identical; and the untouched cells are the node's own.
fn check_dev_row(table: Table, before: &Rows<'_>, after: &Rows<'_>, row: usize, node: usize) {
    let proxy = addr(DEV_PROXIES[node]);
    let recorded = before.rows().nth(row).unwrap();
    for (i, c) in before.columns().iter().enumerate() {
        if table.address_columns().contains(&c.name) || table.port_columns().contains(&c.name) {
            assert!(recorded.value(i).is_some(), "{} recorded", c.name);
        }
    }
    check_row(table, before, after, row, proxy, &[]);
    assert_eq!(sorted_set(after, "tokens", row), DEV_TOKENS[node]);
    assert_eq!(column(after, "host_id")[row], Some(dev_host_id(node)));
    let (dc, rack) = DEV_PLACES[node];
    assert_eq!(
        column(after, "data_center")[row],
        Some(dc.as_bytes().to_vec())
    );
    assert_eq!(column(after, "rack")[row], Some(rack.as_bytes().to_vec()));
}

#[test]
fn dev_cluster_answers_in_the_nodes_layout_name_every_nodes_proxy() {
    let me = addr(DEV_PROXIES[1]);
    for (session, x, outcome, out) in dev_rewrites(&dev_map(&[0, 1, 2]), me) {
        let (table, before, after) = (x.table(), x.rows(), parsed(&out, x.version));
        let n = if table == Table::Local { 1 } else { 2 };
        assert_eq!(outcome, outcome_with(n, n, &[]), "{session} {}", x.query);
        check_metadata_kept(&x.result, &out, x.version);
        match table {
            Table::Local => {
                assert_eq!(dev_node_of(table, &before, 0), 1);
                check_dev_row(table, &before, &after, 0, 1);
                assert_eq!(column(&after, "rpc_address"), [Some(ip4("127.0.2.2"))]);
                assert_eq!(column(&after, "rpc_port"), [Some(int_cell(9142))]);
                assert_eq!(column(&after, "listen_port"), [Some(int_cell(9142))]);
            }
            Table::Peers | Table::PeersV2 => {
                // Nodes 1 and 3, in the order they came.
                let nodes: Vec<usize> = (0..2).map(|r| dev_node_of(table, &before, r)).collect();
                assert_eq!(nodes, [0, 2], "{session}");
                for (row, node) in nodes.into_iter().enumerate() {
                    check_dev_row(table, &before, &after, row, node);
                }
                assert_eq!(
                    column(&after, "peer"),
                    [Some(ip4("127.0.2.1")), Some(ip4("127.0.2.3"))]
                );
                assert_eq!(column(&after, "preferred_ip"), column(&after, "peer"));
                if table == Table::PeersV2 {
                    assert_eq!(column(&after, "native_address"), column(&after, "peer"));
                    for port in ["native_port", "peer_port", "preferred_port"] {
                        assert_eq!(
                            column(&after, port),
                            [Some(int_cell(9142)), Some(int_cell(9142))],
                            "{port}"
                        );
                    }
                } else {
                    assert_eq!(column(&after, "rpc_address"), column(&after, "peer"));
                }
            }
        }
    }
}

#[test]
fn dev_cluster_answers_in_the_nodes_layout_leave_an_unmapped_node_out() {
    // Node 3 has no proxy.
    let me = addr(DEV_PROXIES[1]);
    for (session, x, outcome, out) in dev_rewrites(&dev_map(&[0, 1]), me) {
        let (table, before, after) = (x.table(), x.rows(), parsed(&out, x.version));
        match table {
            Table::Local => {
                assert_eq!((outcome.rows_out, outcome.left_out.len()), (1, 0));
                check_dev_row(table, &before, &after, 0, 1);
            }
            Table::Peers | Table::PeersV2 => {
                // system.peers has no port column: the node is named by its address.
                let left = if table == Table::Peers {
                    "127.0.1.3"
                } else {
                    "127.0.1.3:9042"
                };
                assert_eq!(
                    outcome,
                    outcome_with(2, 1, &[left]),
                    "{session} {}",
                    x.query
                );
                // Node 1's row, first in the recording too.
                assert_eq!(dev_node_of(table, &before, 0), 0);
                check_dev_row(table, &before, &after, 0, 0);
                assert_eq!(column(&after, "peer"), [Some(ip4("127.0.2.1"))]);
            }
        }
    }

    // Node 2, the one connected to, without a proxy: its local row names the proxy the client
    // connected to, and is reported.
    let topology = dev_map(&[0, 2]);
    for session in DEV_SESSIONS {
        let x = dev_exchanges(session)
            .into_iter()
            .find(|x| x.table() == Table::Local)
            .unwrap();
        let call = Call::new(&topology, Table::Local, Some(me), x.version);
        let (outcome, out) = rewrite(call, &x.result, &mut Memo::default());
        assert_eq!(outcome.left_out, ["127.0.1.2:9042"]);
        assert_eq!(outcome.rows_out, 1);
        check_dev_row(Table::Local, &x.rows(), &parsed(&out, x.version), 0, 1);
    }
}

#[test]
fn dev_cluster_answers_in_the_proxy_layout_make_up_the_other_instance() {
    let a = addr(DEV_PROXIES[0]);
    let b = addr(DEV_PROXIES[1]);
    let topology = Topology::Proxy {
        instances: vec![a, b],
    };
    for session in DEV_SESSIONS {
        for x in dev_exchanges(session) {
            let table = x.table();
            // No memo: what the made-up row copies comes from the real rows.
            let mut memo = Memo::default();
            let (outcome, out) = rewrite(x.call(&topology, Some(a)), &x.result, &mut memo);
            let (before, after) = (x.rows(), parsed(&out, x.version));
            assert!(outcome.left_out.is_empty());
            assert_eq!(after.columns(), before.columns());
            let schema_version = column(&before, "schema_version")[0].clone();
            assert!(schema_version.is_some());
            match table {
                Table::Local => {
                    assert_eq!((outcome.rows_in, outcome.rows_out), (1, 1));
                    // Instance 0 of 2; every other cell as Cassandra wrote it.
                    for (i, c) in after.columns().iter().enumerate() {
                        let (old, new) = (
                            before.rows().next().unwrap().cell(i).unwrap(),
                            after.rows().next().unwrap().cell(i).unwrap(),
                        );
                        match c.name {
                            "rpc_address" | "broadcast_address" | "listen_address" => {
                                assert_eq!(new.value, Some(&ip4("127.0.2.1")[..]), "{}", c.name)
                            }
                            "rpc_port" | "broadcast_port" | "listen_port" => {
                                assert_eq!(new.value, Some(&int_cell(9142)[..]), "{}", c.name)
                            }
                            "tokens" | "host_id" => assert_ne!(old, new, "{}", c.name),
                            _ => assert_eq!(old.raw, new.raw, "{}", c.name),
                        }
                    }
                    assert_eq!(sorted_set(&after, "tokens", 0), [token(0, 2, false)]);
                    assert_eq!(column(&after, "host_id"), [Some(host_id(a).to_vec())]);
                    assert_eq!(memo.get(Field::DataCenter), Some(&b"datacenter1"[..]));
                    assert_eq!(memo.get(Field::SchemaVersion), schema_version.as_deref());
                    assert_eq!(
                        memo.get(Field::Partitioner),
                        Some(&b"org.apache.cassandra.dht.Murmur3Partitioner"[..])
                    );
                }
                Table::Peers | Table::PeersV2 => {
                    // Two real rows in, exactly one made-up row out: instance B.
                    assert_eq!(outcome, outcome_with(2, 1, &[]), "{session} {}", x.query);
                    for name in table.address_columns() {
                        assert_eq!(column(&after, name), [Some(ip4("127.0.2.2"))], "{name}");
                    }
                    for name in table.port_columns() {
                        assert_eq!(column(&after, name), [Some(int_cell(9142))], "{name}");
                    }
                    assert_eq!(sorted_set(&after, "tokens", 0), [token(1, 2, false)]);
                    assert_eq!(sorted_set(&after, "tokens", 0), ["0"]);
                    assert_eq!(column(&after, "host_id"), [Some(host_id(b).to_vec())]);
                    assert_eq!(column(&after, "schema_version"), [schema_version]);
                    check_copied_from_local(&after, &column(&before, "release_version")[..1]);
                }
            }
        }
    }
}
