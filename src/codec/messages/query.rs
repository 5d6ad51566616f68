//! QUERY, PREPARE, EXECUTE and BATCH: the requests that carry statements.

use crate::codec::error::CodecError;
use crate::codec::primitives::{
    byte, bytes, consistency, counted_len, int, long, long_string, optional, read_counted, run_all,
    short_bytes, short_counted, string, value, Consistency, PResult, Value,
};

/// Query parameter flags (a [byte] in v3/v4, an [int] in v5).
pub mod flags {
    pub const VALUES: u32 = 0x01;
    pub const SKIP_METADATA: u32 = 0x02;
    pub const PAGE_SIZE: u32 = 0x04;
    pub const PAGING_STATE: u32 = 0x08;
    pub const SERIAL_CONSISTENCY: u32 = 0x10;
    pub const DEFAULT_TIMESTAMP: u32 = 0x20;
    pub const NAMES_FOR_VALUES: u32 = 0x40;
    /// v5 only.
    pub const KEYSPACE: u32 = 0x80;
    /// v5 only.
    pub const NOW_IN_SECONDS: u32 = 0x100;
}

/// Bound values, validated and read lazily.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Values<'a> {
    raw: &'a [u8],
    count: u16,
    named: bool,
}

fn named_value(i: &[u8]) -> PResult<'_, (Option<&str>, Value<'_>)> {
    let (i, n) = string(i)?;
    let (i, v) = value(i)?;
    Ok((i, (Some(n), v)))
}

fn unnamed_value(i: &[u8]) -> PResult<'_, (Option<&str>, Value<'_>)> {
    let (i, v) = value(i)?;
    Ok((i, (None, v)))
}

/// A value, after its [string] name when `named`.
#[inline]
fn maybe_named_value(i: &[u8], named: bool) -> PResult<'_, (Option<&str>, Value<'_>)> {
    if named {
        named_value(i)
    } else {
        unnamed_value(i)
    }
}

impl<'a> Values<'a> {
    counted_len!();
    /// Each value with its name when the values are named.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&'a str>, Value<'a>)> + 'a {
        let named = self.named;
        read_counted(self.raw, self.count, move |i| maybe_named_value(i, named))
    }
}

/// [short] n then n values (each after a [string] name when `named`).
fn values(i: &[u8], named: bool) -> PResult<'_, Values<'_>> {
    let (i, (raw, count)) = short_counted(i, |i| maybe_named_value(i, named))?;
    Ok((i, Values { raw, count, named }))
}

fn flags_field(i: &[u8], version: u8) -> PResult<'_, u32> {
    if version >= 5 {
        let (i, f) = int(i)?;
        Ok((i, f as u32))
    } else {
        let (i, f) = byte(i)?;
        Ok((i, u32::from(f)))
    }
}

/// The parameters of QUERY and EXECUTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryParams<'a> {
    pub consistency: Consistency,
    pub flags: u32,
    pub values: Values<'a>,
    pub page_size: Option<i32>,
    pub paging_state: Option<&'a [u8]>,
    pub serial_consistency: Option<Consistency>,
    pub timestamp: Option<i64>,
    /// v5: the keyspace the statement runs in, overriding the connection's.
    pub keyspace: Option<&'a str>,
    /// v5: the time the statement runs at.
    pub now_in_seconds: Option<i32>,
}

/// What QUERY and EXECUTE parameters and a BATCH end with, each part when `f` flags it:
/// `[<serial_consistency>][<timestamp>]`, and in v5 `[<keyspace>][<now_in_seconds>]`.
struct Trailer<'a> {
    serial_consistency: Option<Consistency>,
    timestamp: Option<i64>,
    keyspace: Option<&'a str>,
    now_in_seconds: Option<i32>,
}

#[inline]
fn trailer(i: &[u8], f: u32, version: u8) -> PResult<'_, Trailer<'_>> {
    let v5 = version >= 5;
    let (i, serial_consistency) = optional(i, f & flags::SERIAL_CONSISTENCY != 0, consistency)?;
    let (i, timestamp) = optional(i, f & flags::DEFAULT_TIMESTAMP != 0, long)?;
    let (i, keyspace) = optional(i, v5 && f & flags::KEYSPACE != 0, string)?;
    let (i, now_in_seconds) = optional(i, v5 && f & flags::NOW_IN_SECONDS != 0, int)?;
    Ok((
        i,
        Trailer {
            serial_consistency,
            timestamp,
            keyspace,
            now_in_seconds,
        },
    ))
}

fn query_params(i: &[u8], version: u8) -> PResult<'_, QueryParams<'_>> {
    let (i, consistency) = consistency(i)?;
    let (i, f) = flags_field(i, version)?;
    let named = f & flags::NAMES_FOR_VALUES != 0;
    let (i, values) = optional(i, f & flags::VALUES != 0, |i| values(i, named))?;
    let (i, page_size) = optional(i, f & flags::PAGE_SIZE != 0, int)?;
    let (i, paging_state) = optional(i, f & flags::PAGING_STATE != 0, bytes)?;
    let (i, t) = trailer(i, f, version)?;
    Ok((
        i,
        QueryParams {
            consistency,
            flags: f,
            values: values.unwrap_or_default(),
            page_size,
            // A null paging state is none.
            paging_state: paging_state.flatten(),
            serial_consistency: t.serial_consistency,
            timestamp: t.timestamp,
            keyspace: t.keyspace,
            now_in_seconds: t.now_in_seconds,
        },
    ))
}

/// QUERY: `<query: long string><query_parameters>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    pub query: &'a str,
    pub params: QueryParams<'a>,
}

impl<'a> Query<'a> {
    /// Decodes a QUERY body of protocol `version` (prefixes already stripped). Every byte must be
    /// accounted for.
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        run_all("QUERY", body, |i| {
            let (i, query) = long_string(i)?;
            let (i, params) = query_params(i, version)?;
            Ok((i, Query { query, params }))
        })
    }
}

/// PREPARE: `<query: long string>`, and in v5 `<flags: int>[<keyspace: string>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepare<'a> {
    pub query: &'a str,
    pub flags: u32,
    pub keyspace: Option<&'a str>,
}

impl<'a> Prepare<'a> {
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        run_all("PREPARE", body, |i| {
            let (i, query) = long_string(i)?;
            if version < 5 {
                return Ok((
                    i,
                    Prepare {
                        query,
                        flags: 0,
                        keyspace: None,
                    },
                ));
            }
            let (i, f) = int(i)?;
            let f = f as u32;
            let (i, keyspace) = optional(i, f & 0x01 != 0, string)?;
            Ok((
                i,
                Prepare {
                    query,
                    flags: f,
                    keyspace,
                },
            ))
        })
    }
}

/// EXECUTE: `<id: short bytes>`, in v5 `<result_metadata_id: short bytes>`, then parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execute<'a> {
    pub id: &'a [u8],
    pub result_metadata_id: Option<&'a [u8]>,
    pub params: QueryParams<'a>,
}

impl<'a> Execute<'a> {
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        run_all("EXECUTE", body, |i| {
            let (i, id) = short_bytes(i)?;
            let (i, result_metadata_id) = optional(i, version >= 5, short_bytes)?;
            let (i, params) = query_params(i, version)?;
            Ok((
                i,
                Execute {
                    id,
                    result_metadata_id,
                    params,
                },
            ))
        })
    }
}

/// The kind of a BATCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchType {
    Logged,
    Unlogged,
    Counter,
}

impl BatchType {
    pub fn name(self) -> &'static str {
        match self {
            BatchType::Logged => "LOGGED",
            BatchType::Unlogged => "UNLOGGED",
            BatchType::Counter => "COUNTER",
        }
    }
}

/// One statement of a BATCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStatement<'a> {
    Query(&'a str),
    Prepared(&'a [u8]),
}

/// One child of a BATCH with its bound values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchChild<'a> {
    pub statement: BatchStatement<'a>,
    pub values: Values<'a>,
}

fn batch_child(i: &[u8]) -> PResult<'_, BatchChild<'_>> {
    let (i, kind) = byte(i)?;
    let (i, statement) = match kind {
        0 => {
            let (i, q) = long_string(i)?;
            (i, BatchStatement::Query(q))
        }
        1 => {
            let (i, id) = short_bytes(i)?;
            (i, BatchStatement::Prepared(id))
        }
        _ => {
            return Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Tag,
            )))
        }
    };
    let (i, values) = values(i, false)?;
    Ok((i, BatchChild { statement, values }))
}

/// The children of a BATCH, validated and read lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchChildren<'a> {
    raw: &'a [u8],
    count: u16,
}

impl<'a> BatchChildren<'a> {
    counted_len!();
    pub fn iter(&self) -> impl Iterator<Item = BatchChild<'a>> + 'a {
        read_counted(self.raw, self.count, batch_child)
    }
}

/// BATCH: `<type><n><child>...<consistency><flags>[<serial_consistency>][<timestamp>]`, and in v5
/// `[<keyspace>][<now_in_seconds>]`. Named values are refused, as Cassandra refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    pub batch_type: BatchType,
    pub children: BatchChildren<'a>,
    pub consistency: Consistency,
    pub flags: u32,
    pub serial_consistency: Option<Consistency>,
    pub timestamp: Option<i64>,
    pub keyspace: Option<&'a str>,
    pub now_in_seconds: Option<i32>,
}

impl<'a> Batch<'a> {
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        run_all("BATCH", body, |i| {
            let (i, t) = byte(i)?;
            let batch_type = match t {
                0 => BatchType::Logged,
                1 => BatchType::Unlogged,
                2 => BatchType::Counter,
                _ => {
                    return Err(nom::Err::Error(nom::error::Error::new(
                        i,
                        nom::error::ErrorKind::Tag,
                    )))
                }
            };
            let (i, (raw, count)) = short_counted(i, batch_child)?;
            let (i, consistency) = consistency(i)?;
            let (i, f) = flags_field(i, version)?;
            if f & flags::NAMES_FOR_VALUES != 0 {
                return Err(nom::Err::Error(nom::error::Error::new(
                    i,
                    nom::error::ErrorKind::Verify,
                )));
            }
            let (i, t) = trailer(i, f, version)?;
            Ok((
                i,
                Batch {
                    batch_type,
                    children: BatchChildren { raw, count },
                    consistency,
                    flags: f,
                    serial_consistency: t.serial_consistency,
                    timestamp: t.timestamp,
                    keyspace: t.keyspace,
                    now_in_seconds: t.now_in_seconds,
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::primitives::write;

    fn params(out: &mut Vec<u8>, version: u8, f: u32, ks: Option<&str>) {
        write::short(out, 0x000A);
        if version >= 5 {
            write::int(out, f as i32);
        } else {
            out.push(f as u8);
        }
        if f & flags::VALUES != 0 {
            write::short(out, 3);
            write::bytes(out, Some(&[0, 0, 0, 1]));
            write::int(out, -1);
            write::int(out, -2);
        }
        if f & flags::PAGE_SIZE != 0 {
            write::int(out, 5000);
        }
        if f & flags::PAGING_STATE != 0 {
            write::bytes(out, Some(b"page"));
        }
        if f & flags::SERIAL_CONSISTENCY != 0 {
            write::short(out, 8);
        }
        if f & flags::DEFAULT_TIMESTAMP != 0 {
            out.extend_from_slice(&42i64.to_be_bytes());
        }
        if let Some(k) = ks {
            write::string(out, k);
        }
        if f & flags::NOW_IN_SECONDS != 0 {
            write::int(out, 99);
        }
    }

    #[test]
    fn query_v4_and_v5_with_keyspace() {
        let mut b = Vec::new();
        write::long_string(&mut b, "SELECT * FROM t");
        params(&mut b, 4, 0x3d, None);
        let q = Query::decode(&b, 4).unwrap();
        assert_eq!(q.query, "SELECT * FROM t");
        assert_eq!(q.params.consistency.name(), "LOCAL_ONE");
        assert_eq!(q.params.values.len(), 3);
        let v: Vec<_> = q.params.values.iter().map(|x| x.1).collect();
        assert_eq!(v, [Value::Bytes(&[0, 0, 0, 1]), Value::Null, Value::Unset]);
        assert_eq!(q.params.page_size, Some(5000));
        assert_eq!(q.params.paging_state, Some(&b"page"[..]));
        assert_eq!(q.params.serial_consistency, Some(Consistency(8)));
        assert_eq!(q.params.timestamp, Some(42));
        assert_eq!(q.params.keyspace, None);
        // Trailing bytes are refused.
        b.push(0);
        assert!(Query::decode(&b, 4).is_err());

        let mut b = Vec::new();
        write::long_string(&mut b, "SELECT * FROM t");
        params(&mut b, 5, 0x1bd, Some("shop"));
        let q = Query::decode(&b, 5).unwrap();
        assert_eq!(q.params.keyspace, Some("shop"));
        assert_eq!(q.params.now_in_seconds, Some(99));
        // Read as v4 the flags are one byte: it does not decode.
        assert!(Query::decode(&b, 4).is_err());
    }

    #[test]
    fn named_values() {
        let mut b = Vec::new();
        write::long_string(&mut b, "UPDATE t SET a = :a");
        write::short(&mut b, 1);
        b.push(0x41);
        write::short(&mut b, 1);
        write::string(&mut b, "a");
        write::bytes(&mut b, Some(b"x"));
        let q = Query::decode(&b, 4).unwrap();
        assert_eq!(
            q.params.values.iter().next(),
            Some((Some("a"), Value::Bytes(b"x")))
        );
    }

    #[test]
    fn prepare_and_execute() {
        let mut b = Vec::new();
        write::long_string(&mut b, "INSERT INTO t (a) VALUES (?)");
        assert_eq!(Prepare::decode(&b, 4).unwrap().keyspace, None);
        let mut b5 = b.clone();
        write::int(&mut b5, 1);
        write::string(&mut b5, "ks");
        let p = Prepare::decode(&b5, 5).unwrap();
        assert_eq!((p.flags, p.keyspace), (1, Some("ks")));
        assert!(Prepare::decode(&b, 5).is_err());

        let mut e = Vec::new();
        write::short_bytes(&mut e, &[1, 2, 3]);
        write::short_bytes(&mut e, &[9; 16]);
        params(&mut e, 5, 0x25, None);
        let x = Execute::decode(&e, 5).unwrap();
        assert_eq!(x.id, [1, 2, 3]);
        assert_eq!(x.result_metadata_id, Some(&[9u8; 16][..]));
        assert_eq!(x.params.values.len(), 3);
        assert!(Execute::decode(&e, 4).is_err());
    }

    #[test]
    fn batch_children_and_keyspace() {
        for version in [3u8, 4, 5] {
            let mut b = vec![1u8];
            write::short(&mut b, 2);
            b.push(1);
            write::short_bytes(&mut b, &[7; 16]);
            write::short(&mut b, 1);
            write::bytes(&mut b, Some(b"v"));
            b.push(0);
            write::long_string(&mut b, "INSERT INTO t (a) VALUES (1)");
            write::short(&mut b, 0);
            write::short(&mut b, 0x000A);
            let f: u32 = if version >= 5 { 0xa0 } else { 0x20 };
            if version >= 5 {
                write::int(&mut b, f as i32);
            } else {
                b.push(f as u8);
            }
            b.extend_from_slice(&7i64.to_be_bytes());
            if version >= 5 {
                write::string(&mut b, "shop");
            }
            let x = Batch::decode(&b, version).unwrap();
            assert_eq!(x.batch_type, BatchType::Unlogged);
            let kids: Vec<_> = x.children.iter().collect();
            assert_eq!(kids.len(), 2);
            assert_eq!(kids[0].statement, BatchStatement::Prepared(&[7; 16]));
            assert_eq!(kids[0].values.len(), 1);
            assert_eq!(
                kids[1].statement,
                BatchStatement::Query("INSERT INTO t (a) VALUES (1)")
            );
            assert_eq!(x.timestamp, Some(7));
            assert_eq!(x.keyspace, (version >= 5).then_some("shop"));
        }
        // Unknown child kind and batch type.
        assert!(Batch::decode(&[0, 0, 1, 2], 4).is_err());
        assert!(Batch::decode(&[3, 0, 0, 0, 1, 0], 4).is_err());
        // Named values refused.
        assert!(Batch::decode(&[0, 0, 0, 0, 1, 0x40], 4).is_err());
        assert!(Batch::decode(&[0, 0, 0, 0, 1, 0x00], 4).is_ok());
    }
}
