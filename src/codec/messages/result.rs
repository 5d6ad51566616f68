//! RESULT: only what the proxy acts on is decoded (kind, prepared ids, keyspace, schema change);
//! rows are never parsed.

use super::event::{schema_change, SchemaChange};
use crate::codec::error::CodecError;
use crate::codec::primitives::{int, run, short_bytes, string};

/// A RESULT body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultBody<'a> {
    Void,
    /// Rows: the rest of the body (metadata and rows) is left undecoded.
    Rows,
    SetKeyspace(&'a str),
    Prepared {
        id: &'a [u8],
        /// v5: the id of the result metadata.
        result_metadata_id: Option<&'a [u8]>,
    },
    SchemaChange(SchemaChange<'a>),
}

impl<'a> ResultBody<'a> {
    /// Decodes a RESULT body of protocol `version` (prefixes already stripped).
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        let (rest, kind) = run("RESULT", body, int)?;
        match kind {
            1 => Ok(ResultBody::Void),
            2 => Ok(ResultBody::Rows),
            3 => Ok(ResultBody::SetKeyspace(
                run("RESULT Set_keyspace", rest, string)?.1,
            )),
            4 => {
                let (rest, id) = run("RESULT Prepared", rest, short_bytes)?;
                let result_metadata_id = if version >= 5 {
                    Some(run("RESULT Prepared", rest, short_bytes)?.1)
                } else {
                    None
                };
                Ok(ResultBody::Prepared {
                    id,
                    result_metadata_id,
                })
            }
            5 => Ok(ResultBody::SchemaChange(
                run("RESULT Schema_change", rest, schema_change)?.1,
            )),
            _ => Err(CodecError::Malformed("RESULT: unknown kind")),
        }
    }

    /// The kind's name: Void, Rows, SetKeyspace, Prepared or SchemaChange.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ResultBody::Void => "Void",
            ResultBody::Rows => "Rows",
            ResultBody::SetKeyspace(_) => "SetKeyspace",
            ResultBody::Prepared { .. } => "Prepared",
            ResultBody::SchemaChange(_) => "SchemaChange",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::primitives::write;

    #[test]
    fn kinds() {
        assert_eq!(
            ResultBody::decode(&[0, 0, 0, 1], 4).unwrap(),
            ResultBody::Void
        );
        assert_eq!(
            ResultBody::decode(&[0, 0, 0, 2, 9, 9], 4).unwrap(),
            ResultBody::Rows
        );
        let mut b = vec![0, 0, 0, 3];
        write::string(&mut b, "shop");
        assert_eq!(
            ResultBody::decode(&b, 4).unwrap(),
            ResultBody::SetKeyspace("shop")
        );
        let mut b = vec![0, 0, 0, 4];
        write::short_bytes(&mut b, &[1; 16]);
        write::short_bytes(&mut b, &[2; 16]);
        b.extend_from_slice(&[0, 0, 0, 1]);
        match ResultBody::decode(&b, 5).unwrap() {
            ResultBody::Prepared {
                id,
                result_metadata_id,
            } => {
                assert_eq!(id, [1; 16]);
                assert_eq!(result_metadata_id, Some(&[2u8; 16][..]));
            }
            other => panic!("{other:?}"),
        }
        let mut b = vec![0, 0, 0, 5];
        for s in ["DROPPED", "TABLE", "ks", "t"] {
            write::string(&mut b, s);
        }
        assert_eq!(
            ResultBody::decode(&b, 4).unwrap().kind_name(),
            "SchemaChange"
        );
        assert!(ResultBody::decode(&[0, 0, 0, 9], 4).is_err());
        assert!(ResultBody::decode(&[0, 0, 0, 4, 0, 16], 4).is_err());
        assert!(ResultBody::decode(&[0, 0], 4).is_err());
    }
}
