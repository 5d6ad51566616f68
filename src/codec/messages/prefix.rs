//! Body prefixes announced by envelope flags: tracing id (responses, 0x02), warnings (responses,
//! 0x08) and custom payload (0x04, both directions), in that order.

use crate::codec::error::CodecError;
use crate::codec::header::Header;
use crate::codec::primitives::{bytes_map, run, string_list, uuid, BytesMap, StringList};

/// What precedes the message proper in a body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyPrefix<'a> {
    pub tracing_id: Option<[u8; 16]>,
    pub warnings: Option<StringList<'a>>,
    pub custom_payload: Option<BytesMap<'a>>,
}

/// Strips the prefixes the header's flags announce and returns them with the remaining body.
/// On requests the tracing flag is only a request and carries no bytes.
pub fn strip_prefixes<'a>(
    header: &Header,
    body: &'a [u8],
) -> Result<(BodyPrefix<'a>, &'a [u8]), CodecError> {
    let mut p = BodyPrefix::default();
    let mut rest = body;
    if header.is_response && header.flags.tracing() {
        let (r, id) = run("tracing id", rest, uuid)?;
        p.tracing_id = Some(id);
        rest = r;
    }
    if header.is_response && header.flags.warning() {
        let (r, w) = run("warnings", rest, string_list)?;
        p.warnings = Some(w);
        rest = r;
    }
    if header.flags.custom_payload() {
        let (r, m) = run("custom payload", rest, bytes_map)?;
        p.custom_payload = Some(m);
        rest = r;
    }
    Ok((p, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::header::{Flags, Opcode};
    use crate::codec::primitives::write;

    fn header(resp: bool, flags: u8) -> Header {
        Header {
            version: 4,
            is_response: resp,
            flags: Flags(flags),
            stream: 1,
            opcode: Opcode::Result,
            length: 0,
        }
    }

    #[test]
    fn strips_tracing_warnings_and_payload() {
        let mut b = vec![7u8; 16];
        write::short(&mut b, 1);
        write::string(&mut b, "careful");
        write::short(&mut b, 1);
        write::string(&mut b, "k");
        write::bytes(&mut b, Some(b"v"));
        b.extend_from_slice(&[0, 0, 0, 1]);
        let (p, rest) = strip_prefixes(&header(true, 0x0e), &b).unwrap();
        assert_eq!(p.tracing_id, Some([7u8; 16]));
        assert_eq!(p.warnings.unwrap().iter().collect::<Vec<_>>(), ["careful"]);
        assert_eq!(p.custom_payload.unwrap().keys().collect::<Vec<_>>(), ["k"]);
        assert_eq!(rest, [0, 0, 0, 1]);
        // A request's tracing flag carries no bytes.
        let (p, rest) = strip_prefixes(&header(false, 0x02), &[1, 2]).unwrap();
        assert_eq!((p.tracing_id, rest), (None, &[1u8, 2][..]));
        assert!(strip_prefixes(&header(true, 0x02), &[0; 15]).is_err());
    }
}
