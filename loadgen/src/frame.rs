//! CQL native protocol v4 framing: just what the load generator sends and reads.
//!
//! A frame is a 9-byte header (version, flags, i16 stream, opcode, u32 body length) and a
//! body. Requests carry version 0x04, responses 0x84. No compression is negotiated.

pub const VERSION: u8 = 0x04;
pub const RESPONSE_VERSION: u8 = 0x84;
pub const HEADER_LEN: usize = 9;

pub const OP_ERROR: u8 = 0x00;
pub const OP_STARTUP: u8 = 0x01;
pub const OP_READY: u8 = 0x02;
pub const OP_AUTHENTICATE: u8 = 0x03;
pub const OP_QUERY: u8 = 0x07;
pub const OP_RESULT: u8 = 0x08;
pub const OP_PREPARE: u8 = 0x09;
pub const OP_EXECUTE: u8 = 0x0A;
pub const OP_AUTH_CHALLENGE: u8 = 0x0E;
pub const OP_AUTH_RESPONSE: u8 = 0x0F;
pub const OP_AUTH_SUCCESS: u8 = 0x10;

const FLAG_TRACING: u8 = 0x02;
const FLAG_CUSTOM_PAYLOAD: u8 = 0x04;
const FLAG_WARNING: u8 = 0x08;

/// Consistency ONE.
pub const CONSISTENCY_ONE: u16 = 0x0001;

#[cfg(test)]
pub const RESULT_VOID: i32 = 1;
pub const RESULT_ROWS: i32 = 2;
pub const RESULT_PREPARED: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub flags: u8,
    pub stream: i16,
    pub opcode: u8,
    pub length: u32,
}

/// Reads a header from the first 9 bytes of `buf`, if there are 9.
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(Header {
        version: h[0],
        flags: h[1],
        stream: i16::from_be_bytes([h[2], h[3]]),
        opcode: h[4],
        length: u32::from_be_bytes([h[5], h[6], h[7], h[8]]),
    })
}

/// Appends a request header for a body of `length` bytes.
pub fn put_header(out: &mut Vec<u8>, stream: i16, opcode: u8, length: usize) {
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(opcode);
    out.extend_from_slice(&(length as u32).to_be_bytes());
}

/// Appends a whole request frame.
pub fn put_frame(out: &mut Vec<u8>, stream: i16, opcode: u8, body: &[u8]) {
    put_header(out, stream, opcode, body.len());
    out.extend_from_slice(body);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_long_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// STARTUP: `{CQL_VERSION: 3.0.0}`, no compression.
pub fn startup_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u16.to_be_bytes());
    put_string(&mut b, "CQL_VERSION");
    put_string(&mut b, "3.0.0");
    b
}

/// AUTH_RESPONSE with SASL PLAIN `\0user\0password`.
pub fn auth_response_body(user: &str, password: &str) -> Vec<u8> {
    let token_len = 2 + user.len() + password.len();
    let mut b = Vec::with_capacity(4 + token_len);
    b.extend_from_slice(&(token_len as i32).to_be_bytes());
    b.push(0);
    b.extend_from_slice(user.as_bytes());
    b.push(0);
    b.extend_from_slice(password.as_bytes());
    b
}

/// QUERY without values, consistency ONE.
pub fn query_body(query: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(query.len() + 7);
    put_long_string(&mut b, query);
    b.extend_from_slice(&CONSISTENCY_ONE.to_be_bytes());
    b.push(0);
    b
}

/// PREPARE (v4: the statement only).
pub fn prepare_body(query: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(query.len() + 4);
    put_long_string(&mut b, query);
    b
}

/// Appends a whole EXECUTE frame of prepared `id` with positional `values`, consistency ONE.
pub fn put_execute(out: &mut Vec<u8>, stream: i16, id: &[u8], values: &[&[u8]]) {
    let len = 2 + id.len() + 2 + 1 + 2 + values.iter().map(|v| 4 + v.len()).sum::<usize>();
    put_header(out, stream, OP_EXECUTE, len);
    out.extend_from_slice(&(id.len() as u16).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&CONSISTENCY_ONE.to_be_bytes());
    out.push(0x01); // values
    out.extend_from_slice(&(values.len() as u16).to_be_bytes());
    for v in values {
        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
        out.extend_from_slice(v);
    }
}

/// A cursor over a response body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "body ends early: {n} bytes wanted, {} left",
                self.buf.len()
            ));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn short_bytes(&mut self) -> Result<&'a [u8], String> {
        self.string()
    }
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        let n = self.i32()?;
        if n < 0 {
            Ok(None)
        } else {
            self.take(n as usize).map(Some)
        }
    }
}

/// The body after the optional tracing id, warnings and custom payload the flags announce.
pub fn message_body(flags: u8, body: &[u8]) -> Result<&[u8], String> {
    let mut r = Reader { buf: body };
    if flags & FLAG_TRACING != 0 {
        r.take(16)?;
    }
    if flags & FLAG_WARNING != 0 {
        let n = r.u16()?;
        for _ in 0..n {
            r.string()?;
        }
    }
    if flags & FLAG_CUSTOM_PAYLOAD != 0 {
        let n = r.u16()?;
        for _ in 0..n {
            r.string()?;
            r.bytes()?;
        }
    }
    Ok(r.buf)
}

/// ERROR body: code and message.
pub fn parse_error(body: &[u8]) -> Result<(i32, String), String> {
    let mut r = Reader { buf: body };
    let code = r.i32()?;
    let msg = String::from_utf8_lossy(r.string()?).into_owned();
    Ok((code, msg))
}

/// The kind of a RESULT body (Void, Rows, Set_keyspace, Prepared, Schema_change).
pub fn result_kind(body: &[u8]) -> Result<i32, String> {
    Reader { buf: body }.i32()
}

/// The prepared id of a RESULT Prepared body.
pub fn parse_prepared(body: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader { buf: body };
    let kind = r.i32()?;
    if kind != RESULT_PREPARED {
        return Err(format!(
            "RESULT kind {kind} where Prepared (4) was expected"
        ));
    }
    Ok(r.short_bytes()?.to_vec())
}

/// The row count of a RESULT Rows body (metadata skipped as far as needed).
pub fn rows_count(body: &[u8]) -> Result<i32, String> {
    let mut r = Reader { buf: body };
    let kind = r.i32()?;
    if kind != RESULT_ROWS {
        return Err(format!("RESULT kind {kind} where Rows (2) was expected"));
    }
    let flags = r.i32()?;
    let columns = r.i32()?;
    if flags & 0x0002 != 0 {
        r.bytes()?; // paging state
    }
    if flags & 0x0004 == 0 {
        if flags & 0x0001 != 0 {
            r.string()?;
            r.string()?;
        }
        for _ in 0..columns {
            if flags & 0x0001 == 0 {
                r.string()?;
                r.string()?;
            }
            r.string()?;
            skip_type(&mut r)?;
        }
    }
    r.i32()
}

fn skip_type(r: &mut Reader) -> Result<(), String> {
    match r.u16()? {
        0x0000 => {
            r.string()?;
        }
        0x0020 | 0x0022 => skip_type(r)?,
        0x0021 => {
            skip_type(r)?;
            skip_type(r)?;
        }
        0x0030 => {
            r.string()?;
            r.string()?;
            for _ in 0..r.u16()? {
                r.string()?;
                skip_type(r)?;
            }
        }
        0x0031 => {
            for _ in 0..r.u16()? {
                skip_type(r)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Names a CQL error code as Cassandra does.
pub fn error_name(code: i32) -> &'static str {
    match code {
        0x0000 => "Server error",
        0x000A => "Protocol error",
        0x0100 => "Bad credentials",
        0x1000 => "Unavailable",
        0x1001 => "Overloaded",
        0x1002 => "Is_bootstrapping",
        0x1003 => "Truncate_error",
        0x1100 => "Write_timeout",
        0x1200 => "Read_timeout",
        0x1300 => "Read_failure",
        0x1400 => "Function_failure",
        0x1500 => "Write_failure",
        0x2000 => "Syntax_error",
        0x2100 => "Unauthorized",
        0x2200 => "Invalid",
        0x2300 => "Config_error",
        0x2400 => "Already_exists",
        0x2500 => "Unprepared",
        _ => "Unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        put_frame(&mut out, -2, OP_QUERY, b"abc");
        assert_eq!(
            out,
            [0x04, 0, 0xff, 0xfe, 0x07, 0, 0, 0, 3, b'a', b'b', b'c']
        );
        let h = parse_header(&out).unwrap();
        assert_eq!(
            h,
            Header {
                version: VERSION,
                flags: 0,
                stream: -2,
                opcode: OP_QUERY,
                length: 3
            }
        );
        assert_eq!(parse_header(&out[..8]), None);
    }

    #[test]
    fn execute_frame_layout() {
        let mut out = Vec::new();
        put_execute(&mut out, 7, &[0xaa, 0xbb], &[&[0, 0, 0, 5], b"xyz"]);
        let h = parse_header(&out).unwrap();
        assert_eq!(h.opcode, OP_EXECUTE);
        assert_eq!(h.stream, 7);
        assert_eq!(h.length as usize, out.len() - HEADER_LEN);
        let body = &out[HEADER_LEN..];
        assert_eq!(
            body,
            [
                0, 2, 0xaa, 0xbb, // id
                0, 1,    // consistency ONE
                0x01, // flags: values
                0, 2, // two values
                0, 0, 0, 4, 0, 0, 0, 5, // int 5
                0, 0, 0, 3, b'x', b'y', b'z'
            ]
        );
    }

    #[test]
    fn startup_and_auth_bodies() {
        let s = startup_body();
        assert_eq!(&s[..2], &[0, 1]);
        assert_eq!(&s[2..15], b"\x00\x0bCQL_VERSION");
        let a = auth_response_body("u", "tok");
        assert_eq!(a, b"\x00\x00\x00\x06\x00u\x00tok");
    }

    #[test]
    fn error_and_prepared_decoding() {
        let mut body = Vec::new();
        body.extend_from_slice(&0x2100i32.to_be_bytes());
        put_string(&mut body, "User x has no MODIFY permission");
        assert_eq!(
            parse_error(&body).unwrap(),
            (0x2100, "User x has no MODIFY permission".to_string())
        );
        assert!(parse_error(&body[..5]).is_err());

        let mut prepared = Vec::new();
        prepared.extend_from_slice(&RESULT_PREPARED.to_be_bytes());
        prepared.extend_from_slice(&[0, 3, 1, 2, 3]);
        assert_eq!(parse_prepared(&prepared).unwrap(), vec![1, 2, 3]);
        assert!(parse_prepared(&RESULT_VOID.to_be_bytes()).is_err());
    }

    #[test]
    fn rows_count_with_global_table_spec() {
        let mut b = Vec::new();
        b.extend_from_slice(&RESULT_ROWS.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes()); // global tables spec
        b.extend_from_slice(&2i32.to_be_bytes()); // two columns
        put_string(&mut b, "ks");
        put_string(&mut b, "t");
        put_string(&mut b, "k");
        b.extend_from_slice(&0x0009u16.to_be_bytes()); // int
        put_string(&mut b, "m");
        b.extend_from_slice(&0x0021u16.to_be_bytes()); // map<text, list<blob>>
        b.extend_from_slice(&0x000Du16.to_be_bytes());
        b.extend_from_slice(&0x0020u16.to_be_bytes());
        b.extend_from_slice(&0x0003u16.to_be_bytes());
        b.extend_from_slice(&5i32.to_be_bytes());
        assert_eq!(rows_count(&b).unwrap(), 5);
    }

    #[test]
    fn flags_prefixes_are_skipped() {
        let mut b = vec![0u8; 16]; // tracing id
        b.extend_from_slice(&[0, 1]);
        put_string(&mut b, "warn");
        b.extend_from_slice(&RESULT_VOID.to_be_bytes());
        let m = message_body(FLAG_TRACING | FLAG_WARNING, &b).unwrap();
        assert_eq!(result_kind(m).unwrap(), RESULT_VOID);
    }
}
