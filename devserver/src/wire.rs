//! Primitive CQL notations ([short], [int], [string], [bytes], ...) for reading
//! request bodies and writing response bodies. Written independently of the
//! module's codec so that a bug in one cannot hide in the other.

use std::collections::BTreeMap;

/// A malformed request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl WireError {
    pub fn new(msg: impl Into<String>) -> Self {
        WireError(msg.into())
    }
}

pub type WResult<T> = Result<T, WireError>;

/// A cursor over a request body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> WResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(WireError::new(format!(
                "Not enough bytes to read: need {} more, have {}",
                n,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> WResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> WResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> WResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> WResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn string(&mut self) -> WResult<String> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::new("Invalid UTF-8 in [string]"))
    }

    pub fn long_string(&mut self) -> WResult<String> {
        let n = self.i32()?;
        if n < 0 {
            return Err(WireError::new("Negative [long string] length"));
        }
        let b = self.take(n as usize)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::new("Invalid UTF-8 in [long string]"))
    }

    pub fn short_bytes(&mut self) -> WResult<Vec<u8>> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    /// [bytes]: None for null (negative length).
    pub fn bytes(&mut self) -> WResult<Option<Vec<u8>>> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?.to_vec()))
    }

    /// [value]: a bound value, which may also be "unset" (-2).
    pub fn value(&mut self) -> WResult<BoundValue> {
        let n = self.i32()?;
        match n {
            -2 => Ok(BoundValue::Unset),
            n if n < 0 => Ok(BoundValue::Null),
            n => Ok(BoundValue::Bytes(self.take(n as usize)?.to_vec())),
        }
    }

    pub fn string_list(&mut self) -> WResult<Vec<String>> {
        let n = self.u16()?;
        (0..n).map(|_| self.string()).collect()
    }

    pub fn string_map(&mut self) -> WResult<BTreeMap<String, String>> {
        let n = self.u16()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            m.insert(k, v);
        }
        Ok(m)
    }
}

/// A value bound to a marker in QUERY, EXECUTE or BATCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundValue {
    Bytes(Vec<u8>),
    Null,
    Unset,
}

pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(u16::MAX as usize);
    put_u16(out, n as u16);
    out.extend_from_slice(&b[..n]);
}

pub fn put_short_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u16(out, b.len() as u16);
    out.extend_from_slice(b);
}

pub fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_i32(out, -1),
        Some(b) => {
            put_i32(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

pub fn put_string_list(out: &mut Vec<u8>, l: &[&str]) {
    put_u16(out, l.len() as u16);
    for s in l {
        put_string(out, s);
    }
}

/// An [inet]: one byte of address length, the address, then the port as an [int].
pub fn put_inet(out: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr.ip() {
        std::net::IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        std::net::IpAddr::V6(a) => {
            out.push(16);
            out.extend_from_slice(&a.octets());
        }
    }
    put_i32(out, i32::from(addr.port()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_is_length_address_port() {
        let mut b = Vec::new();
        put_inet(&mut b, "127.0.0.2:9042".parse().unwrap());
        assert_eq!(b, [4, 127, 0, 0, 2, 0, 0, 0x23, 0x52]);
        let mut b = Vec::new();
        put_inet(&mut b, "[::1]:1".parse().unwrap());
        assert_eq!(b.len(), 1 + 16 + 4);
        assert_eq!(b[0], 16);
    }

    #[test]
    fn short_reads_are_errors() {
        let mut r = Reader::new(&[0, 5, b'a']);
        assert!(r.string().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.value().unwrap(), BoundValue::Unset);
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(r.bytes().is_err());
    }
}
