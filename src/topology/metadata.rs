//! Result metadata (§4.2.5.2 of the v4 specification): flags, paging state, the v5 new metadata
//! id, table specs and column specs with their [option] types, parsed fully (types nest) so the
//! rows behind them can be found. Of each column only its name and what the rewriter needs of
//! its type ([`Kind`]) are kept.

use nom::bytes::complete::take;

use crate::codec::primitives::{bytes, int, run_all, short, short_bytes, string, PResult};
use crate::codec::CodecError;

/// Metadata flag: one keyspace and table for every column, given once.
pub(crate) const GLOBAL_TABLES_SPEC: i32 = 0x01;
/// Metadata flag: more pages follow; a [bytes] paging state is present.
pub(crate) const HAS_MORE_PAGES: i32 = 0x02;
/// Metadata flag: no column specs (EXECUTE with skip_metadata).
pub(crate) const NO_METADATA: i32 = 0x04;
/// Metadata flag (v5): the result metadata changed; a [short bytes] new_metadata_id is present.
pub(crate) const METADATA_CHANGED: i32 = 0x08;

/// Types nest (`map<text, frozen<list<tuple<...>>>>`); deeper than this is refused, so that a
/// hostile body cannot exhaust the stack.
const MAX_TYPE_DEPTH: usize = 32;

/// What the rewriter needs to know of a column's `[option]` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `inet` (0x0010).
    Inet,
    /// `int` (0x0009).
    Int,
    /// `uuid` (0x000C).
    Uuid,
    /// `ascii` (0x0001) or `varchar`/`text` (0x000D).
    Text,
    /// `set<ascii>` or `set<varchar>` (the `tokens` column).
    TextSet,
    /// Any other type (parsed and skipped).
    Other,
}

/// A column of a result: its name and the kind of its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column<'a> {
    pub name: &'a str,
    pub kind: Kind,
}

/// [option] type ids (§6 of the v4 specification).
mod type_id {
    pub const ASCII: u16 = 0x0001;
    pub const INT: u16 = 0x0009;
    pub const UUID: u16 = 0x000C;
    pub const VARCHAR: u16 = 0x000D;
    pub const INET: u16 = 0x0010;
    /// The last native type id (`duration`, v5).
    pub const LAST_NATIVE: u16 = 0x0015;
    pub const CUSTOM: u16 = 0x0000;
    pub const LIST: u16 = 0x0020;
    pub const MAP: u16 = 0x0021;
    pub const SET: u16 = 0x0022;
    pub const UDT: u16 = 0x0030;
    pub const TUPLE: u16 = 0x0031;
}

pub(crate) fn fail<T>(i: &[u8]) -> PResult<'_, T> {
    Err(nom::Err::Error(nom::error::Error::new(
        i,
        nom::error::ErrorKind::Verify,
    )))
}

/// An [option] type, parsed to its end; `depth` counts the enclosing types.
fn option(i: &[u8], depth: usize) -> PResult<'_, Kind> {
    if depth > MAX_TYPE_DEPTH {
        return fail(i);
    }
    let (i, id) = short(i)?;
    match id {
        type_id::INET => Ok((i, Kind::Inet)),
        type_id::INT => Ok((i, Kind::Int)),
        type_id::UUID => Ok((i, Kind::Uuid)),
        type_id::ASCII | type_id::VARCHAR => Ok((i, Kind::Text)),
        1..=type_id::LAST_NATIVE => Ok((i, Kind::Other)),
        type_id::CUSTOM => Ok((string(i)?.0, Kind::Other)),
        type_id::LIST => Ok((option(i, depth + 1)?.0, Kind::Other)),
        type_id::SET => {
            let (i, element) = option(i, depth + 1)?;
            let kind = if element == Kind::Text {
                Kind::TextSet
            } else {
                Kind::Other
            };
            Ok((i, kind))
        }
        type_id::MAP => {
            let (i, _) = option(i, depth + 1)?;
            Ok((option(i, depth + 1)?.0, Kind::Other))
        }
        type_id::UDT => {
            let (i, _keyspace) = string(i)?;
            let (i, _name) = string(i)?;
            let (mut i, n) = short(i)?;
            for _ in 0..n {
                i = string(i)?.0;
                i = option(i, depth + 1)?.0;
            }
            Ok((i, Kind::Other))
        }
        type_id::TUPLE => {
            let (mut i, n) = short(i)?;
            for _ in 0..n {
                i = option(i, depth + 1)?.0;
            }
            Ok((i, Kind::Other))
        }
        _ => fail(i),
    }
}

/// `n` column specs, each with its keyspace and table unless the spec is `global`.
fn column_specs(i: &[u8], global: bool, n: i32) -> PResult<'_, Vec<Column<'_>>> {
    let Ok(n) = usize::try_from(n) else {
        return fail(i);
    };
    // Every spec takes at least 4 bytes: never reserve more than the input can hold.
    let mut columns = Vec::with_capacity(n.min(i.len() / 4));
    let mut rest = if global {
        let (i, _keyspace) = string(i)?;
        string(i)?.0
    } else {
        i
    };
    for _ in 0..n {
        if !global {
            rest = string(rest)?.0;
            rest = string(rest)?.0;
        }
        let (r, name) = string(rest)?;
        let (r, kind) = option(r, 0)?;
        columns.push(Column { name, kind });
        rest = r;
    }
    Ok((rest, columns))
}

/// The bytes `p` consumed from `start`, given what it left (`rest`).
fn consumed<'a>(start: &'a [u8], rest: &'a [u8]) -> &'a [u8] {
    start
        .get(..start.len().saturating_sub(rest.len()))
        .unwrap_or_default()
}

/// The metadata of a Rows result (or of the result part of a Prepared result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Metadata<'a> {
    pub flags: i32,
    pub columns_count: i32,
    /// When Has_more_pages: the paging state (`None`: null).
    pub paging_state: Option<Option<&'a [u8]>>,
    /// The paging state as on the wire (its length included); empty when there is none.
    pub paging_raw: &'a [u8],
    /// v5, when Metadata_changed: the new result metadata id.
    pub new_metadata_id: Option<&'a [u8]>,
    /// What follows the paging state up to the rows count (new metadata id, table spec, column
    /// specs), as on the wire.
    pub after_paging: &'a [u8],
    /// The column specs; `None` when No_metadata.
    pub columns: Option<Vec<Column<'a>>>,
}

/// `<flags><columns_count>[<paging_state>][<new_metadata_id>][<global_table_spec>?<col_spec>*]`
/// of protocol `version` (new_metadata_id only in v5).
pub(crate) fn metadata(i: &[u8], version: u8) -> PResult<'_, Metadata<'_>> {
    let (i, flags) = int(i)?;
    let (i, columns_count) = int(i)?;
    if columns_count < 0 {
        return fail(i);
    }
    let (after, paging_state) = if flags & HAS_MORE_PAGES != 0 {
        let (r, p) = bytes(i)?;
        (r, Some(p))
    } else {
        (i, None)
    };
    let paging_raw = consumed(i, after);
    let (r, new_metadata_id) = if version >= 5 && flags & METADATA_CHANGED != 0 {
        let (r, id) = short_bytes(after)?;
        (r, Some(id))
    } else {
        (after, None)
    };
    let (r, columns) = if flags & NO_METADATA != 0 {
        (r, None)
    } else {
        let (r, c) = column_specs(r, flags & GLOBAL_TABLES_SPEC != 0, columns_count)?;
        (r, Some(c))
    };
    Ok((
        r,
        Metadata {
            flags,
            columns_count,
            paging_state,
            paging_raw,
            new_metadata_id,
            after_paging: consumed(after, r),
            columns,
        },
    ))
}

/// Result-set column specs (owned) announced by a PREPARE's result, for EXECUTE results sent
/// without metadata (the client set skip_metadata).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    columns: Vec<(Box<str>, Kind)>,
}

impl Columns {
    /// From a RESULT body of kind Prepared (4), prefixes already stripped (the body starts at the
    /// [int] kind), of protocol `version` 3..=5: skips id, (v5) result_metadata_id, the prepared
    /// (bind) metadata (v4+: pk_count + pk indexes), and reads the result metadata. `Ok(None)` when
    /// the result metadata has No_metadata or no columns.
    pub fn from_prepared(body: &[u8], version: u8) -> Result<Option<Columns>, CodecError> {
        if !(3..=5).contains(&version) {
            return Err(CodecError::UnsupportedVersion { version });
        }
        let result = run_all("RESULT Prepared", body, |i| {
            let (i, kind) = int(i)?;
            if kind != 4 {
                return fail(i);
            }
            let (i, _id) = short_bytes(i)?;
            let i = if version >= 5 { short_bytes(i)?.0 } else { i };
            let (i, bind_flags) = int(i)?;
            let (i, bind_count) = int(i)?;
            let i = if version >= 4 {
                let (i, pk_count) = int(i)?;
                let Some(pk_bytes) = usize::try_from(pk_count)
                    .ok()
                    .and_then(|n| n.checked_mul(2))
                else {
                    return fail(i);
                };
                take(pk_bytes)(i)?.0
            } else {
                i
            };
            let (i, _bind) = column_specs(i, bind_flags & GLOBAL_TABLES_SPEC != 0, bind_count)?;
            metadata(i, version)
        })?;
        Ok(result
            .columns
            .filter(|c| !c.is_empty())
            .map(|c| Columns::new(c.iter().copied())))
    }

    /// Owned copies of `columns`.
    pub fn new<'a>(columns: impl IntoIterator<Item = Column<'a>>) -> Columns {
        Columns {
            columns: columns
                .into_iter()
                .map(|c| (Box::from(c.name), c.kind))
                .collect(),
        }
    }

    /// The columns, in result order.
    pub fn iter(&self) -> impl Iterator<Item = Column<'_>> + '_ {
        self.columns
            .iter()
            .map(|(name, kind)| Column { name, kind: *kind })
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Heap bytes held (registry accounting).
    pub fn heap_bytes(&self) -> usize {
        self.columns.capacity() * std::mem::size_of::<(Box<str>, Kind)>()
            + self.columns.iter().map(|(n, _)| n.len()).sum::<usize>()
    }
}
