//! The system tables drivers and cqlsh read: system.local, system.peers(_v2),
//! system_schema.* and system_virtual_schema.*, generated from the live schema.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::db::{Cells, Db, Kind, TableSchema};
use crate::types::*;

/// What system.local says about a node, and its row in the other nodes' system.peers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The address it serves CQL on (rpc_address, broadcast_address and listen_address).
    pub address: IpAddr,
    pub native_port: u16,
    pub host_id: [u8; 16],
    pub data_center: String,
    pub rack: String,
    /// Its Murmur3Partitioner tokens.
    pub tokens: Vec<i64>,
    pub cluster_name: String,
    pub gossip_generation: i32,
}

/// The data centre of a node that does not name one, as Cassandra's default snitch says.
pub const DEFAULT_DATA_CENTER: &str = "datacenter1";
/// The rack of a node that does not name one.
pub const DEFAULT_RACK: &str = "rack1";
/// The storage (gossip) port Cassandra listens on by default, reported as such.
const STORAGE_PORT: i32 = 7000;

/// The host id of the node at `index`: stable and distinct per node, a version-4 UUID
/// `00000000-0000-4000-8000-0000000000NN` with NN = index + 1.
pub fn host_id(index: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[6] = 0x40;
    id[8] = 0x80;
    id[12..].copy_from_slice(&(index as u32).wrapping_add(1).to_be_bytes());
    id
}

#[cfg(test)]
impl NodeInfo {
    pub fn for_tests() -> NodeInfo {
        NodeInfo {
            address: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            native_port: 9042,
            host_id: [1; 16],
            data_center: DEFAULT_DATA_CENTER.into(),
            rack: DEFAULT_RACK.into(),
            tokens: vec![0],
            cluster_name: "cql-devserver".into(),
            gossip_generation: 1,
        }
    }
}

pub const RELEASE_VERSION: &str = "4.0.0";
pub const CQL_VERSION: &str = "3.4.5";

const SCHEMA_KEYSPACES: &[&str] = &["system", "system_schema"];
const VIRTUAL_KEYSPACES: &[&str] = &["system_virtual_schema"];

pub fn is_system_keyspace(ks: &str) -> bool {
    SCHEMA_KEYSPACES.contains(&ks)
        || VIRTUAL_KEYSPACES.contains(&ks)
        || matches!(
            ks,
            "system_auth" | "system_distributed" | "system_traces" | "system_views"
        )
}

type Def = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static [&'static str],
);

const SCHEMA_COLUMNS: &[(&str, &str)] = &[
    ("keyspace_name", "text"),
    ("table_name", "text"),
    ("column_name", "text"),
    ("clustering_order", "text"),
    ("column_name_bytes", "blob"),
    ("kind", "text"),
    ("position", "int"),
    ("type", "text"),
];

const TABLE_OPTIONS: &[(&str, &str)] = &[
    ("additional_write_policy", "text"),
    ("bloom_filter_fp_chance", "double"),
    ("caching", "frozen<map<text, text>>"),
    ("cdc", "boolean"),
    ("comment", "text"),
    ("compaction", "frozen<map<text, text>>"),
    ("compression", "frozen<map<text, text>>"),
    ("crc_check_chance", "double"),
    ("dclocal_read_repair_chance", "double"),
    ("default_time_to_live", "int"),
    ("extensions", "frozen<map<text, blob>>"),
    ("gc_grace_seconds", "int"),
    ("id", "uuid"),
    ("max_index_interval", "int"),
    ("memtable_flush_period_in_ms", "int"),
    ("min_index_interval", "int"),
    ("read_repair", "text"),
    ("read_repair_chance", "double"),
    ("speculative_retry", "text"),
];

static DEFS: &[Def] = &[
    (
        "system",
        "local",
        &[
            ("key", "text"),
            ("bootstrapped", "text"),
            ("broadcast_address", "inet"),
            ("broadcast_port", "int"),
            ("cluster_name", "text"),
            ("cql_version", "text"),
            ("data_center", "text"),
            ("gossip_generation", "int"),
            ("host_id", "uuid"),
            ("listen_address", "inet"),
            ("listen_port", "int"),
            ("native_protocol_version", "text"),
            ("partitioner", "text"),
            ("rack", "text"),
            ("release_version", "text"),
            ("rpc_address", "inet"),
            ("rpc_port", "int"),
            ("schema_version", "uuid"),
            ("tokens", "set<text>"),
            ("truncated_at", "map<uuid, blob>"),
        ],
        &["key"],
        &[],
    ),
    (
        "system",
        "peers",
        &[
            ("peer", "inet"),
            ("data_center", "text"),
            ("host_id", "uuid"),
            ("preferred_ip", "inet"),
            ("rack", "text"),
            ("release_version", "text"),
            ("rpc_address", "inet"),
            ("schema_version", "uuid"),
            ("tokens", "set<text>"),
        ],
        &["peer"],
        &[],
    ),
    (
        "system",
        "peers_v2",
        &[
            ("peer", "inet"),
            ("peer_port", "int"),
            ("data_center", "text"),
            ("host_id", "uuid"),
            ("native_address", "inet"),
            ("native_port", "int"),
            ("preferred_ip", "inet"),
            ("preferred_port", "int"),
            ("rack", "text"),
            ("release_version", "text"),
            ("schema_version", "uuid"),
            ("tokens", "set<text>"),
        ],
        &["peer", "peer_port"],
        &[],
    ),
    (
        "system_schema",
        "keyspaces",
        &[
            ("keyspace_name", "text"),
            ("durable_writes", "boolean"),
            ("replication", "frozen<map<text, text>>"),
        ],
        &["keyspace_name"],
        &[],
    ),
    (
        "system_schema",
        "tables",
        &[],
        &["keyspace_name"],
        &["table_name"],
    ),
    (
        "system_schema",
        "columns",
        SCHEMA_COLUMNS,
        &["keyspace_name"],
        &["table_name", "column_name"],
    ),
    (
        "system_schema",
        "types",
        &[
            ("keyspace_name", "text"),
            ("type_name", "text"),
            ("field_names", "frozen<list<text>>"),
            ("field_types", "frozen<list<text>>"),
        ],
        &["keyspace_name"],
        &["type_name"],
    ),
    (
        "system_schema",
        "functions",
        &[
            ("keyspace_name", "text"),
            ("function_name", "text"),
            ("argument_types", "frozen<list<text>>"),
            ("argument_names", "frozen<list<text>>"),
            ("body", "text"),
            ("called_on_null_input", "boolean"),
            ("language", "text"),
            ("return_type", "text"),
        ],
        &["keyspace_name"],
        &["function_name", "argument_types"],
    ),
    (
        "system_schema",
        "aggregates",
        &[
            ("keyspace_name", "text"),
            ("aggregate_name", "text"),
            ("argument_types", "frozen<list<text>>"),
            ("final_func", "text"),
            ("initcond", "text"),
            ("return_type", "text"),
            ("state_func", "text"),
            ("state_type", "text"),
        ],
        &["keyspace_name"],
        &["aggregate_name", "argument_types"],
    ),
    (
        "system_schema",
        "views",
        &[],
        &["keyspace_name"],
        &["view_name"],
    ),
    (
        "system_schema",
        "indexes",
        &[
            ("keyspace_name", "text"),
            ("table_name", "text"),
            ("index_name", "text"),
            ("kind", "text"),
            ("options", "frozen<map<text, text>>"),
        ],
        &["keyspace_name"],
        &["table_name", "index_name"],
    ),
    (
        "system_schema",
        "triggers",
        &[
            ("keyspace_name", "text"),
            ("table_name", "text"),
            ("trigger_name", "text"),
            ("options", "frozen<map<text, text>>"),
        ],
        &["keyspace_name"],
        &["table_name", "trigger_name"],
    ),
    (
        "system_virtual_schema",
        "keyspaces",
        &[("keyspace_name", "text")],
        &["keyspace_name"],
        &[],
    ),
    (
        "system_virtual_schema",
        "tables",
        &[
            ("keyspace_name", "text"),
            ("table_name", "text"),
            ("comment", "text"),
        ],
        &["keyspace_name"],
        &["table_name"],
    ),
    (
        "system_virtual_schema",
        "columns",
        SCHEMA_COLUMNS,
        &["keyspace_name"],
        &["table_name", "column_name"],
    ),
];

fn build(def: &Def) -> TableSchema {
    let (ks, name, cols, pk, ck) = *def;
    let mut cols: Vec<(String, ColType, bool)> = cols
        .iter()
        .map(|(n, t)| {
            (
                n.to_string(),
                ColType::parse(t).unwrap_or(ColType::Blob),
                false,
            )
        })
        .collect();
    let text = |n: &str| (n.to_string(), ColType::Varchar, false);
    match (ks, name) {
        ("system_schema", "tables") => {
            cols.push(text("keyspace_name"));
            cols.push(text("table_name"));
            cols.push((
                "flags".into(),
                ColType::Set(Box::new(ColType::Varchar)),
                false,
            ));
            for (n, t) in TABLE_OPTIONS {
                cols.push((
                    n.to_string(),
                    ColType::parse(t).unwrap_or(ColType::Blob),
                    false,
                ));
            }
        }
        ("system_schema", "views") => {
            cols.push(text("keyspace_name"));
            cols.push(text("view_name"));
            cols.push(("base_table_id".into(), ColType::Uuid, false));
            cols.push(text("base_table_name"));
            cols.push(("include_all_columns".into(), ColType::Boolean, false));
            cols.push(text("where_clause"));
            for (n, t) in TABLE_OPTIONS {
                cols.push((
                    n.to_string(),
                    ColType::parse(t).unwrap_or(ColType::Blob),
                    false,
                ));
            }
        }
        _ => {}
    }
    let pk: Vec<String> = pk.iter().map(|s| s.to_string()).collect();
    let ck: Vec<String> = ck.iter().map(|s| s.to_string()).collect();
    let mut t = TableSchema::new(ks, name, cols, &pk, &ck, &[])
        .unwrap_or_else(|e| panic!("system table definition {ks}.{name}: {e}"));
    t.comment = match (ks, name) {
        ("system", "local") => "information about the local node".into(),
        ("system", "peers") | ("system", "peers_v2") => {
            "information about known peers in the cluster".into()
        }
        ("system_virtual_schema", "keyspaces") => "virtual keyspace definitions".into(),
        ("system_virtual_schema", "tables") => "virtual table definitions".into(),
        ("system_virtual_schema", "columns") => "virtual column definitions".into(),
        _ => format!("{name} definitions"),
    };
    t
}

fn all() -> &'static HashMap<(String, String), Arc<TableSchema>> {
    static ALL: OnceLock<HashMap<(String, String), Arc<TableSchema>>> = OnceLock::new();
    ALL.get_or_init(|| {
        DEFS.iter()
            .map(|d| ((d.0.to_string(), d.1.to_string()), Arc::new(build(d))))
            .collect()
    })
}

fn sorted(ks: &str) -> Vec<Arc<TableSchema>> {
    let mut v: Vec<_> = all()
        .values()
        .filter(|t| t.keyspace == ks)
        .cloned()
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

pub fn table(ks: &str, name: &str) -> Option<Arc<TableSchema>> {
    all().get(&(ks.to_string(), name.to_string())).cloned()
}

/// Builds a row in the table's column order from (name, value) pairs.
fn row(t: &TableSchema, vals: Vec<(&str, Option<Vec<u8>>)>) -> Cells {
    let mut cells = vec![None; t.columns.len()];
    for (n, v) in vals {
        if let Some(i) = t.col(n) {
            cells[i] = v;
        }
    }
    cells
}

fn table_rows(out: &mut Vec<Cells>, sys: &TableSchema, t: &TableSchema) {
    out.push(row(
        sys,
        vec![
            ("keyspace_name", v_text(&t.keyspace)),
            ("table_name", v_text(&t.name)),
            ("additional_write_policy", v_text("99p")),
            ("bloom_filter_fp_chance", v_double(0.01)),
            (
                "caching",
                v_text_map(&[("keys", "ALL"), ("rows_per_partition", "NONE")]),
            ),
            ("cdc", None),
            ("comment", v_text(&t.comment)),
            (
                "compaction",
                v_text_map(&[
                    (
                        "class",
                        "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy",
                    ),
                    ("max_threshold", "32"),
                    ("min_threshold", "4"),
                ]),
            ),
            (
                "compression",
                v_text_map(&[
                    ("chunk_length_in_kb", "16"),
                    ("class", "org.apache.cassandra.io.compress.LZ4Compressor"),
                ]),
            ),
            ("crc_check_chance", v_double(1.0)),
            ("dclocal_read_repair_chance", v_double(0.0)),
            ("default_time_to_live", v_int(0)),
            ("extensions", v_blob_map(&[])),
            ("flags", v_text_list(&["compound"])),
            ("gc_grace_seconds", v_int(864_000)),
            ("id", v_uuid(t.id)),
            ("max_index_interval", v_int(2048)),
            ("memtable_flush_period_in_ms", v_int(0)),
            ("min_index_interval", v_int(128)),
            ("read_repair", v_text("BLOCKING")),
            ("read_repair_chance", v_double(0.0)),
            ("speculative_retry", v_text("99p")),
        ],
    ));
}

fn column_rows(out: &mut Vec<Cells>, sys: &TableSchema, t: &TableSchema) {
    let mut cols: Vec<_> = t.columns.iter().collect();
    cols.sort_by(|a, b| a.name.cmp(&b.name));
    for c in cols {
        let (kind, pos) = match c.kind {
            Kind::PartitionKey => ("partition_key", c.position as i32),
            Kind::Clustering => ("clustering", c.position as i32),
            Kind::Regular => ("regular", -1),
            Kind::Static => ("static", -1),
        };
        let order = match c.kind {
            Kind::Clustering if c.desc => "desc",
            Kind::Clustering => "asc",
            _ => "none",
        };
        out.push(row(
            sys,
            vec![
                ("keyspace_name", v_text(&t.keyspace)),
                ("table_name", v_text(&t.name)),
                ("column_name", v_text(&c.name)),
                ("clustering_order", v_text(order)),
                ("column_name_bytes", Some(c.name.as_bytes().to_vec())),
                ("kind", v_text(kind)),
                ("position", v_int(pos)),
                ("type", v_text(&c.ty.cql_name())),
            ],
        ));
    }
}

/// A node's tokens as the set<text> of system.local and system.peers (sets are sorted).
fn v_tokens(tokens: &[i64]) -> Option<Vec<u8>> {
    let mut texts: Vec<String> = tokens.iter().map(i64::to_string).collect();
    texts.sort();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    v_text_list(&refs)
}

/// All rows of a system table, generated now, as the node at index `node` of
/// `db.nodes` answers them: system.local is that node, system.peers(_v2) the others.
pub fn rows(db: &Db, sys: &TableSchema, node: usize) -> Vec<Cells> {
    let schema = db.schema.read().unwrap_or_else(|e| e.into_inner());
    let user_tables = || {
        schema
            .keyspaces
            .values()
            .flat_map(|k| k.tables.values().map(|t| t.schema.clone()))
            .collect::<Vec<_>>()
    };
    let peers = || {
        db.nodes
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != node)
            .map(|(_, n)| n)
    };
    let mut out = Vec::new();
    match (sys.keyspace.as_str(), sys.name.as_str()) {
        ("system", "local") => {
            if let Some(n) = db.nodes.get(node) {
                out.push(row(
                    sys,
                    vec![
                        ("key", v_text("local")),
                        ("bootstrapped", v_text("COMPLETED")),
                        ("broadcast_address", v_inet(n.address)),
                        ("broadcast_port", v_int(STORAGE_PORT)),
                        ("cluster_name", v_text(&n.cluster_name)),
                        ("cql_version", v_text(CQL_VERSION)),
                        ("data_center", v_text(&n.data_center)),
                        ("gossip_generation", v_int(n.gossip_generation)),
                        ("host_id", v_uuid(n.host_id)),
                        ("listen_address", v_inet(n.address)),
                        ("listen_port", v_int(STORAGE_PORT)),
                        ("native_protocol_version", v_text("5")),
                        (
                            "partitioner",
                            v_text("org.apache.cassandra.dht.Murmur3Partitioner"),
                        ),
                        ("rack", v_text(&n.rack)),
                        ("release_version", v_text(RELEASE_VERSION)),
                        ("rpc_address", v_inet(n.address)),
                        ("rpc_port", v_int(n.native_port as i32)),
                        ("schema_version", v_uuid(schema.version)),
                        ("tokens", v_tokens(&n.tokens)),
                        ("truncated_at", None),
                    ],
                ));
            }
        }
        ("system", "peers") => {
            for n in peers() {
                out.push(row(
                    sys,
                    vec![
                        ("peer", v_inet(n.address)),
                        ("data_center", v_text(&n.data_center)),
                        ("host_id", v_uuid(n.host_id)),
                        ("preferred_ip", v_inet(n.address)),
                        ("rack", v_text(&n.rack)),
                        ("release_version", v_text(RELEASE_VERSION)),
                        ("rpc_address", v_inet(n.address)),
                        ("schema_version", v_uuid(schema.version)),
                        ("tokens", v_tokens(&n.tokens)),
                    ],
                ));
            }
        }
        ("system", "peers_v2") => {
            for n in peers() {
                out.push(row(
                    sys,
                    vec![
                        ("peer", v_inet(n.address)),
                        ("peer_port", v_int(STORAGE_PORT)),
                        ("data_center", v_text(&n.data_center)),
                        ("host_id", v_uuid(n.host_id)),
                        ("native_address", v_inet(n.address)),
                        ("native_port", v_int(n.native_port as i32)),
                        ("preferred_ip", v_inet(n.address)),
                        ("preferred_port", v_int(STORAGE_PORT)),
                        ("rack", v_text(&n.rack)),
                        ("release_version", v_text(RELEASE_VERSION)),
                        ("schema_version", v_uuid(schema.version)),
                        ("tokens", v_tokens(&n.tokens)),
                    ],
                ));
            }
        }
        ("system_schema", "keyspaces") => {
            for ks in SCHEMA_KEYSPACES {
                out.push(row(
                    sys,
                    vec![
                        ("keyspace_name", v_text(ks)),
                        ("durable_writes", v_bool(true)),
                        (
                            "replication",
                            v_text_map(&[("class", "org.apache.cassandra.locator.LocalStrategy")]),
                        ),
                    ],
                ));
            }
            for k in schema.keyspaces.values() {
                let repl: Vec<(&str, &str)> = k
                    .replication
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                out.push(row(
                    sys,
                    vec![
                        ("keyspace_name", v_text(&k.name)),
                        ("durable_writes", v_bool(k.durable_writes)),
                        ("replication", v_text_map(&repl)),
                    ],
                ));
            }
        }
        ("system_schema", "tables") => {
            for ks in SCHEMA_KEYSPACES {
                for t in sorted(ks) {
                    table_rows(&mut out, sys, &t);
                }
            }
            for t in user_tables() {
                table_rows(&mut out, sys, &t);
            }
        }
        ("system_schema", "columns") => {
            for ks in SCHEMA_KEYSPACES {
                for t in sorted(ks) {
                    column_rows(&mut out, sys, &t);
                }
            }
            for t in user_tables() {
                column_rows(&mut out, sys, &t);
            }
        }
        ("system_virtual_schema", "keyspaces") => {
            for ks in VIRTUAL_KEYSPACES {
                out.push(row(sys, vec![("keyspace_name", v_text(ks))]));
            }
        }
        ("system_virtual_schema", "tables") => {
            for ks in VIRTUAL_KEYSPACES {
                for t in sorted(ks) {
                    out.push(row(
                        sys,
                        vec![
                            ("keyspace_name", v_text(ks)),
                            ("table_name", v_text(&t.name)),
                            ("comment", v_text(&t.comment)),
                        ],
                    ));
                }
            }
        }
        ("system_virtual_schema", "columns") => {
            for ks in VIRTUAL_KEYSPACES {
                for t in sorted(ks) {
                    column_rows(&mut out, sys, &t);
                }
            }
        }
        // types, functions, aggregates, views, indexes, triggers: empty.
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::decode_collection;

    /// A store served by three nodes on 127.0.0.1-3, port 9042, the third in dc2/r3.
    fn cluster() -> Db {
        let tokens = crate::token::evenly_spaced(3, 4);
        let nodes = (0..3)
            .zip(tokens)
            .map(|(i, tokens)| NodeInfo {
                address: IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i as u8 + 1)),
                native_port: 9042,
                host_id: host_id(i),
                data_center: if i == 2 { "dc2" } else { DEFAULT_DATA_CENTER }.into(),
                rack: if i == 2 { "r3" } else { DEFAULT_RACK }.into(),
                tokens,
                cluster_name: "cql-devserver".into(),
                gossip_generation: 1,
            })
            .collect();
        Db::new(nodes)
    }

    fn cell(t: &TableSchema, row: &Cells, name: &str) -> Option<Vec<u8>> {
        t.col(name).and_then(|i| row[i].clone())
    }

    fn tokens(t: &TableSchema, row: &Cells) -> Vec<i64> {
        let b = cell(t, row, "tokens").unwrap();
        let mut v: Vec<i64> = decode_collection(&b, 1)
            .unwrap()
            .iter()
            .map(|e| std::str::from_utf8(&e[0]).unwrap().parse().unwrap())
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn host_ids_are_distinct_and_stable() {
        assert_eq!(
            crate::util::hex(&host_id(0)),
            "00000000000040008000000000000001"
        );
        assert_ne!(host_id(1), host_id(2));
    }

    #[test]
    fn each_node_is_local_to_itself_and_a_peer_of_the_others() {
        let db = cluster();
        let local = table("system", "local").unwrap();
        let peers = table("system", "peers").unwrap();
        let peers_v2 = table("system", "peers_v2").unwrap();
        for node in 0..3 {
            let me = &db.nodes[node];
            let l = rows(&db, &local, node);
            assert_eq!(l.len(), 1);
            for col in ["rpc_address", "broadcast_address", "listen_address"] {
                assert_eq!(cell(&local, &l[0], col), v_inet(me.address), "{col}");
            }
            assert_eq!(cell(&local, &l[0], "rpc_port"), v_int(9042));
            assert_eq!(cell(&local, &l[0], "host_id"), v_uuid(host_id(node)));
            assert_eq!(cell(&local, &l[0], "data_center"), v_text(&me.data_center));
            assert_eq!(tokens(&local, &l[0]), me.tokens);

            let p = rows(&db, &peers, node);
            let p2 = rows(&db, &peers_v2, node);
            let others: Vec<&NodeInfo> = (0..3)
                .filter(|i| *i != node)
                .map(|i| &db.nodes[i])
                .collect();
            assert_eq!(p.len(), 2);
            assert_eq!(p2.len(), 2);
            for ((row, row2), other) in p.iter().zip(&p2).zip(others) {
                assert_eq!(cell(&peers, row, "peer"), v_inet(other.address));
                assert_eq!(cell(&peers, row, "rpc_address"), v_inet(other.address));
                assert_eq!(cell(&peers, row, "host_id"), v_uuid(other.host_id));
                assert_eq!(cell(&peers, row, "rack"), v_text(&other.rack));
                assert_eq!(cell(&peers, row, "data_center"), v_text(&other.data_center));
                assert_eq!(tokens(&peers, row), other.tokens);
                assert_eq!(
                    cell(&peers_v2, row2, "native_address"),
                    v_inet(other.address)
                );
                assert_eq!(cell(&peers_v2, row2, "native_port"), v_int(9042));
                assert_eq!(cell(&peers_v2, row2, "peer_port"), v_int(7000));
                assert_eq!(cell(&peers_v2, row2, "host_id"), v_uuid(other.host_id));
                assert_eq!(tokens(&peers_v2, row2), other.tokens);
            }
        }
        // Node 2 (127.0.0.2) sees 127.0.0.1 and 127.0.0.3, the latter in dc2/r3.
        let p = rows(&db, &peers, 1);
        assert_eq!(cell(&peers, &p[0], "peer"), Some(vec![127, 0, 0, 1]));
        assert_eq!(cell(&peers, &p[1], "peer"), Some(vec![127, 0, 0, 3]));
        assert_eq!(cell(&peers, &p[1], "data_center"), v_text("dc2"));
    }

    #[test]
    fn a_single_node_has_no_peers() {
        let db = Db::new(vec![NodeInfo::for_tests()]);
        assert!(rows(&db, &table("system", "peers").unwrap(), 0).is_empty());
        assert!(rows(&db, &table("system", "peers_v2").unwrap(), 0).is_empty());
        assert_eq!(rows(&db, &table("system", "local").unwrap(), 0).len(), 1);
    }
}
