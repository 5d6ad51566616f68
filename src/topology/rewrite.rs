//! The rewriting of `system.local`, `system.peers` and `system.peers_v2` results.

use std::net::{IpAddr, SocketAddr};

use super::metadata::{Column, Columns, Kind, Metadata, HAS_MORE_PAGES};
use super::ring::{canonical, describe, host_id, ip_of, lookup, token, Ring};
use super::rows::{Row, Rows, KIND_ROWS};
use super::{Field, Memo, Outcome, Table, Topology};
use crate::codec::primitives::write;
use crate::codec::CodecError;

/// What the rewriter does with a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// An address column of type inet: becomes the proxy's IP.
    Address,
    /// A port column of type int: becomes the proxy's port.
    Port,
    /// `tokens` of type set<text>.
    Tokens,
    /// `host_id` of type uuid.
    HostId,
    /// A cell the made-up peers rows copy (data_center, ...), of the expected type.
    Memo(Field),
    Other,
}

/// How a result's columns are read and rewritten.
struct Plan {
    /// One per column, in order.
    roles: Vec<Role>,
    /// The columns naming the node a row describes ([`Table::node_columns`]), when selected
    /// with the expected type.
    native: Option<usize>,
    fallback: Option<usize>,
    port: Option<usize>,
}

impl Plan {
    fn new(table: Table, columns: &[Column<'_>]) -> Plan {
        let roles = columns
            .iter()
            .map(|c| match (c.name, c.kind) {
                // Every inet column of these tables is an address: by any name, so that an
                // alias (`SELECT rpc_address AS a`) names the proxy too.
                (_, Kind::Inet) => Role::Address,
                (name, Kind::Int) if table.port_columns().contains(&name) => Role::Port,
                ("tokens", Kind::TextSet) => Role::Tokens,
                ("host_id", Kind::Uuid) => Role::HostId,
                (name, kind) => Field::of(name, kind).map_or(Role::Other, Role::Memo),
            })
            .collect();
        let find = |name: &str, kind: Kind| {
            columns
                .iter()
                .position(|c| c.name == name && c.kind == kind)
        };
        let (native, fallback, port) = table.node_columns();
        Plan {
            roles,
            native: find(native, Kind::Inet),
            fallback: find(fallback, Kind::Inet),
            port: port.and_then(|p| find(p, Kind::Int)),
        }
    }

    /// The node `row` describes: its native address (else the fallback address), and its
    /// native port when selected and not null.
    fn node(&self, row: &Row<'_>) -> Option<(IpAddr, Option<u16>)> {
        let address = |index: Option<usize>| {
            index
                .and_then(|i| row.value(i))
                .and_then(ip_of)
                .filter(|ip| !ip.is_unspecified())
        };
        let ip = address(self.native).or_else(|| address(self.fallback))?;
        let port = self
            .port
            .and_then(|i| row.value(i))
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .and_then(|b| u16::try_from(i32::from_be_bytes(b)).ok());
        Some((ip, port))
    }

    /// How the error log names the node of an unmapped row.
    fn describe(&self, row: &Row<'_>) -> String {
        match self.node(row) {
            Some((ip, port)) => describe(ip, port),
            None => "unknown".to_string(),
        }
    }

    /// Remembers the cells of a `system.local` row the made-up peers rows copy.
    fn remember(&self, row: &Row<'_>, memo: &mut Memo) {
        for (cell, role) in row.cells().zip(&self.roles) {
            if let (Role::Memo(field), Some(value)) = (role, cell.value) {
                memo.remember(*field, value);
            }
        }
    }
}

/// What the cells of a rewritten row become.
struct Replacement<'t> {
    /// The proxy address for address and port columns.
    addr: SocketAddr,
    /// The token for `tokens` (else kept).
    token: Option<&'t str>,
    /// The host id for `host_id` (else kept).
    host_id: Option<[u8; 16]>,
}

/// An inet cell holding `ip` (4 bytes for IPv4, IPv4-mapped IPv6 included; else 16).
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => write::bytes(out, Some(&v4.octets())),
        IpAddr::V6(v6) => write::bytes(out, Some(&v6.octets())),
    }
}

/// An int cell holding `port`.
fn write_port(out: &mut Vec<u8>, port: u16) {
    write::bytes(out, Some(&i32::from(port).to_be_bytes()));
}

/// A set<text> cell holding one token.
fn write_token_set(out: &mut Vec<u8>, token: &str) {
    // [int n = 1][bytes token], token strings are at most 40 bytes.
    let inner = 8 + token.len();
    write::int(out, inner as i32);
    write::int(out, 1);
    write::bytes(out, Some(token.as_bytes()));
}

/// `row` with its address, port, token and host id cells replaced; null cells stay null.
fn write_row(out: &mut Vec<u8>, row: &Row<'_>, roles: &[Role], with: &Replacement<'_>) {
    for (cell, role) in row.cells().zip(roles) {
        match (role, cell.value, with.token, with.host_id) {
            (_, None, _, _) => out.extend_from_slice(cell.raw),
            (Role::Address, Some(_), _, _) => write_ip(out, with.addr.ip()),
            (Role::Port, Some(_), _, _) => write_port(out, with.addr.port()),
            (Role::Tokens, Some(_), Some(t), _) => write_token_set(out, t),
            (Role::HostId, Some(_), _, Some(id)) => write::bytes(out, Some(&id)),
            _ => out.extend_from_slice(cell.raw),
        }
    }
}

/// The metadata as it came (without its paging state when `drop_paging`), kind first.
fn write_metadata(out: &mut Vec<u8>, meta: &Metadata<'_>, drop_paging: bool) {
    write::int(out, KIND_ROWS);
    if drop_paging {
        write::int(out, meta.flags & !HAS_MORE_PAGES);
        write::int(out, meta.columns_count);
    } else {
        write::int(out, meta.flags);
        write::int(out, meta.columns_count);
        out.extend_from_slice(meta.paging_raw);
    }
    out.extend_from_slice(meta.after_paging);
}

/// Writes a rows count placeholder; returns where it is.
fn count_placeholder(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    write::int(out, 0);
    at
}

/// Fills the rows count written by [`count_placeholder`].
fn set_count(out: &mut [u8], at: usize, count: usize) {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&count.to_be_bytes());
    }
}

/// Rewrites a RESULT body (prefixes stripped; starts at the `[int]` kind, which must be
/// Rows = 2) answering a SELECT on `table`, for a client connected to the proxy address
/// `local` (`None`: unknown). Appends the whole new RESULT body (kind included) to `out`.
/// `columns`: the metadata from the PREPARE, needed when the result says No_metadata (EXECUTE
/// with skip_metadata); without it such a body is an error. Never panics on any input.
///
/// The body is validated to its last byte before anything is written: on error `out` is as
/// it was. Work is linear in the body, and the output is about the input's size (under
/// [`Topology::Proxy`], a peers answer is one made-up row per other proxy instance).
#[allow(clippy::too_many_arguments)]
pub fn rewrite_rows(
    topology: &Topology,
    table: Table,
    local: Option<SocketAddr>,
    version: u8,
    body: &[u8],
    columns: Option<&Columns>,
    memo: &mut Memo,
    out: &mut Vec<u8>,
) -> Result<Outcome, CodecError> {
    let rows = Rows::parse(body, version, columns)?;
    let local = local.map(canonical);
    let plan = Plan::new(table, rows.columns());
    let outcome = match topology {
        Topology::Off => {
            out.extend_from_slice(body);
            Outcome {
                rows_in: rows.len(),
                rows_out: rows.len(),
                left_out: Vec::new(),
            }
        }
        Topology::Nodes { map } => nodes(map, table, local, &rows, &plan, memo, out),
        Topology::Proxy { instances } => {
            let me = local.or_else(|| instances.first().copied().map(canonical));
            match table {
                Table::Local => proxy_local(instances, me, &rows, &plan, memo, out),
                Table::Peers | Table::PeersV2 => {
                    proxy_peers(instances, me, &rows, &plan, memo, out)
                }
            }
        }
    };
    Ok(outcome)
}

/// [`Topology::Nodes`]: each row names the proxy of its node; unmapped peers rows are left
/// out, an unmapped local row names `local` (left out when that is unknown). Every row left
/// out or named after `local` is reported.
fn nodes(
    map: &[(SocketAddr, SocketAddr)],
    table: Table,
    local: Option<SocketAddr>,
    rows: &Rows<'_>,
    plan: &Plan,
    memo: &mut Memo,
    out: &mut Vec<u8>,
) -> Outcome {
    // A result without address columns names no node (`SELECT schema_version FROM
    // system.local`): nothing to rewrite, nothing to leave out.
    let names_nodes = plan.roles.contains(&Role::Address);
    rows_result(out, rows, false, |out, outcome| {
        for row in rows.rows() {
            if table == Table::Local {
                plan.remember(&row, memo);
            }
            if !names_nodes {
                out.extend_from_slice(row.raw());
                outcome.rows_out += 1;
                continue;
            }
            let proxy = match plan.node(&row).and_then(|(ip, port)| lookup(map, ip, port)) {
                Some(proxy) => Some(proxy),
                None => {
                    outcome.left_out.push(plan.describe(&row));
                    local.filter(|_| table == Table::Local)
                }
            };
            if let Some(addr) = proxy {
                let with = Replacement {
                    addr: canonical(addr),
                    token: None,
                    host_id: None,
                };
                write_row(out, &row, &plan.roles, &with);
                outcome.rows_out += 1;
            }
        }
    })
}

/// [`Topology::Proxy`], `system.local`: the row names the instance `me` serving the client,
/// with its token and host id; without `me` the row is left out.
fn proxy_local(
    instances: &[SocketAddr],
    me: Option<SocketAddr>,
    rows: &Rows<'_>,
    plan: &Plan,
    memo: &mut Memo,
    out: &mut Vec<u8>,
) -> Outcome {
    let ring = me.map(|me| Ring::new(instances, me));
    rows_result(out, rows, false, |out, outcome| {
        for row in rows.rows() {
            plan.remember(&row, memo);
            let Some(ring) = &ring else {
                outcome.left_out.push(plan.describe(&row));
                continue;
            };
            let (index, addr) = ring.me();
            let token = token(index, ring.len(), memo.random_partitioner());
            let with = Replacement {
                addr,
                token: Some(&token),
                host_id: Some(host_id(addr)),
            };
            write_row(out, &row, &plan.roles, &with);
            outcome.rows_out += 1;
        }
    })
}

/// [`Topology::Proxy`], `system.peers(_v2)`: one made-up row per instance other than `me`,
/// with the selected columns; no paging.
fn proxy_peers(
    instances: &[SocketAddr],
    me: Option<SocketAddr>,
    rows: &Rows<'_>,
    plan: &Plan,
    memo: &Memo,
    out: &mut Vec<u8>,
) -> Outcome {
    // The first real row's cells, once (data_center, rack, ... are copied from it).
    let first: Vec<Option<&[u8]>> = rows
        .rows()
        .next()
        .map(|r| r.cells().map(|c| c.value).collect())
        .unwrap_or_default();
    let random = memo.random_partitioner();
    // A result without columns has no rows to make up (it could not carry them).
    let ring = me
        .filter(|_| !plan.roles.is_empty())
        .map(|me| Ring::new(instances, me));
    rows_result(out, rows, true, |out, outcome| {
        if let Some(ring) = ring {
            for (index, addr) in ring.others() {
                for (column, role) in plan.roles.iter().enumerate() {
                    match role {
                        Role::Address => write_ip(out, addr.ip()),
                        Role::Port => write_port(out, addr.port()),
                        Role::Tokens => write_token_set(out, &token(index, ring.len(), random)),
                        Role::HostId => write::bytes(out, Some(&host_id(addr))),
                        Role::Memo(field) => {
                            let real = first.get(column).copied().flatten();
                            write::bytes(out, real.or_else(|| memo.get(*field)));
                        }
                        Role::Other => write::bytes(out, None),
                    }
                }
                outcome.rows_out += 1;
            }
        }
    })
}

/// A Rows result with `rows`' metadata (without its paging state if `drop_paging`) and the
/// rows `write` writes, each counted in the outcome's `rows_out`.
fn rows_result(
    out: &mut Vec<u8>,
    rows: &Rows<'_>,
    drop_paging: bool,
    write: impl FnOnce(&mut Vec<u8>, &mut Outcome),
) -> Outcome {
    write_metadata(out, &rows.meta, drop_paging);
    let count_at = count_placeholder(out);
    let mut outcome = Outcome {
        rows_in: rows.len(),
        ..Outcome::default()
    };
    write(out, &mut outcome);
    set_count(out, count_at, outcome.rows_out);
    outcome
}
