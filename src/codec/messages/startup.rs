//! STARTUP, OPTIONS, SUPPORTED and READY: the connection handshake.

use crate::codec::error::CodecError;
use crate::codec::primitives::{run_all, string_map, string_multimap, StringMap, StringMultimap};

/// STARTUP: a [string map] of options (`CQL_VERSION`, `COMPRESSION`, driver names...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Startup<'a> {
    pub options: StringMap<'a>,
}

impl<'a> Startup<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Startup {
            options: run_all("STARTUP", body, string_map)?,
        })
    }
    /// The `COMPRESSION` option, if any.
    pub fn compression(&self) -> Option<&'a str> {
        self.options.get("COMPRESSION")
    }
    /// The `CQL_VERSION` option, if any.
    pub fn cql_version(&self) -> Option<&'a str> {
        self.options.get("CQL_VERSION")
    }
}

/// SUPPORTED: a [string multimap] of what the server supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supported<'a> {
    pub options: StringMultimap<'a>,
}

impl<'a> Supported<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Supported {
            options: run_all("SUPPORTED", body, string_multimap)?,
        })
    }
}

/// OPTIONS and READY have empty bodies.
pub fn decode_empty(body: &[u8], what: &'static str) -> Result<(), CodecError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(CodecError::Malformed(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::primitives::write;

    #[test]
    fn startup_with_compression() {
        let mut b = Vec::new();
        write::string_map(
            &mut b,
            &[("CQL_VERSION", "3.4.5"), ("COMPRESSION", "snappy")],
        );
        let s = Startup::decode(&b).unwrap();
        assert_eq!(s.compression(), Some("snappy"));
        assert_eq!(s.cql_version(), Some("3.4.5"));
        b.push(0);
        assert!(Startup::decode(&b).is_err());
    }

    #[test]
    fn supported_multimap() {
        let mut b = Vec::new();
        write::short(&mut b, 1);
        write::string(&mut b, "COMPRESSION");
        write::short(&mut b, 2);
        write::string(&mut b, "snappy");
        write::string(&mut b, "lz4");
        let s = Supported::decode(&b).unwrap();
        let v: Vec<_> = s.options.get("COMPRESSION").unwrap().iter().collect();
        assert_eq!(v, ["snappy", "lz4"]);
        assert!(decode_empty(&[], "READY").is_ok());
        assert!(decode_empty(&[1], "READY").is_err());
    }
}
