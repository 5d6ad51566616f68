//! What the cluster looks like to a client: the rows of `system.local`, `system.peers` and
//! `system.peers_v2`, and the addresses in TOPOLOGY_CHANGE and STATUS_CHANGE events,
//! rewritten so that every address a driver learns is a proxy address. No NGINX types.
//!
//! Drivers read these tables at connect and on every refresh, and open their pools to the
//! addresses they find. Handed over as Cassandra wrote them, they lead every driver around
//! the proxy, past identity, policy and audit. Two layouts ([`Topology`]):
//!
//! * [`Topology::Proxy`]: the proxy is the cluster. `system.local` names the address the
//!   client connected to; the peers are the other proxy instances listed (each with a token
//!   that splits the ring evenly, and a host id derived from its address), or none.
//! * [`Topology::Nodes`]: one proxy address per Cassandra node. Each row keeps its tokens,
//!   data centre, rack and host id, so token-aware and DC-aware routing work through the
//!   proxy; its addresses become those of the proxy that fronts its node. A peer with no
//!   mapping is left out of the answer (and reported), never handed over as it is.
//!
//! # What is rewritten
//!
//! Only cells change; the metadata goes on as it came, except that a made-up answer
//! (`system.peers(_v2)` under [`Topology::Proxy`]) loses Has_more_pages and its paging state,
//! so that no driver pages through it. Every inet column is an address, whatever its name
//! (the table's own are [`Table::address_columns`]; an alias such as `SELECT rpc_address AS a`
//! is one too), and port columns are matched by name and type ([`Table::port_columns`]):
//! every non-null cell of an address column becomes the proxy's IP (4 bytes for IPv4, IPv4-mapped IPv6 included; 16 for IPv6),
//! every non-null cell of a port column the proxy's port; null cells stay null.
//!
//! The node a row describes is its native address ([`Table::node_columns`]): `rpc_address`
//! (`system.local`, `system.peers`) or `native_address` (`system.peers_v2`), else, when that
//! is not selected, null or unspecified (`0.0.0.0`, `::`), `broadcast_address` (local) or
//! `peer`; with `rpc_port` (local) or `native_port` (peers_v2) when selected. The map matches
//! address and port, else the address alone when exactly one entry has it (`system.peers` has
//! no port column; several entries with its address: the row is ambiguous, left out). A
//! result that selects none of the table's address columns (`SELECT schema_version FROM
//! system.local`) names no node: under [`Topology::Nodes`] it goes on as it came.
//!
//! Under [`Topology::Proxy`] the ring is the listed instances, without repeats, plus the
//! instance the client is served by when the list does not name it (appended at the end; an
//! empty list makes a ring of one). Instance `i` of `N` gets one token, the `i`-th of `N`
//! evenly spaced over the partitioner's range ([`token`]), and a host id derived from its
//! address ([`host_id`]): `system.local` carries them for the proxy the client connected to,
//! and the made-up peers rows for every other instance, so that drivers see one consistent
//! ring whatever instance they ask. Tokens are Murmur3's unless the partitioner (of the row,
//! else remembered) is RandomPartitioner; other partitioners get Murmur3 tokens too. The
//! made-up rows have exactly the selected columns: addresses, ports, token and host id of
//! their instance; data_center, rack, release_version and schema_version from the first real
//! row of the answer, else from the connection's [`Memo`] of its last `system.local` row
//! (schema agreement then compares like with like), else null; every other column null.
//!
//! Under [`Topology::Nodes`], an unmapped `system.local` row names the proxy address the
//! client connected to (it is the proxy that fronts that node) and is reported, or is left
//! out when that address is unknown.
//!
//! # Layout
//! `metadata` (result metadata and column types, [`Columns`]), `rows` (the Rows view,
//! [`Rows`]), `ring` (addresses, map lookup, tokens, host ids), `rewrite` ([`rewrite_rows`]),
//! `event` ([`rewrite_event`]).

use std::net::SocketAddr;

mod event;
mod metadata;
mod rewrite;
mod ring;
mod rows;
#[cfg(test)]
mod tests;

pub use event::{rewrite_event, EventRewrite};
pub use metadata::{Column, Columns, Kind};
pub use rewrite::rewrite_rows;
pub use ring::{host_id, token};
pub use rows::{Cell, Row, Rows};

/// How the proxy presents the cluster, per NGINX `server` (`cql_topology`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Rows and events pass as Cassandra wrote them.
    Off,
    /// The proxy stands for the cluster. `instances` lists every proxy address that does (this
    /// one included); empty: the proxy the client connected to is the only node.
    Proxy { instances: Vec<SocketAddr> },
    /// One proxy address per node: `(node's native address, proxy address that fronts it)`.
    Nodes { map: Vec<(SocketAddr, SocketAddr)> },
}

impl Default for Topology {
    fn default() -> Self {
        Topology::Proxy {
            instances: Vec::new(),
        }
    }
}

/// The system table a result comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Local,
    Peers,
    PeersV2,
}

impl Table {
    /// The table of `keyspace.table`, if it is one the rewriter handles (case as Cassandra
    /// stores it: lower case).
    pub fn of(keyspace: &str, table: &str) -> Option<Table> {
        match (keyspace, table) {
            ("system", "local") => Some(Table::Local),
            ("system", "peers") => Some(Table::Peers),
            ("system", "peers_v2") => Some(Table::PeersV2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Local => "system.local",
            Table::Peers => "system.peers",
            Table::PeersV2 => "system.peers_v2",
        }
    }

    /// The columns (of type inet) that hold a node's addresses: each becomes a proxy IP.
    pub fn address_columns(self) -> &'static [&'static str] {
        match self {
            Table::Local => &["rpc_address", "broadcast_address", "listen_address"],
            Table::Peers => &["peer", "rpc_address", "preferred_ip"],
            Table::PeersV2 => &["peer", "native_address", "preferred_ip"],
        }
    }

    /// The columns (of type int) that hold a node's ports: each becomes the proxy's port.
    pub fn port_columns(self) -> &'static [&'static str] {
        match self {
            Table::Local => &["rpc_port", "broadcast_port", "listen_port"],
            Table::Peers => &[],
            Table::PeersV2 => &["native_port", "peer_port", "preferred_port"],
        }
    }

    /// The columns that name the node a row describes: its native address, the address to
    /// fall back to when that is absent, null or unspecified, and its native port (none in
    /// `system.peers`).
    pub fn node_columns(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            Table::Local => ("rpc_address", "broadcast_address", Some("rpc_port")),
            Table::Peers => ("rpc_address", "peer", None),
            Table::PeersV2 => ("native_address", "peer", Some("native_port")),
        }
    }
}

/// The `system.local` cells the made-up peers rows copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    DataCenter,
    Rack,
    ReleaseVersion,
    SchemaVersion,
    Partitioner,
}

impl Field {
    const ALL: [Field; 5] = [
        Field::DataCenter,
        Field::Rack,
        Field::ReleaseVersion,
        Field::SchemaVersion,
        Field::Partitioner,
    ];

    /// The column that holds it.
    pub(crate) fn column(self) -> &'static str {
        match self {
            Field::DataCenter => "data_center",
            Field::Rack => "rack",
            Field::ReleaseVersion => "release_version",
            Field::SchemaVersion => "schema_version",
            Field::Partitioner => "partitioner",
        }
    }

    /// The kind of that column's type.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Field::SchemaVersion => Kind::Uuid,
            _ => Kind::Text,
        }
    }

    /// The field column `name` of kind `kind` holds.
    pub(crate) fn of(name: &str, kind: Kind) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|f| f.column() == name && f.kind() == kind)
    }
}

/// Longest cell a [`Memo`] keeps (a data centre or rack name, a version, a partitioner class).
const MEMO_CELL_MAX: usize = 128;

/// Per connection: what the proxy learnt from the last `system.local` row it rewrote, used to fill
/// the rows of proxy instances it makes up in `system.peers(_v2)` (data_center, rack,
/// release_version, schema_version, partitioner): raw cell bytes, bounded (a few hundred bytes).
#[derive(Clone, Debug, Default)]
pub struct Memo {
    /// Indexed by [`Field`]; a cell longer than [`MEMO_CELL_MAX`] is not kept.
    cells: [Option<Vec<u8>>; 5],
}

impl Memo {
    /// The cell remembered for `field`.
    pub(crate) fn get(&self, field: Field) -> Option<&[u8]> {
        self.cells.get(field as usize)?.as_deref()
    }

    /// Remembers `value` for `field` (reusing the allocation), or forgets the field when the
    /// value is too long to keep.
    pub(crate) fn remember(&mut self, field: Field, value: &[u8]) {
        let Some(slot) = self.cells.get_mut(field as usize) else {
            return;
        };
        if value.len() > MEMO_CELL_MAX {
            *slot = None;
            return;
        }
        let v = slot.get_or_insert_with(Vec::new);
        v.clear();
        v.extend_from_slice(value);
    }

    /// Whether the partitioner remembered is RandomPartitioner (tokens 0..2^127).
    pub(crate) fn random_partitioner(&self) -> bool {
        self.get(Field::Partitioner) == Some(ring::RANDOM_PARTITIONER)
    }

    /// Heap bytes held (connection accounting).
    pub fn heap_bytes(&self) -> usize {
        self.cells.iter().flatten().map(Vec::capacity).sum()
    }
}

/// What a rewrite did, for the error log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub rows_in: usize,
    pub rows_out: usize,
    /// Rows left out because the node they describe has no mapping (Nodes layout), by the
    /// address the row names ("10.0.1.7:9042", or "10.0.1.7" when the table has no port column;
    /// "unknown" when the row names none).
    pub left_out: Vec<String>,
}
